"""A training run's folder: what it holds, how to find its checkpoint, and how it is written.

    runs/toy-20250101-120000/
        config.json    options, model config, classes, data sizes (written at the start)
        metrics.csv    one row per epoch (:data:`METRICS`)
        curves.png     loss and accuracy per epoch
        last.pt        the latest checkpoint (every epoch, and every --save-every steps)
        best.pt        the checkpoint of the epoch with the best validation top-1
        summary.json   the final numbers (written at the end)

Every file is written atomically (a temporary file renamed over the target), so a run killed
at any moment leaves each file whole: old or new; a run (or its resume) removes the temporary files
a killed run left behind. While a run works in its folder it holds ``.lock`` (an exclusive lock the
system releases when the process ends), so a second run cannot write into the same folder.
"""

from __future__ import annotations

import ast
import csv
import datetime
import functools
import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .checks import UsageError
from .files import FolderInUse, lock_folder, unlock_folder, write_atomic

RUN_FILES = ("config.json", "metrics.csv", "last.pt", "best.pt", "summary.json")
METRICS = ("epoch", "step", "train_loss", "val_loss", "val_top1", "val_top5", "lr", "clips_per_s", "seconds")


def checkpoint_path(given: str | os.PathLike, option: str) -> Path:
    """A checkpoint named on the command line: a ``.pt`` file, or a run folder (→ its ``last.pt``).

    A missing file → :class:`UsageError` that names ``option`` and what to pass instead.
    """
    path = Path(given)
    if path.is_dir():
        if not (path / "last.pt").is_file() and (path / "config.json").is_file():
            raise UsageError(
                f"{option} {given}: that run stopped before its first checkpoint, so there is nothing to "
                f"continue; start it again with --out {given}"
            )
        path = path / "last.pt"
    if not path.is_file():
        where = (
            "the folder holds no last.pt"
            if path.name == "last.pt" and path.parent == Path(given)
            else "no such checkpoint"
        )
        raise UsageError(
            f"{option} {given}: {where}; pass a .pt file or a run folder written by python -m minivb.train"
        )
    return path


def check_out(out: Path, resuming: Path | None) -> None:
    """Refuse an output folder that holds a run (a checkpoint or a summary), unless it is the run being resumed.

    A folder whose run stopped before its first checkpoint (only config.json, metrics.csv) may be reused.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; choose a folder")
    held = [f for f in ("last.pt", "best.pt", "summary.json", "pretrain.pt", "words.pt") if (out / f).exists()]
    if not held or (resuming is not None and resuming.resolve().parent == out.resolve()):
        return
    owner = summary_owner(out / "summary.json") if "summary.json" in held else None
    if "pretrain.pt" in held or owner == "minivb.pretrain":
        raise UsageError(
            f"--out {out} holds a pretraining run ({', '.join(held)}); to train from it, pass --init-from {out} "
            "and another --out"
        )
    if "words.pt" in held:
        raise UsageError(
            f"--out {out} holds a stopped pretraining run; continue it with python -m minivb.pretrain --resume {out}, "
            "or choose another --out"
        )
    if "last.pt" not in held:  # nothing to resume: an evaluation, or another command's summary
        raise UsageError(
            f"--out {out} holds {owner or 'another command'}'s files ({', '.join(held)}); choose another --out"
        )
    raise UsageError(
        f"--out {out} already holds a run ({', '.join(held)}); continue it with --resume {out}, or choose another --out"
    )


def writable_folder(out: Path, option: str = "--out", *, given: Path | None = None, make: bool = True) -> None:
    """Make ``out`` (and its parents; ``make=False``: it must exist) and prove a file can be written there; else a
    one-line :class:`UsageError` naming ``given`` (the file to be written there, as the user typed it) or ``out``."""
    given = out if given is None else given
    nearest = next((p for p in (out, *out.parents) if p.exists() or p.is_symlink()), Path("."))
    if not nearest.is_dir():  # (mkdir would say "File exists" or "Not a directory")
        raise UsageError(
            f"{option} {given}: cannot write there: {nearest} is a file, not a folder; choose another {option}"
        )
    if not make and nearest != out:
        raise UsageError(f"{option} {given}: the folder {out} does not exist; make it first or name another file")
    probe = out / ".write-test.tmp"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        where = f"in {nearest}" if nearest != out else "in it"
        raise UsageError(
            f"{option} {given}: cannot write there (making or writing files {where}: {e.strerror or e}); "
            f"choose another {option}"
        ) from None


def output_file(
    path: Path,
    option: str,
    command: str,
    *,
    force: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
    make: bool = True,
) -> None:
    """The rule for a file ``command`` ("minivb.summarize") is about to write, checked before any work: never one
    of the command's ``inputs`` (the video it reads, the checkpoint it loads — not even with ``force``), never an
    existing file unless ``force``, and then only one that says ``command`` wrote it (:func:`written_by`), never a
    folder, and in a folder that can be written (made if missing, unless ``make`` is False); else a one-line
    :class:`UsageError` that names ``path`` as given. The file is then held until the command ends
    (:func:`release_outputs`): a second command writing it at the same time is refused, not lost."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; name a file")
    for given in inputs:
        if Path(given).exists() and path.exists() and os.path.samefile(given, path):
            raise UsageError(f"{option} {path} is one of this command's inputs; name another file")
    if path.exists() and not force:
        raise UsageError(f"{option} {path} already exists; pass --force to overwrite it, or another {option}")
    writable_folder(path.parent, option, given=path, make=make)
    key = path.resolve()
    if key not in _HELD:
        try:
            _HELD[key] = lock_folder(key.parent, f".{key.name}.lock")
        except FolderInUse as e:
            raise UsageError(
                f"{option} {path} is being written by another command (process {e.holder}); wait for it, "
                f"or choose another {option}"
            ) from None
    if path.exists() and not force:  # written by the one that held it just before us
        raise UsageError(f"{option} {path} already exists; pass --force to overwrite it, or another {option}")
    owner = written_by(path) if path.is_file() else "it is not a regular file" if path.exists() else command
    if owner != command:
        why = (
            owner if owner and " " in owner else f"{owner} wrote it" if owner else f"it does not say {command} wrote it"
        )
        raise UsageError(
            f"{option} {path}: --force replaces only {command}'s own earlier output, and {why}; choose another {option}"
        )


