"""Kinetics-400: download it, prepare it for fast training, check what is there.

    python -m minivb.data.kinetics download --root data/kinetics400     # ≈390 GB (train + val) from the CVDF mirror
    python -m minivb.data.kinetics prepare  --root data/kinetics400     # index + JPEG frame stores
    python -m minivb.data.kinetics check    --root data/kinetics400     # counts against the expected ones
    python -m minivb.train --subset k400                                 # then train

Layout under ``--root`` (see ``data/README.md``)::

    annotations/{train,val,test}.csv      label,youtube_id,time_start,time_end,split,is_cc   (download)
    tars/{split}/k400_{split}_path.txt    the part list; parts are deleted once unpacked    (download)
    raw/{split}/…/*.mp4, raw/replacement/ the clips, {youtube_id}_{start:06d}_{end:06d}.mp4  (download)
    originals/{split}.csv, classes.txt    index of the source clips: path,label,frames,fps,width,height
    frames/{split}/<label>/<clip>.jpgs    the training format (minivb.data.framestore)      (prepare)
    {split}.csv, classes.txt              its index: path,label,frames,fps,width,height,step (prepare)
    bad_videos.csv                        split,path,label,reason for every clip left out    (prepare)

``prepare`` also reads torchvision's class-folder layout, ``root/{split}/<label>/*.mp4``, when
there are no annotation CSVs. Class indices are the sorted label names of the training split
(``classes.txt``); the trainer stores them in every checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import multiprocessing
import os
import signal
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ...plumbing.checks import UsageError
from ...plumbing.files import (
    FolderInUse,
    NoSpace,
    is_disk_full,
    lock_folder,
    read_text,
    unlock_folder,
    unsafe_name,
    write_atomic,
)
from ...plumbing.runs import writable_folder
from ...plumbing.signals import sigterm_raises
from ...video import VideoDecodeError
from ..clips import VIDEO_EXTENSIONS
from ..framestore import SUFFIX, convert_video
from .downloads import (
    ArchiveError,
    DownloadError,
    check_free_space,
    extract_tar,
    fetch,
    fetch_many,
    is_extracted,
    read_url_list,
)

log = logging.getLogger(__name__)
BASE_URL = "https://s3.amazonaws.com/kinetics/400"  # the CVDF mirror (github.com/cvdfoundation/kinetics-dataset)
SPLITS = ("train", "val", "test")
REPLACEMENT = "replacement_for_corrupted_k400.tgz"  # ≈1,400 training clips that were corrupt in the parts
# Clips in the CVDF archive (some YouTube videos were gone before it was made) and rows in the CSVs.
EXPECTED = {"train": (240_258, 246_534), "val": (19_881, 19_906), "test": (38_685, 39_805)}
PART_BYTES = 1.6e9  # a part is about 1.5 GB (1.6 here: the disk check errs high); train + val ≈390 GB, with test 450
STORE_BYTES = 6e6  # a 10-s clip as JPEGs at short side 256, quality 90, every frame (measured: ≈20 KB a frame)
COLUMNS = ("path", "label", "frames", "fps", "width", "height")
BAD_COLUMNS = ("split", "path", "label", "reason")
UNTRAINED = (
    "no prepared training clip has this label: a model trained here cannot predict it (left out of the accuracy)"
)


# --------------------------------------------------------------------------- annotations


@dataclass(frozen=True)
class Clip:
    """One clip to prepare: its source file (or None if it is missing), label and name."""

    split: str
    label: str
    name: str  # file stem, e.g. "abc123_000010_000020"
    source: str | None


def clip_name(youtube_id: str, time_start: float, time_end: float) -> str:
    """The CVDF file stem of a clip: ``{youtube_id}_{start:06d}_{end:06d}``; a time that is no (finite) number of
    seconds is a ``ValueError`` naming it."""
    seconds = []
    for name, value in (("time_start", time_start), ("time_end", time_end)):
        try:
            seconds.append(int(float(value)))
        except (TypeError, ValueError, OverflowError):  # "", "ten", None; nan; 1e999
            raise ValueError(f"{name} {value!r} is not a number of seconds") from None
    return f"{youtube_id}_{seconds[0]:06d}_{seconds[1]:06d}"


def read_annotations(path: str | os.PathLike) -> list[tuple[str, str]]:
    """An annotation CSV → ``[(label, clip stem)]`` (labels may hold quoted commas, parentheses, apostrophes)."""
    try:
        text = read_text(path)
    except ValueError as e:
        raise UsageError(str(e)) from None
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"label", "youtube_id", "time_start", "time_end"} - set(reader.fieldnames or ())
        if missing:
            raise UsageError(
                f"{path}: missing column(s) {', '.join(sorted(missing))}; expected "
                f"label,youtube_id,time_start,time_end,..."
            )
        try:
            return [(row["label"], clip_name(row["youtube_id"], row["time_start"], row["time_end"])) for row in reader]
        except (TypeError, ValueError) as e:
            raise UsageError(f"{path}, line {reader.line_num}: {e}") from None


def _video_files(folder: Path) -> Iterable[Path]:
    return (p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)


def find_clips(root: str | os.PathLike, split: str) -> list[Clip]:
    """The clips of a split: CVDF (``annotations/{split}.csv`` + ``raw/``) or class folders ``{split}/<label>/``."""
    root = Path(root)
    annotations = root / "annotations" / f"{split}.csv"
    if annotations.is_file():
        on_disk = {p.stem: p for p in _video_files(root / "raw" / split)}
        on_disk.update({p.stem: p for p in _video_files(root / "raw" / "replacement")})  # the fixed versions win
        rows = read_annotations(annotations)
        return [Clip(split, label, name, str(on_disk[name]) if name in on_disk else None) for label, name in rows]
    folders = root / split
    if folders.is_dir():
        clips = [
            Clip(split, d.name, p.stem, str(p))
            for d in sorted(folders.iterdir())
            if d.is_dir()
            for p in sorted(d.iterdir())
            if p.suffix.lower() in VIDEO_EXTENSIONS
        ]
        empty = sorted({d.name for d in folders.iterdir() if d.is_dir()} - {c.label for c in clips})
        if empty:  # a class folder without a video is no class: said, not silently dropped
            log.warning(
                f"{folders}: {len(empty)} class folder(s) without a video left out: {', '.join(map(repr, empty[:5]))}"
                + (" …" if len(empty) > 5 else "")
            )
        return clips
    raise UsageError(
        f"no {split} clips under {root}: expected {annotations} with {root / 'raw' / split}/ "
        f"(python -m minivb.data.kinetics download --root {root}) or class folders {folders}/<label>/*.mp4"
    )


def _limit(clips: list[Clip], classes: Sequence[str], per_class: int | None) -> list[Clip]:
    """The clips of ``classes``, at most ``per_class`` of each (the first by name)."""
    keep, taken = set(classes), Counter()
    out = []
    for clip in sorted(clips, key=lambda c: (c.label, c.name)):
        if clip.label in keep and (per_class is None or taken[clip.label] < per_class):
            taken[clip.label] += 1
            out.append(clip)
    return out


# --------------------------------------------------------------------------- download


def _bad_part_name(url: str) -> str | None:
    """Why the last part of a part's URL (a line of the mirror's list) cannot be the archive's file name, or None."""
    name = url.rsplit("/", 1)[-1]
    why = unsafe_name(name)
    if why is not None:
        return f"the part's name {name!r} is not a file name ({why})"
    if not name.endswith((".tar.gz", ".tgz", ".tar")):
        return f"the part's name {name!r} is not a .tar.gz, .tgz or .tar file"
    return None


def _archive(root: Path, split: str, url: str) -> Path:
    return root / "tars" / split / url.rsplit("/", 1)[-1]


def _unpack(archive: Path, dest: Path, keep: bool) -> None:
    """Unpack a downloaded part safely into ``dest``; delete it afterwards (unless ``keep``) or when it is corrupt."""
    try:
        result = extract_tar(archive, dest)
    except ArchiveError:
        archive.unlink()  # complete but unreadable: the next run downloads it again
        raise
    for name, why in result.rejected:
        print(f"warning: {archive.name}: refused member {name!r} ({why})", file=sys.stderr)
    if not keep:
        archive.unlink()


def download(
    root: str | os.PathLike,
    splits: Sequence[str] = ("train", "val"),
    *,
    base_url: str = BASE_URL,
    workers: int = 4,
    retries: int = 3,
    keep_archives: bool = False,
) -> list[str]:
    """Fetch the annotations and parts of ``splits`` (+ the replacement clips with train) → failures (one line each).

    Resumable: unpacked parts are skipped, a half-downloaded part is resumed, a failed part is
    retried ``retries`` times and then reported (the others go on); run it again to finish.
    Parts are downloaded ``workers`` at a time, then unpacked one by one, each archive deleted
    once unpacked (so the disk holds the parts plus one unpacked part at most).
    """
    from tqdm import tqdm

    root, base = Path(root), base_url.rstrip("/")
    made = [p for p in (root / "annotations", root, *root.parents) if not p.exists()]  # folders made from here on
    parts = []
    try:
        for split in splits:
            dest = root / "annotations" / f"{split}.csv"
            fetch(f"{base}/annotations/{split}.csv", dest, retries=retries, progress=False)
            parts += [(url, split) for url in read_url_list(f"{base}/{split}/k400_{split}_path.txt", retries=retries)]
    except DownloadError:  # no network, a wrong --base-url: leave no empty folders behind
        for folder in made:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    if "train" in splits:
        parts.append((f"{base}/{REPLACEMENT}", "replacement"))
    failures = [f"{url}: {why}; skipped" for url, _ in parts if (why := _bad_part_name(url)) is not None]
    parts = [(url, split) for url, split in parts if _bad_part_name(url) is None]
    todo = [(url, split) for url, split in parts if not is_extracted(_archive(root, split, url), root / "raw" / split)]
    check_free_space(
        root,
        int((len(todo) * (2 if keep_archives else 1) + 1) * PART_BYTES),
        f"downloading {len(todo)} of {len(parts)} parts",
    )
    failures += [
        str(e)
        for e in fetch_many(
            [(url, _archive(root, split, url)) for url, split in todo], workers=workers, retries=retries
        )
    ]
    for url, split in tqdm(todo, desc="unpack", unit="part", disable=None):
        archive = _archive(root, split, url)
        if archive.exists():  # (a part whose download failed is among the failures already)
            try:
                _unpack(archive, root / "raw" / split, keep_archives)
            except ArchiveError as e:
                failures.append(str(e))
    return failures