_HELD: dict[Path, int] = {}  # the output files this process holds (their locks' descriptors)


def release_outputs() -> None:
    """Let go of every file :func:`output_file` held (``run_main`` calls it when the command ends)."""
    for key, fd in _HELD.items():
        unlock_folder(key.parent, fd, f".{key.name}.lock")
    _HELD.clear()


def written_by(path: Path) -> str | None:
    """The minivb command that wrote ``path``, as the file itself says — a JSON document's or a ``.pt`` file's
    ``command`` record, a PNG's ``Software`` text — or None."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_text(head).get("Software")
    try:
        if head.startswith(b"PK"):  # torch.save's zip archive
            import torch

            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        else:
            obj = json.loads(path.read_text(encoding="utf-8"))
    except Exception:  # not a file any minivb command writes
        return None
    return obj.get("command") if isinstance(obj, dict) and isinstance(obj.get("command"), str) else None


def _png_text(data: bytes) -> dict[str, str]:
    """A PNG's ``tEXt`` records (``Software``: what made it), read from its chunks up to the first image data."""
    text, i = {}, 8
    while i + 8 <= len(data) and data[i + 4 : i + 8] != b"IDAT":
        size, kind = int.from_bytes(data[i : i + 4], "big"), data[i + 4 : i + 8]
        if kind == b"tEXt":
            key, _, value = data[i + 8 : i + 8 + size].partition(b"\0")
            text[key.decode("latin-1")] = value.decode("latin-1")
        i += 12 + size  # length, type, data, CRC
    return text


def summary_owner(path: Path) -> str:
    """The command that wrote ``path``, a ``summary.json``: its ``command`` record (older files: by their keys)."""
    if not path.is_file():
        return "no minivb command (it is not a regular file)"
    owner = written_by(path)
    if owner is not None:
        return owner
    try:
        keys = set(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        keys = set()
    for command, theirs in (
        ("minivb.evaluate", {"split", "checkpoint", "val_top1", "confusion"}),
        ("minivb.train", {"best_epoch", "best_val_top1", "val_top1"}),
        ("minivb.pretrain", {"masked_top1", "vocab_size"}),
    ):
        if theirs <= keys:
            return command
    return "no minivb command it knows"


def output_folder(out: Path, command: str, what: str, *, force: bool) -> None:
    """The rule for a folder ``command`` writes a ``summary.json`` (and files beside it) into, ``what`` it holds
    then ("an evaluation"): never a folder holding another command's files — a run's checkpoints, or a summary
    that says another command wrote it — not even with ``force``; an earlier ``what`` only with ``force``."""
    theirs = [f for f in ("config.json", "last.pt", "best.pt", "pretrain.pt", "words.pt") if (out / f).exists()]
    summary = out / "summary.json"
    owner = summary_owner(summary) if summary.exists() or summary.is_symlink() else None
    if owner not in (None, command):
        theirs.append(f"summary.json, written by {owner}")
    if owner is None:  # files this command writes beside its summary, with no summary to say whose they are
        theirs += [f for f in ("predictions.csv", "confusion.png") if (out / f).exists()]
    if theirs:
        raise UsageError(
            f"--out {out} holds another command's files ({'; '.join(theirs)}), which {command} never writes over, "
            "even with --force; choose another --out"
        )
    if owner is not None and not force:
        raise UsageError(
            f"--out {out} already holds {what} (summary.json); pass --force to overwrite it, or another --out"
        )


def claim(out: Path) -> int:
    """Hold ``out`` for this process → the lock's file descriptor (pass it to :func:`release`).

    Another process holding it → :class:`UsageError`. Temporary files that a killed run left
    (``.last.pt.*.tmp``, ``.curves.png.tmp``, …) are removed once the folder is ours.
    """
    writable_folder(out)
    try:
        fd = lock_folder(out)
    except FolderInUse as e:
        raise UsageError(
            f"--out {out} is in use by another run (process {e.holder}); wait for it, or choose another --out"
        ) from None
    for debris in out.glob(".*.tmp"):
        debris.unlink(missing_ok=True)
    return fd


def release(out: Path, fd: int) -> None:
    """Let go of ``out`` (the lock file is removed; a killed process's lock is released by the system)."""
    unlock_folder(out, fd)


def new_run_folder(subset: str) -> Path:
    """``runs/<subset>-<date>-<time>`` (``-2``, ``-3``, … if that already holds a run)."""
    stamp = f"runs/{subset}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    name = stamp
    for n in range(2, 1000):
        if not any((Path(name) / f).exists() for f in RUN_FILES):
            break
        name = f"{stamp}-{n}"
    return Path(name)


@functools.cache
def code_version() -> str:
    """minivb's code as a fingerprint (:func:`source_fingerprint` of the package, once per process).

    ``summary.json`` records it, and :func:`~minivb.engine.training.train_once` and
    :func:`~minivb.engine.pretraining.pretrain_once` reuse only a run the same code made.
    """
    return source_fingerprint(Path(__file__).resolve().parents[1])


def source_fingerprint(package: Path) -> str:
    """12 hex digits of sha256 over the syntax tree of every module under ``package``, docstrings left out: an edit
    to a comment, a docstring or the layout keeps it; any other edit (a fixed bug, a new default) changes it."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_bytes())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
                first = body[0]
                if (
                    isinstance(first, ast.Expr)
                    and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)
                ):
                    node.body = body[1:] or [ast.Pass()]
        digest.update(f"{path.relative_to(package).as_posix()}\0{ast.dump(tree)}\0".encode())
    return digest.hexdigest()[:12]


def set_aside(out: Path) -> Path:
    """Rename the run folder ``out`` to ``<out>.old-<date>-<time>`` (kept whole, not deleted) → its new name."""
    stamp = f"{out.name}.old-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    for n in range(1, 1000):
        aside = out.with_name(stamp if n == 1 else f"{stamp}-{n}")
        if not aside.exists():
            break
    out.rename(aside)
    return aside


def same_options(had: dict, wanted: dict, ignore: Sequence[str] = ()) -> bool:
    """Whether a finished run made with options ``had`` is the run ``wanted`` asks for: every option equal but those
    in ``ignore`` (runtime ones, which do not change the result), the data folder compared by its resolved path."""

    def same(key: str) -> bool:
        if key == "data_root":
            return Path(had.get(key, "")).resolve() == Path(wanted[key]).resolve()
        return had.get(key) == wanted[key]

    return all(key in ignore or same(key) for key in wanted)


def set_aside_if_stale(out: Path, summary: dict, log: Callable[..., None] | None) -> bool:
    """True, after :func:`set_aside` and a line to ``log``, when the finished run in ``out`` was made by other code
    than this (its ``summary`` records another :func:`code_version`, or none: a run from before it was recorded)."""
    if summary.get("code") == code_version():
        return False
    aside = set_aside(out)
    if log is not None:
        log(f"{out} was made by other minivb code than this; kept as {aside}, made again")
    return True


def write_metrics(out: Path, history: list[dict]) -> None:
    """One row per epoch → ``metrics.csv`` (6 significant digits)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRICS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in METRICS})
    write_atomic(out / "metrics.csv", buf.getvalue())


def plot_curves(out: Path, history: list[dict]) -> None:
    """Loss and accuracy per epoch → ``curves.png``."""
    png = io.BytesIO()
    curves_figure(history).savefig(png, format="png", dpi=100)
    write_atomic(out / "curves.png", png.getvalue())


def curves_figure(history: list[dict]):
    """Loss and accuracy per epoch, ticked at whole epochs (Agg canvas: no GUI, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(9, 3.4), tight_layout=True)
    FigureCanvasAgg(fig)
    loss, acc = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    loss.plot(epochs, [r["val_loss"] for r in history], "o-", label="val")
    loss.set(xlabel="epoch", ylabel="loss", title="loss")
    acc.plot(epochs, [100 * r["val_top1"] for r in history], "o-", label="val top-1")
    acc.plot(epochs, [100 * r["val_top5"] for r in history], "o-", label="val top-5")
    acc.set(xlabel="epoch", ylabel="%", title="validation accuracy", ylim=(0, 101))
    for ax in (loss, acc):
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)  # (a lone epoch would get ticks at 0.96, 0.98, …)
    return fig