# --------------------------------------------------------------------------- prepare


@dataclass(frozen=True)
class Settings:
    short_side: int = 256  # frames larger than this are scaled down so that their shorter side is this
    frame_step: int = 4  # keep every frame_step-th frame
    quality: int = 90  # JPEG quality
    min_frames: int = 16  # a clip that keeps fewer frames (after frame_step) is too short


def _convert(job: tuple[str, str, Settings]) -> dict:
    """In a worker process: one source clip → frame store; returns what it found (or why it failed)."""
    import cv2

    cv2.setNumThreads(1)
    source, target, settings = job
    try:
        info, stored = convert_video(
            source,
            target,
            short_side=settings.short_side,
            step=settings.frame_step,
            quality=settings.quality,
            min_frames=settings.min_frames,
        )
    except VideoDecodeError as e:
        return {"source": source, "reason": e.reason}
    except OSError as e:
        if is_disk_full(e):  # the main process stops every worker and says so in one line
            return {"source": source, "no_space": True}
        raise
    return {"source": source, **asdict(info), "stored": asdict(stored)}


def _work(conn) -> None:
    """A conversion worker: converts each job its pipe brings and sends back the result. Ctrl-C and SIGTERM are the
    parent's to handle; if the parent dies (even ``kill -9``), the worker gets SIGTERM from the system and ends
    (Linux), instead of converting on for nobody."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    with contextlib.suppress(EOFError, ConnectionError):  # the parent has gone
        while True:
            conn.send(_convert(conn.recv()))


def _start_worker(ctx):
    """A new conversion process → (the parent's end of its pipe, the process)."""
    mine, theirs = ctx.Pipe()
    process = ctx.Process(target=_work, args=(theirs,), daemon=True)
    process.start()
    theirs.close()
    return mine, process


def _converted(jobs: list, workers: int) -> Iterator[dict]:
    """``_convert(job)`` for every job, in ``workers`` processes, as each is done; closing it ends the workers.

    spawn, not fork: a forked child can inherit a lock held by one of OpenCV's threads and hang. A pipe per worker,
    not ``multiprocessing.Pool``, whose queues hold named semaphores that a parent killed with ``kill -9`` leaves to
    the resource tracker ("leaked semaphore objects"). A worker that dies (a crash in a decoder, the OOM killer)
    costs only its clip, reported with ``"died"``: not journaled, so the next prepare tries it again."""
    from multiprocessing.connection import wait

    ctx, todo = multiprocessing.get_context("spawn"), list(reversed(jobs))
    idle, running = [], {}  # running: a worker's pipe → (its process, its job)
    try:
        while todo or running:
            while todo and len(running) < workers:
                conn, process = idle.pop() if idle else _start_worker(ctx)
                job = todo.pop()
                running[conn] = (process, job)
                with contextlib.suppress(OSError):  # a worker that has died: wait() sees its pipe end
                    conn.send(job)
            for conn in wait(list(running)):
                process, job = running.pop(conn)
                try:
                    result = conn.recv()
                    idle.append((conn, process))
                except (EOFError, OSError):
                    process.join()
                    why = f"the process converting it died (exit code {process.exitcode}); the next prepare retries it"
                    result = {"source": job[0], "reason": why, "died": True}
                yield result
    finally:
        processes = [p for _, p in idle] + [p for p, _ in running.values()]
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()


def _stamp(path: str | None) -> list:
    try:
        st = os.stat(path)
        return [st.st_size, st.st_mtime_ns]
    except (OSError, TypeError):
        return []


class _Journal:
    """``.prepare/{split}.jsonl``: one line per converted clip, so an interrupted prepare resumes."""

    def __init__(self, path: Path, settings: Settings):
        self.path, self.key = path, asdict(settings)
        self.done: dict[str, dict] = {}
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # the last line of a killed run (or of a full disk) may be cut short
                continue
            if entry.get("settings") == self.key:
                self.done[entry["source"]] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", encoding="utf-8")
        if text and not text.endswith("\n"):
            self.file.write("\n")  # that cut line stays alone (and skipped), not joined to the next one

    def finished(self, source: str, target: Path) -> dict | None:
        entry = self.done.get(source)
        if entry is None or entry.get("stamp") != _stamp(source) or ("stored" in entry and not target.is_file()):
            return None
        return entry

    def add(self, entry: dict) -> None:
        entry = entry | {"settings": self.key, "stamp": _stamp(entry["source"])}
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()
        self.done[entry["source"]] = entry


def _is_annotated(root: Path, split: str) -> bool:
    """Does the split come from an annotation CSV (CVDF), where a clip's name is its identity?"""
    return (root / "annotations" / f"{split}.csv").is_file()


def _annotated(root: Path, split: str) -> list[Clip]:
    """The clips a split's annotation CSV lists, or none if it has none here."""
    return find_clips(root, split) if _is_annotated(root, split) else []


def _conflicts(clips: list[Clip], held_out: set[str]) -> tuple[list[Clip], list[tuple[Clip, str]]]:
    """A split's clips → ``(the ones to use, [(clip, why it is left out)])``: a repeated row is used once; a clip
    listed under two labels is not used (which label is right is unknown); a training clip that a validation or
    test split also lists is kept out of training (it would be evaluated on what was trained on)."""
    labels: dict[str, set[str]] = {}
    for c in clips:
        labels.setdefault(c.name, set()).add(c.label)
    keep, left, seen = [], [], set()
    for c in clips:
        if len(labels[c.name]) > 1:
            left.append((c, f"listed under {len(labels[c.name])} labels ({', '.join(sorted(labels[c.name]))})"))
        elif c.name in held_out:
            left.append((c, "also listed in the val or test split: kept out of training"))
        elif c.name in seen:
            left.append((c, "a repeated row of the annotations (the clip is used once)"))
        else:
            seen.add(c.name)
            keep.append(c)
    return keep, left


def _bad_path(root: Path, clip: Clip) -> str:
    """A left-out clip's path in bad_videos.csv, always relative to --root: the file, or where a missing one
    would be (``raw/{split}/{name}.mp4``)."""
    if clip.source is None:
        return f"raw/{clip.split}/{clip.name}.mp4"
    return os.path.relpath(clip.source, root)


def _unsafe(clip: Clip) -> str | None:
    """Why a clip's label or name (from the annotation CSV) cannot be a folder or file name, or None."""
    for what, value in (("label", clip.label), ("name", clip.name)):
        why = unsafe_name(value)
        if why is not None:
            return f"its {what} {value!r} is not a plain name ({why})"
    return None


def _target(root: Path, clip: Clip) -> Path:
    return root / "frames" / clip.split / clip.label / f"{clip.name}{SUFFIX}"


def _convert_all(root: Path, clips: list[Clip], settings: Settings, workers: int, progress: bool) -> dict[str, dict]:
    """Convert every present clip (in parallel, resumable) → ``{source: result}``."""
    from tqdm import tqdm

    split = clips[0].split
    journal = _Journal(root / ".prepare" / f"{split}.jsonl", settings)
    results, jobs = {}, []
    for clip in clips:
        if clip.source is None:
            continue
        target = _target(root, clip)
        entry = journal.finished(clip.source, target)
        if entry is not None:
            results[clip.source] = entry
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((clip.source, str(target), settings))
    check_free_space(root, int(len(jobs) * STORE_BYTES / settings.frame_step), f"preparing {len(jobs):,} {split} clips")
    bar = tqdm(
        total=len(results) + len(jobs),
        initial=len(results),
        desc=f"prepare {split}",
        unit="clip",
        disable=None if progress else True,
    )
    try:  # leaving the block (done, Ctrl-C, SIGTERM, a full disk) ends the workers
        with sigterm_raises(lambda: Stopped("SIGTERM")), contextlib.closing(_converted(jobs, workers)) as done:
            for entry in done:
                if entry.get("no_space"):
                    raise NoSpace(root)
                if not entry.get("died"):
                    journal.add(entry)
                results[entry["source"]] = entry
                bar.update()
    finally:
        bar.close()
        journal.file.close()
    return results


class Stopped(Exception):
    """SIGTERM stopped ``prepare``: what is converted is in the journal; the same command continues."""


def _csv_text(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _write_split(
    root: Path, split: str, clips: list[Clip], results: dict[str, dict], min_frames: int
) -> tuple[int, list[tuple]]:
    """Write ``{split}.csv`` and ``originals/{split}.csv`` → (clips indexed, bad rows). A clip that keeps fewer than
    ``min_frames`` frames is a bad row (also one converted by an earlier prepare, which counted source frames)."""
    prepared, originals, bad = [], [], []
    for clip in clips:
        entry = results.get(clip.source) if clip.source else None
        if clip.source is None:
            bad.append(
                (split, _bad_path(root, clip), clip.label, "listed in the annotations but not downloaded (missing)")
            )
        elif "reason" in entry:
            bad.append((split, _bad_path(root, clip), clip.label, entry["reason"]))
        elif (kept := entry["stored"]["frames"]) < min_frames:
            why = f"too short: {entry['frames']} decodable frames keep {kept} at frame step {entry['stored']['step']}"
            bad.append((split, _bad_path(root, clip), clip.label, f"{why}, need at least {min_frames}"))
        else:
            s = entry["stored"]
            prepared.append(
                (
                    os.path.relpath(_target(root, clip), root),
                    clip.label,
                    s["frames"],
                    f"{s['fps']:.4g}",
                    s["width"],
                    s["height"],
                    s["step"],
                )
            )
            originals.append(
                (
                    os.path.relpath(clip.source, root / "originals"),
                    clip.label,
                    entry["frames"],
                    f"{entry['fps']:.4g}",
                    entry["width"],
                    entry["height"],
                )
            )
    write_atomic(root / f"{split}.csv", _csv_text((*COLUMNS, "step"), prepared))
    (root / "originals").mkdir(exist_ok=True)
    write_atomic(root / "originals" / f"{split}.csv", _csv_text(COLUMNS, originals))
    return {row[1] for row in prepared}, len(prepared), bad


def prepare(
    root: str | os.PathLike,
    splits: Sequence[str] = ("train", "val"),
    *,
    short_side: int = 256,
    frame_step: int = 4,
    quality: int = 90,
    min_frames: int = 16,
    workers: int | None = None,
    limit_classes: int | None = None,
    limit_per_class: int | None = None,
    progress: bool = True,
) -> dict:
    """Index every clip, convert it to the training format, report the bad ones → ``{split: {"clips", "bad",
    "untrained"}}``.

    Idempotent and resumable (a journal under ``root/.prepare`` remembers converted clips). Every listed clip is
    prepared or in ``bad_videos.csv`` with its reason: among them a clip that keeps fewer than ``min_frames`` frames
    (counted after ``frame_step``, as the index's ``frames``), and a val or test clip whose label no training clip
    has (``"untrained"``: no model trained here can predict it). ``limit_classes`` keeps the first N classes
    (sorted), ``limit_per_class`` the first M clips of each; the others are left out as asked, not reported.
    A full disk is :class:`NoSpace` (the work so far kept).
    """
    root, settings = Path(root), Settings(short_side, frame_step, quality, min_frames)
    try:
        writable_folder(root / ".prepare", "--root", given=root)  # a read-only or full --root: one line
        lock = lock_folder(root / ".prepare")  # one prepare per root: the next one may sweep this one's debris
        try:
            for debris in (root / "frames").rglob(".*.tmp") if (root / "frames").is_dir() else ():
                debris.unlink(missing_ok=True)  # a killed run's half-written frame stores
            return _prepare(root, splits, settings, workers, limit_classes, limit_per_class, progress)
        finally:
            unlock_folder(root / ".prepare", lock)
    except FolderInUse as e:
        raise UsageError(f"another prepare is running on {root} (process {e.holder}); wait for it") from None
    except OSError as e:  # a full disk anywhere (a frame store, the journal, a folder): one line, the work kept
        if isinstance(e, NoSpace) or not is_disk_full(e):
            raise
        raise NoSpace(root) from None


def _prepare(root: Path, splits, settings: Settings, workers, limit_classes, limit_per_class, progress) -> dict:
    """:func:`prepare`'s work, with the root held."""
    found, unsafe = {}, {}
    for split in splits:  # names from the annotation CSV are never paths: such a clip is reported, not written
        why = [(c, _unsafe(c)) for c in find_clips(root, split)]  # (every row, repeats too; why it is unsafe or None)
        found[split] = [c for c, reason in why if reason is None]
        unsafe[split] = [(split, _bad_path(root, c), c.label, reason) for c, reason in why if reason]
    held_out = {c.name for split in ("val", "test") for c in (found.get(split) or _annotated(root, split))}
    for split in splits:  # duplicates, a clip under two labels, a validation clip in training: reported, not used
        if _is_annotated(root, split):  # (class folders name their files freely: clip_0.mp4 in every class)
            found[split], conflicts = _conflicts(found[split], held_out if split == "train" else set())
            unsafe[split] += [(split, _bad_path(root, c), c.label, why) for c, why in conflicts]
    labels = _training_labels(root, found)  # before conversion: which classes --limit-classes chooses among
    classes = sorted(labels)[:limit_classes]
    summary, bad_rows = {}, []
    for split in sorted(found, key=lambda s: s != "train"):  # training first: the classes are what it keeps
        clips = found[split]
        untrained = [(split, _bad_path(root, c), c.label, UNTRAINED) for c in clips if c.label not in labels]
        bad_rows += unsafe[split] + untrained
        clips = _limit(clips, classes, limit_per_class)
        if not clips:
            raise UsageError(f"no {split} clips of the chosen classes under {root}")
        results = _convert_all(root, clips, settings, workers or os.cpu_count() or 1, progress)
        kept, count, bad = _write_split(root, split, clips, results, settings.min_frames)
        if split == "train":  # a class whose every training clip is bad (too short, broken) is no class
            labels, classes = kept, [c for c in classes if c in kept]
        bad_rows += bad
        left = len(bad) + len(unsafe[split]) + len(untrained)
        summary[split] = {"clips": count, "bad": left, "untrained": len(untrained)}
    names = "".join(f"{c}\n" for c in classes)
    write_atomic(root / "classes.txt", names)
    write_atomic(root / "originals" / "classes.txt", names)
    kept = [row for row in _read_rows(root / "bad_videos.csv") if row[0] not in found]  # other splits' reports stay
    write_atomic(root / "bad_videos.csv", _csv_text(BAD_COLUMNS, kept + bad_rows))
    return summary


def _training_labels(root: Path, found: dict[str, list[Clip]]) -> set[str]:
    """The labels of the training clips: those found now, else those an earlier prepare indexed (train.csv), else
    those on disk."""
    if "train" in found:
        return {c.label for c in found["train"]}
    if (root / "train.csv").is_file():
        return {row[1] for row in _read_rows(root / "train.csv")}
    return {c.label for c in find_clips(root, "train") if _unsafe(c) is None}


def _read_rows(path: Path) -> list[tuple]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [tuple(row) for row in list(csv.reader(f))[1:]]


# --------------------------------------------------------------------------- check


def check(root: str | os.PathLike, splits: Sequence[str] = SPLITS) -> list[dict]:
    """What is under ``root`` per split: annotated, on disk, prepared, bad → one dict per split (also printed)."""
    root = Path(root)
    bad = Counter(row[0] for row in _read_rows(root / "bad_videos.csv"))
    report = []
    for split in splits:
        annotations, prepared = root / "annotations" / f"{split}.csv", root / f"{split}.csv"
        found = find_clips(root, split) if annotations.is_file() or (root / split).is_dir() else []
        report.append(
            {
                "split": split,
                "annotated": len(read_annotations(annotations)) if annotations.is_file() else None,
                "on_disk": sum(c.source is not None for c in found),
                "prepared": len(_read_rows(prepared)) if prepared.is_file() else None,
                "bad": bad.get(split, 0),
                "expected_clips": EXPECTED[split][0] if split in EXPECTED else None,
            }
        )
    return report
