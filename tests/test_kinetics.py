"""Kinetics-400 end to end on a fake CVDF mirror (loopback HTTP), the frame-store format, and bad clips.

The mirror serves what the real one does — annotation CSVs, per split a list of part URLs, tarballs
of ``{youtube_id}_{start:06d}_{end:06d}.mp4`` clips, the replacement tarball — made of tiny H.264
clips whose every frame is stamped with its index (tests/videos.py), so "which frames" is checkable.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from videos import read_stamp, stamped_frames, write_h264, write_opencv

from minivb import evaluate, train
from minivb.data import kinetics
from minivb.data.clips import Augmentation, ClipDataset, load_items
from minivb.data.framestore import convert_video, read_store_frames, store_info
from minivb.data.kinetics import __main__ as kinetics_command
from minivb.engine import training
from minivb.video import VideoDecodeError, read_frames

LABELS = [
    "passing American football (in game)",
    "massaging person's head",
    "cooking, stirring",
]  # quotes, parentheses, a comma
SMALL = ["--short-side", "48", "--frame-step", "2", "--min-frames", "16", "--workers", "2"]
TINY_MODEL = (
    "--encoder small --no-pretrained --size 32 --num-frames 4 --stride 4 --grid 2 "
    "--dim 32 --depth 1 --heads 2 --batch-size 4 --workers 0"
).split()


def _clip(path: Path, n: int = 40, height: int = 64, width: int = 96) -> bytes:
    return write_h264(path, stamped_frames(n, height, width)).read_bytes()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _annotations(rows: list[tuple[str, str]], split: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
    for label, yid in rows:
        w.writerow([label, yid, 10, 20, split, 0])
    return buf.getvalue()


@pytest.fixture
def mirror(server, tmp_path):
    """A CVDF-shaped mirror: train in 2 parts (one clip corrupt there, fixed in the replacement tarball;
    one listed clip in no part), val in 1 part holding a hostile member. → (base URL, facts)."""
    good = _clip(tmp_path / "clip.mp4")
    base = server.root / "400"
    for d in ("annotations", "train", "val"):
        (base / d).mkdir(parents=True)
    train_rows = [(label, f"tr{c}{k}") for c, label in enumerate(LABELS) for k in range(4)]
    val_rows = [(label, f"va{c}{k}") for c, label in enumerate(LABELS) for k in range(2)]
    name = lambda yid: f"{yid}_000010_000020.mp4"  # noqa: E731
    corrupt, missing = train_rows[1][1], train_rows[2][1]
    clips = {name(y): (good[: len(good) // 3] if y == corrupt else good) for _, y in train_rows if y != missing}
    names = sorted(clips)
    parts = {
        "part_0.tar.gz": {n: clips[n] for n in names[:5]},
        "part_1.tar.gz": {f"sub/{n}": clips[n] for n in names[5:]},
    }
    for part, members in parts.items():
        (base / "train" / part).write_bytes(_tar(members))
    (base / "val" / "part_0.tar.gz").write_bytes(
        _tar({**{name(y): good for _, y in val_rows}, "../../escape.txt": b"x"})
    )
    (base / "replacement_for_corrupted_k400.tgz").write_bytes(_tar({f"replacement/{name(corrupt)}": good}))
    for split, rows in (("train", train_rows), ("val", val_rows)):
        (base / "annotations" / f"{split}.csv").write_text(_annotations(rows, split), encoding="utf-8")
        urls = [server.url(f"400/{split}/{p}") for p in sorted(os.listdir(base / split)) if p.endswith(".tar.gz")]
        (base / split / f"k400_{split}_path.txt").write_text("\n".join(urls) + "\n")
    return server.url("400"), {
        "missing": name(missing),
        "corrupt": name(corrupt),
        "train": len(train_rows),
        "val": len(val_rows),
    }


def test_download_prepare_train_evaluate_end_to_end(mirror, server, tmp_path, capsys):
    base_url, facts = mirror
    root = tmp_path / "k400"
    # ---- download: a failing part is reported (exit 1), the others finish; a rerun fetches only what is missing
    server.state["status"]["/400/train/part_1.tar.gz"] = [500, None]
    assert kinetics_command.main(["download", "--root", str(root), "--base-url", base_url, "--retries", "0"]) == 1
    assert "part_1.tar.gz" in capsys.readouterr().err
    server.state["status"].clear()
    assert kinetics_command.main(["download", "--root", str(root), "--base-url", base_url]) == 0
    gets = [p for m, p, _ in server.state["requests"] if m == "GET" and p.endswith(".tar.gz")]
    assert (
        gets.count("/400/train/part_0.tar.gz") == 1 and gets.count("/400/val/part_0.tar.gz") == 1
    )  # never fetched twice
    assert not (tmp_path / "escape.txt").exists() and not list(tmp_path.rglob("escape.txt"))  # hostile member refused
    assert not list((root / "tars").rglob("*.tar.gz"))  # parts are deleted once unpacked

    # ---- prepare: CVDF layout, the replacement wins over the corrupt clip, the missing clip is reported
    assert kinetics_command.main(["prepare", "--root", str(root), *SMALL]) == 0
    classes = (root / "classes.txt").read_text(encoding="utf-8").splitlines()
    assert classes == sorted(LABELS)
    bad = list(csv.DictReader(open(root / "bad_videos.csv", encoding="utf-8")))
    assert [(b["split"], b["path"]) for b in bad] == [("train", f"raw/train/{facts['missing']}")]  # under --root
    assert "missing" in bad[0]["reason"]
    items, _ = load_items(root, "train")
    assert len(items) == facts["train"] - 1 and all(it.step == 2 and it.frames == 20 for it in items)
    assert {it.label for it in items} == set(LABELS)
    originals, _ = load_items(root / "originals", "train")
    assert any("replacement" in it.path for it in originals) and all(it.frames == 40 for it in originals)
    mtimes = {p: p.stat().st_mtime_ns for p in (root / "frames").rglob("*.jpgs")}
    assert kinetics_command.main(["prepare", "--root", str(root), *SMALL]) == 0  # idempotent: nothing converted again
    assert {p: p.stat().st_mtime_ns for p in (root / "frames").rglob("*.jpgs")} == mtimes
    capsys.readouterr()
    assert kinetics_command.main(["check", "--root", str(root)]) == 0
    table = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[2:5]}
    assert table["train"][:4] == [str(facts["train"]), str(facts["train"] - 1), str(facts["train"] - 1), "1"]
    assert table["val"][:4] == [str(facts["val"])] * 3 + ["0"]

    # ---- a frame store broken after prepare: training replaces the clip and counts it
    victim = Path(items[0].path)
    victim.write_bytes(victim.read_bytes()[:100])
    run = tmp_path / "run"
    summary = training.train(
        train.parse_args(
            ["--subset", "k400", "--data-root", str(root), "--epochs", "1", "--out", str(run), *TINY_MODEL]
        )
    )
    assert summary["train_clips"] == facts["train"] - 1 and summary["skipped_train_clips"] == 1
    assert summary["val_clips"] == facts["val"] and 0 <= summary["val_top1"] <= 1
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["classes"] == sorted(LABELS)  # class indices = sorted labels, stored in the checkpoint
    assert evaluate.main(["--checkpoint", str(run / "best.pt"), "--out", str(tmp_path / "eval"), "--clips", "2"]) == 0
    result = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert result["num_videos"] == facts["val"] if "num_videos" in result else result["val_clips"] == facts["val"]


def test_train_without_data_names_the_two_commands(tmp_path, one_line_error):
    err = one_line_error(train.main, ["--subset", "k400", "--data-root", str(tmp_path / "nothing")])
    assert "minivb.data.kinetics download" in err and "minivb.data.kinetics prepare" in err
    (tmp_path / "downloaded" / "annotations").mkdir(parents=True)  # downloaded, not prepared: only prepare is missing
    (tmp_path / "downloaded" / "raw" / "train").mkdir(parents=True)
    err = one_line_error(train.main, ["--subset", "k400", "--data-root", str(tmp_path / "downloaded")])
    assert "not prepared yet" in err and "minivb.data.kinetics prepare --root" in err and "450 GB" not in err


# --------------------------------------------------------------------------- the frame store


@pytest.mark.parametrize("step", [1, 3])
def test_frame_store_keeps_every_step_th_frame_frame_exactly(tmp_path, step):
    src = write_h264(tmp_path / "s.mp4", stamped_frames(50, 64, 96))  # B-frames: decode order ≠ presentation order
    source, info = convert_video(src, tmp_path / "s.jpgs", short_side=256, step=step, quality=90)
    assert (
        (source.frames, source.width, source.height, source.fps) == (50, 96, 64, 25)
        and info.frames == len(range(0, 50, step))
        and (info.width, info.height, info.step) == (96, 64, step)
    )
    assert info == store_info(tmp_path / "s.jpgs") and info.fps == pytest.approx(25 / step)
    idx = [info.frames - 1, 0, 5, 5, 2]  # any order, repeats
    got = read_store_frames(tmp_path / "s.jpgs", idx)
    assert [read_stamp(f) for f in got] == [i * step for i in idx]  # stored frame i = source frame i·step
    ref = read_frames(src, [i * step for i in idx])
    assert np.abs(got.astype(int) - ref.astype(int)).mean() < 2.0  # JPEG q90 on top of the codec: close


def test_frame_store_shrinks_the_shorter_side_and_reports_damage(tmp_path):
    src = write_opencv(tmp_path / "tall.mp4", stamped_frames(20, 160, 96))  # portrait: width is the short side
    _, info = convert_video(src, tmp_path / "tall.jpgs", short_side=48, step=1)
    assert (info.width, info.height) == (48, 80) and read_store_frames(tmp_path / "tall.jpgs", [3]).shape == (
        1,
        80,
        48,
        3,
    )
    data = (tmp_path / "tall.jpgs").read_bytes()
    (tmp_path / "cut.jpgs").write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match="truncated"):
        read_store_frames(tmp_path / "cut.jpgs", [19])
    (tmp_path / "junk.jpgs").write_bytes(b"hello")
    with pytest.raises(VideoDecodeError, match="bad header"):
        store_info(tmp_path / "junk.jpgs")
    with pytest.raises(VideoDecodeError, match="store has 20 frames"):
        read_store_frames(tmp_path / "tall.jpgs", [20])


def test_a_frame_store_header_is_checked_against_the_file_before_reading(tmp_path, tiny_run, capsys):
    """D5 of the hardening issue: a store whose header claims ~4 billion frames made predict die with MemoryError
    (and training with a false "out of memory"). Counts and offsets are checked against the file's size first."""
    import struct

    from minivb.predict import main as predict_main

    src = write_opencv(tmp_path / "v.mp4", stamped_frames(20, 64, 96))
    convert_video(src, tmp_path / "good.jpgs", short_side=48, step=1)
    data = bytearray((tmp_path / "good.jpgs").read_bytes())
    huge = bytearray(data)
    struct.pack_into("<I", huge, 8, 2**32 - 1)  # the frame count: 4,294,967,295
    (tmp_path / "huge.jpgs").write_bytes(huge)
    with pytest.raises(VideoDecodeError, match="claims 4,294,967,295 frames"):
        store_info(tmp_path / "huge.jpgs")
    backwards = bytearray(data)
    struct.pack_into("<Q", backwards, 32 + 8 * 5, 10**12)  # an offset past the end of the file
    (tmp_path / "backwards.jpgs").write_bytes(backwards)
    with pytest.raises(VideoDecodeError, match="offset table"):
        read_store_frames(tmp_path / "backwards.jpgs", [0])
    zero = bytearray(data)
    struct.pack_into("<I", zero, 20, 0)  # step 0
    (tmp_path / "zero.jpgs").write_bytes(zero)
    with pytest.raises(VideoDecodeError, match="zero count, size or step"):
        store_info(tmp_path / "zero.jpgs")
    status = predict_main([str(tmp_path / "huge.jpgs"), str(tmp_path / "good.jpgs"), "--checkpoint", str(tiny_run)])
    out, err = capsys.readouterr()
    assert status == 1 and "claims 4,294,967,295 frames" in err and "good.jpgs" in out  # the good one classified


@pytest.mark.parametrize("step", [1, 2])
def test_prepared_clips_match_the_originals(tmp_path, step):
    root = tmp_path / "k"
    for label in ("a", "b"):
        (root / "train" / label).mkdir(parents=True)
        write_h264(root / "train" / label / f"{label}.mp4", stamped_frames(48, 64, 96))
    kinetics.prepare(root, ("train",), short_side=64, frame_step=step, min_frames=16, workers=1, progress=False)
    prepared, classes = load_items(root, "train")
    originals, _ = load_items(root / "originals", "train")
    common = dict(num_frames=6, stride=4, size=48, augment=Augmentation(seed=3))
    for train_mode in (False, True):  # evaluation: centre clip; training: random window, crop, flip from the same seed
        a = ClipDataset(prepared, classes, train=train_mode, **common)
        b = ClipDataset(originals, classes, train=train_mode, **common)
        for i in range(2):
            mode = "random" if train_mode else "center"
            stamps = [read_stamp(f) for f in a._clip(i, mode, seed=7)]
            source = [read_stamp(f) for f in b._clip(i, mode, seed=7)]
            assert (
                all(t % step == 0 for t in stamps) and np.diff(stamps).tolist() == [4] * 5
            )  # stored frames only, stride kept
            if step == 1:  # every frame kept: the same frames, the same crops, JPEG differences only
                assert stamps == source
                (va, la), (vb, lb) = a[i], b[i]
                assert la == lb and va.dtype == vb.dtype == torch.uint8 and va.shape == vb.shape == (6, 3, 48, 48)
                assert (va.float() - vb.float()).abs().mean() < 3.0
            elif not train_mode:  # every other frame kept: the centre clip starts at most one source frame earlier
                assert 0 <= source[0] - stamps[0] < step
    if step > 1:
        with pytest.raises(ValueError, match="multiple of 2"):
            ClipDataset(prepared, classes, num_frames=4, stride=3, train=False, size=48)


# --------------------------------------------------------------------------- bad clips


def _bad_corpus(split_dir: Path) -> dict[str, str | None]:
    """Write every kind of awkward file into class folders → {file name: expected reason, or None if it must load}."""
    a, b = split_dir / "alpha", split_dir / "beta"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    for k in range(2):
        write_h264(a / f"good{k}.mp4", stamped_frames(24, 64, 96))
        write_h264(b / f"good{k}.mp4", stamped_frames(24, 64, 96))
    (a / "empty.mp4").write_bytes(b"")
    whole = write_h264(a / "whole.mp4", stamped_frames(24, 64, 96)).read_bytes()  # moov at the end (no faststart)
    (a / "nomoov.mp4").write_bytes(whole[: len(whole) // 2])
    (a / "whole.mp4").unlink()
    (a / "text.mp4").write_text("this is not a video\n")
    cv2.imwrite(str(a / "image.png"), np.full((64, 96, 3), 128, np.uint8))
    (a / "image.png").rename(a / "image.mp4")  # a still image named .mp4
    write_h264(a / "short.mp4", stamped_frames(10, 64, 96))
    (a / "folder.mp4").mkdir()
    gray = cv2.VideoWriter(str(b / "gray.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (96, 64), isColor=False)
    for f in stamped_frames(24, 64, 96):
        gray.write(f[..., 0])
    gray.release()
    write_opencv(b / "huge.mp4", np.repeat(np.repeat(stamped_frames(20, 68, 120), 32, axis=1), 32, axis=2))  # 3840×2176
    write_opencv(b / "portrait.mp4", stamped_frames(20, 120, 64))
    write_h264(b / "naïve_клип_動画.mp4", stamped_frames(20, 64, 96))
    return {
        "empty.mp4": "empty",
        "nomoov.mp4": "not a readable video",
        "text.mp4": "not a readable video",
        "image.mp4": "a still image (PNG), not a video",
        "short.mp4": "too short",
        "folder.mp4": "not a regular file",
        "gray.mp4": None,
        "huge.mp4": None,
        "portrait.mp4": None,
        "naïve_клип_動画.mp4": None,
    }


def test_bad_clips_are_reported_with_their_reason_and_the_rest_train(tmp_path):
    root = tmp_path / "k"
    expect = _bad_corpus(root / "train")
    _bad_corpus(root / "val")
    summary = kinetics.prepare(root, short_side=48, frame_step=2, min_frames=8, workers=2, progress=False)
    bad = {
        Path(r["path"]).name: r
        for r in csv.DictReader(open(root / "bad_videos.csv", encoding="utf-8"))
        if r["split"] == "train"
    }
    for name, reason in expect.items():
        if reason is None:
            assert name not in bad
        else:
            assert reason in bad[name]["reason"], (name, bad.get(name))
    assert summary["train"] == {"clips": 8, "bad": 6, "untrained": 0}
    items = {Path(it.path).stem: it for it in load_items(root, "train")[0]}
    info = {name: store_info(it.path) for name, it in items.items()}
    assert (info["huge"].width, info["huge"].height) == (85, 48) and (
        info["portrait"].width,
        info["portrait"].height,
    ) == (48, 90)
    assert info["gray"].frames == 12 and "naïve_клип_動画" in items
    run = training.train(
        train.parse_args(
            ["--subset", "k400", "--data-root", str(root), "--epochs", "1", "--out", str(tmp_path / "run"), *TINY_MODEL]
        )
    )
    assert run["train_clips"] == 8 and run["val_clips"] == 8 and run["skipped_train_clips"] == 0


def test_an_annotation_csv_that_is_not_utf8_is_one_line(tmp_path, one_line_error):
    (tmp_path / "k" / "annotations").mkdir(parents=True)
    (tmp_path / "k" / "annotations" / "train.csv").write_bytes(
        b"label,youtube_id,time_start,time_end,split,is_cc\ncaf\xe9,abc,10,20,train,0\n"
    )
    err = one_line_error(kinetics_command.main, ["prepare", "--root", str(tmp_path / "k"), "--split", "train"])
    assert "annotations/train.csv, line 2: not UTF-8 text" in err


@pytest.mark.parametrize("value", ["1e999", "nan", "ten"])
def test_an_annotation_time_that_is_no_number_of_seconds_is_one_line(tmp_path, one_line_error, value):
    """Issue 30, rule 2: a time_start of 1e999 was an OverflowError traceback. Now one line: file, line, value."""
    (tmp_path / "k" / "annotations").mkdir(parents=True)
    (tmp_path / "k" / "annotations" / "train.csv").write_text(
        f"label,youtube_id,time_start,time_end,split,is_cc\na,abc,10,20,train,0\nb,def,{value},20,train,0\n"
    )
    err = one_line_error(kinetics_command.main, ["prepare", "--root", str(tmp_path / "k"), "--split", "train"])
    assert f"annotations/train.csv, line 3: time_start {value!r} is not a number of seconds" in err


def test_conflicting_annotations_are_reported_and_validation_stays_out_of_training(tmp_path):
    """D7 (silent) of the hardening issue: prepare accepted a repeated row, one clip under two labels, and a clip
    in both train and val (so validation measured clips the model trained on). Each is now reported."""
    root = tmp_path / "k"
    good = _clip(tmp_path / "clip.mp4")
    rows = {
        "train": [("a", "t1"), ("a", "t1"), ("a", "t2"), ("b", "t3"), ("a", "two"), ("b", "two"), ("b", "v1")],
        "val": [("a", "v1"), ("b", "v2")],
    }
    (root / "annotations").mkdir(parents=True)
    for split, split_rows in rows.items():
        (root / "annotations" / f"{split}.csv").write_text(_annotations(split_rows, split), encoding="utf-8")
        (root / "raw" / split).mkdir(parents=True)
        for _, yid in split_rows:
            (root / "raw" / split / f"{yid}_000010_000020.mp4").write_bytes(good)
    summary = kinetics.prepare(root, short_side=48, frame_step=2, min_frames=16, workers=1, progress=False)
    train_items, _ = load_items(root, "train")
    assert sorted(Path(it.path).stem for it in train_items) == [
        "t1_000010_000020",
        "t2_000010_000020",
        "t3_000010_000020",
    ]
    assert summary["train"] == {"clips": 3, "bad": 4, "untrained": 0}
    assert summary["val"] == {"clips": 2, "bad": 0, "untrained": 0}
    why = sorted(
        (Path(r["path"]).stem.split("_")[0], r["reason"])
        for r in csv.DictReader(open(root / "bad_videos.csv", encoding="utf-8"))
    )
    assert why == [
        ("t1", "a repeated row of the annotations (the clip is used once)"),
        ("two", "listed under 2 labels (a, b)"),
        ("two", "listed under 2 labels (a, b)"),
        ("v1", "also listed in the val or test split: kept out of training"),
    ]


def test_names_from_the_annotations_never_write_outside_the_root(tmp_path):
    """D4 of the hardening issue: a label holding ``../`` (or an absolute path, or a youtube id with a slash)
    made prepare write frame stores outside --root. Such a clip is reported in bad_videos.csv, never written."""
    root = tmp_path / "k"
    good = _clip(tmp_path / "clip.mp4")
    rows = {
        "train": [("ok", "aaa"), ("ok", "bbb"), ("../../outside", "ccc"), ("/abs", "ddd"), ("ok", "e/../../f")],
        "val": [("ok", "vvv"), ("..", "www")],
    }
    for split, split_rows in rows.items():
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{split}.csv").write_text(_annotations(split_rows, split), encoding="utf-8")
        (root / "raw" / split).mkdir(parents=True)
        for _, yid in split_rows:
            if "/" not in yid:
                (root / "raw" / split / f"{yid}_000010_000020.mp4").write_bytes(good)
    summary = kinetics.prepare(root, short_side=48, frame_step=2, min_frames=16, workers=1, progress=False)
    assert summary == {"train": {"clips": 2, "bad": 3, "untrained": 0}, "val": {"clips": 1, "bad": 1, "untrained": 0}}
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpgs"))
    assert written == [
        "k/frames/train/ok/aaa_000010_000020.jpgs",
        "k/frames/train/ok/bbb_000010_000020.jpgs",
        "k/frames/val/ok/vvv_000010_000020.jpgs",
    ]
    bad = list(csv.DictReader(open(root / "bad_videos.csv", encoding="utf-8")))
    assert sorted(r["label"] for r in bad) == ["..", "../../outside", "/abs", "ok"]
    assert all("would be written outside its folder" in r["reason"] for r in bad)
    assert (root / "classes.txt").read_text() == "ok\n"


def test_a_part_list_line_that_is_no_archive_name_is_reported_not_opened(mirror, server, tmp_path, capsys):
    """D14: a part list line ending ``/val/`` or ``/..`` made download open a folder as an archive (traceback)."""
    base_url, facts = mirror
    listing = server.root / "400" / "val" / "k400_val_path.txt"
    listing.write_text(listing.read_text() + server.url("400/val/") + "\n" + server.url("400/val/..") + "\n")
    root = tmp_path / "k400"
    assert kinetics_command.main(["download", "--root", str(root), "--base-url", base_url, "--split", "val"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("is not a file name") == 2 and "1 part(s) failed" not in err
    assert "2 part(s) failed" in err
    assert len(list((root / "raw" / "val").glob("*.mp4"))) == facts["val"]  # the real part is unpacked


def test_download_without_the_mirror_exits_1_and_leaves_no_empty_folders(server, tmp_path, capsys):
    """No network (here: a mirror with nothing on it) is a failed download — exit 1, as data/README.md says, not a
    usage error — and the annotations/ folder it was about to fill is not left behind empty."""
    root = tmp_path / "k400"
    base = server.url("nothing-here")
    status = kinetics_command.main(["download", "--root", str(root), "--base-url", base, "--retries", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1 and err[0].startswith("error: ") and "run the same command again" in err[0]
    assert not (root / "annotations").exists()


def _inline(jobs, workers):
    """``kinetics._converted`` in this process: quicker, and a fault made here reaches the conversion."""
    yield from map(kinetics._convert, jobs)


def _class_folders(root: Path, clips: dict[str, int], fps: int = 25) -> None:
    """``clips``: ``{"split/label/name": frames}`` → H.264 clips in class folders under ``root``."""
    for where, n in clips.items():
        (root / where).parent.mkdir(parents=True, exist_ok=True)
        write_h264(root / f"{where}.mp4", stamped_frames(n, 64, 96), fps=fps)


def _bad_rows(root: Path) -> list[tuple[str, str, str]]:
    with open(root / "bad_videos.csv", encoding="utf-8") as f:
        return [(r["split"], Path(r["path"]).stem, r["reason"]) for r in csv.DictReader(f)]


def _children(pid: int) -> set[int]:
    """The process ids whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found |= {int(p) for p in (task / "children").read_text().split()}
    return found


def _gone(pids: set[int], seconds: float = 20.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = set()
        for pid in pids:
            try:
                os.kill(pid, 0)
                stat = Path(f"/proc/{pid}/stat").read_text()
                if stat.split(") ", 1)[1].split()[0] != "Z":  # a zombie has ended (its parent did not reap it)
                    alive.add(pid)
            except (ProcessLookupError, FileNotFoundError):
                pass
        if not alive:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL", "a worker's SIGKILL"])
def test_a_stopped_prepare_ends_its_workers_keeps_its_work_and_continues(tmp_path, how):
    """D10 of the hardening issue: after SIGTERM or kill -9 of prepare its workers kept converting, then printed
    BrokenPipeError tracebacks. SIGTERM now stops like Ctrl-C (what is done is kept; exit 0, how to continue);
    after kill -9 the system ends the workers; the same command then finishes the job. Issue 30: kill -9 left a
    "leaked semaphore objects" warning (multiprocessing.Pool's queues); a worker killed (a decoder crash, the OOM
    killer) costs only its clip, reported and tried again by the next run."""
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "k"
    clip = _clip(tmp_path / "clip.mp4", n=60)
    for c in range(2):
        (root / "train" / f"c{c}").mkdir(parents=True)
        for k in range(12):
            (root / "train" / f"c{c}" / f"v{k:02d}.mp4").write_bytes(clip)
    argv = [
        sys.executable,
        "-m",
        "minivb.data.kinetics",
        "prepare",
        "--root",
        str(root),
        "--split",
        "train",
        "--workers",
        "1",  # one worker: a journal line proves it has run its initializer (no worker still starting up)
        "--short-side",
        "48",
        "--frame-step",
        "1",
        "--min-frames",
        "16",
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1")
    )
    journal = root / ".prepare" / "train.jsonl"
    deadline = time.monotonic() + 120
    while not (journal.is_file() and journal.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert workers and proc.poll() is None, "prepare finished before it could be stopped"
    if how == "a worker's SIGKILL":
        [worker] = [p for p in workers if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        os.kill(worker, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "train: 23 clips prepared, 1 left out" in out, err
        [(_, _, why)] = _bad_rows(root)
        assert why == "the process converting it died (exit code -9); the next prepare retries it"
    else:
        proc.send_signal(getattr(signal, how))
        _, err = proc.communicate(timeout=60)
    if how == "SIGTERM":
        assert proc.returncode == 0, err
        assert "stopped by SIGTERM; run the same command again" in err and "Traceback" not in err, err
    assert "leaked semaphore" not in err and "Traceback" not in err, err  # (err holds the resource tracker's too)
    assert _gone(workers), f"workers still running after {how}"
    done = journal.read_text().count("\n")
    assert 2 <= done < 24
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert rerun.returncode == 0, rerun.stderr
    assert "train: 24 clips prepared, none left out" in rerun.stdout
    assert not list((root / "frames").rglob(".*.tmp"))  # a killed run's half-written stores are swept (D27)


def test_a_full_disk_during_prepare_is_one_line_and_keeps_the_work(tmp_path, monkeypatch, capsys):
    """D11: a full disk mid-prepare was a RemoteTraceback; it is now one line, the workers stopped, the journal
    kept (the run before it counts as done). (The workers run in this process here, so the fault can be made.)"""
    import errno

    import minivb.data.framestore

    root = tmp_path / "k"
    clip = _clip(tmp_path / "clip.mp4")
    (root / "train" / "a").mkdir(parents=True)
    for k in range(4):
        (root / "train" / "a" / f"v{k}.mp4").write_bytes(clip)

    monkeypatch.setattr(kinetics, "_converted", _inline)
    real, calls = minivb.data.framestore.write_store, []

    def fills_up(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # the third store does not fit
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(minivb.data.framestore, "write_store", fills_up)
    assert kinetics_command.main(["prepare", "--root", str(root), "--split", "train", *SMALL]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no space left on {root}"), err
    assert (root / ".prepare" / "train.jsonl").read_text().count("\n") == 2 and not list(root.rglob(".*.tmp"))


def test_a_full_disk_while_the_journal_is_written_is_one_line(tmp_path, monkeypatch, capsys):
    """Issue 30: a full disk when prepare wrote its journal gave two chained [Errno 28] tracebacks (the journal's
    flush, then its close); a full disk anywhere in prepare is now one line, exit 1. (/dev/full: every write to it
    fails with ENOSPC, a real full disk for the journal alone.)"""
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full (Linux)")
    root = tmp_path / "k"
    _class_folders(root, {"train/a/v": 40})
    (root / ".prepare").mkdir()
    (root / ".prepare" / "train.jsonl").symlink_to("/dev/full")
    monkeypatch.setattr(kinetics, "_converted", _inline)
    assert kinetics_command.main(["prepare", "--root", str(root), "--split", "train", *SMALL]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no space left on {root}"), err


def test_a_cut_journal_line_does_not_swallow_the_next_one(tmp_path):
    """A run killed (or stopped by a full disk) in the middle of a journal line left it cut short; the next run's
    first line was appended to it, and both were lost. That line now starts on a line of its own."""
    path, source = tmp_path / "train.jsonl", str(tmp_path / "v.mp4")
    path.write_text('{"source": "cut sh')
    journal = kinetics._Journal(path, kinetics.Settings())
    journal.add({"source": source, "reason": "empty"})
    journal.file.close()
    assert kinetics._Journal(path, kinetics.Settings()).done[source]["reason"] == "empty"


def test_validation_clips_of_a_class_training_lacks_are_reported(tmp_path, monkeypatch, capsys):
    """Issue 30: a val clip whose label no training clip has was in neither val.csv nor bad_videos.csv, so the
    accuracy was measured on part of the validation set with nothing said. It is now a bad row with its reason and
    counted in the summary line; --limit-classes still leaves other classes out as asked."""
    root = tmp_path / "k"
    _class_folders(root, {"train/a/t1": 40, "train/b/t2": 40, "val/a/v1": 40, "val/b/v2": 40, "val/c/v3": 40})
    monkeypatch.setattr(kinetics, "_converted", _inline)
    assert kinetics_command.main(["prepare", "--root", str(root), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "val: 2 clips prepared, 1 left out, 1 of a class no training clip has (see" in out, out
    assert _bad_rows(root) == [("val", "v3", kinetics.UNTRAINED)]
    assert [Path(it.path).stem for it in load_items(root, "val")[0]] == ["v1", "v2"]
    argv = ["prepare", "--root", str(root), "--split", "val", "--limit-classes", "1", *SMALL]
    assert kinetics_command.main(argv) == 0
    assert "val: 1 clip prepared, 1 left out, 1 of a class no training clip has" in capsys.readouterr().out
    assert _bad_rows(root) == [("val", "v3", kinetics.UNTRAINED)]  # b is left out as asked, not reported


def test_min_frames_counts_the_frames_a_clip_keeps(tmp_path, monkeypatch, capsys):
    """Issue 30: a 57-frame 6-fps clip became 15 stored frames at --frame-step 4, fewer than the k400 preset's 16
    frames per clip, and nothing said so: --min-frames counted source frames. It counts kept frames now, as the
    index's frames column does: the clip is reported, with both counts."""
    root = tmp_path / "k"
    _class_folders(root, {"train/a/short": 57, "train/a/long": 61}, fps=6)
    monkeypatch.setattr(kinetics, "_converted", _inline)
    argv = ["prepare", "--root", str(root), "--split", "train", "--frame-step", "4", "--min-frames", "16"]
    assert kinetics_command.main([*argv, "--short-side", "48"]) == 0
    assert "train: 1 clip prepared, 1 left out" in capsys.readouterr().out
    assert _bad_rows(root) == [
        ("train", "short", "too short: 57 decodable frames keep 15 at frame step 4, need at least 16")
    ]
    assert [(Path(it.path).stem, it.frames) for it in load_items(root, "train")[0]] == [("long", 16)]


def test_check_names_bad_videos_csv_only_when_clips_were_left_out(tmp_path, capsys):
    """Issue 30: check pointed to bad_videos.csv with 0 bad clips."""
    root = tmp_path / "k"
    _class_folders(root, {"train/a/v": 20})
    (root / "bad_videos.csv").write_text("split,path,label,reason\n")
    assert kinetics_command.main(["check", "--root", str(root), "--split", "train"]) == 0
    assert "bad_videos.csv" not in capsys.readouterr().out
    (root / "bad_videos.csv").write_text("split,path,label,reason\ntrain,train/a/w.mp4,a,empty\n")
    assert kinetics_command.main(["check", "--root", str(root), "--split", "train"]) == 0
    assert f"why each clip was left out: {root / 'bad_videos.csv'}" in capsys.readouterr().out


def test_one_prepare_per_root(tmp_path, one_line_error):
    from minivb.plumbing.files import lock_folder, unlock_folder

    (tmp_path / "k" / ".prepare").mkdir(parents=True)
    lock = lock_folder(tmp_path / "k" / ".prepare")
    try:
        one_line_error(kinetics_command.main, ["prepare", "--root", str(tmp_path / "k")], "another prepare is running")
    finally:
        unlock_folder(tmp_path / "k" / ".prepare", lock)


def test_a_class_whose_training_clips_are_all_too_short_is_no_class(tmp_path):
    root = tmp_path / "k"
    for split, label, frames in (("train", "a", 40), ("train", "s", 10), ("val", "a", 40), ("val", "s", 40)):
        (root / split / label).mkdir(parents=True, exist_ok=True)
        write_h264(root / split / label / f"{split}{label}.mp4", stamped_frames(frames, 64, 96))
    summary = kinetics.prepare(root, short_side=48, frame_step=1, min_frames=16, workers=1, progress=False)
    assert (root / "classes.txt").read_text() == "a\n"  # s kept no training clip
    assert summary["val"] == {"clips": 1, "bad": 1, "untrained": 1}
    reasons = {(r["split"], r["label"]): r["reason"] for r in csv.DictReader(open(root / "bad_videos.csv"))}
    assert reasons[("train", "s")].startswith("too short") and "no prepared training clip" in reasons[("val", "s")]
    summary = kinetics.prepare(root, ["val"], short_side=48, frame_step=1, min_frames=16, workers=1, progress=False)
    assert summary["val"]["untrained"] == 1  # val alone: the classes are what the training index holds


def test_a_root_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, one_line_error):
    import errno

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    one_line_error(kinetics_command.main, ["prepare", "--root", str(tmp_path / "k")], "Read-only file system")


def test_class_folders_without_videos_and_names_with_newlines_are_said(tmp_path, caplog):
    root = tmp_path / "k"
    for label in ("a", "b", "two\nlines"):
        (root / "train" / label).mkdir(parents=True)
        write_h264(root / "train" / label / f"{label[:3]}.mp4", stamped_frames(20, 64, 96))
    for n in range(7):
        (root / "train" / f"empty{n}").mkdir()
    summary = kinetics.prepare(root, ["train"], short_side=48, frame_step=1, min_frames=8, workers=1, progress=False)
    assert summary["train"]["clips"] == 2 and summary["train"]["bad"] == 1
    assert (root / "classes.txt").read_text() == "a\nb\n"  # one name a line: no class split in two
    (bad,) = csv.DictReader(open(root / "bad_videos.csv", encoding="utf-8"))
    assert bad["label"] == "two\nlines" and "control character" in bad["reason"]
    said = [r.getMessage() for r in caplog.records if "without a video" in r.getMessage()]
    assert said and "7 class folder(s) without a video left out: 'empty0', 'empty1'" in said[0]


def test_ctrl_c_says_how_to_continue(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(kinetics, "download", interrupted)
    assert kinetics_command.main(["download", "--root", str(tmp_path / "k")]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "run the same command again to continue" in err and "Traceback" not in err


def test_prepare_refuses_early_without_disk_space(tmp_path, monkeypatch, one_line_error):
    (tmp_path / "k" / "train" / "a").mkdir(parents=True)
    write_h264(tmp_path / "k" / "train" / "a" / "a.mp4", stamped_frames(20, 64, 96))
    monkeypatch.setattr(kinetics, "STORE_BYTES", 1e18)
    err = one_line_error(
        kinetics_command.main, ["prepare", "--root", str(tmp_path / "k"), "--split", "train", "--workers", "1"]
    )
    assert "needs about" in err and "GB free" in err
    assert not (tmp_path / "k" / "frames").exists() or not list((tmp_path / "k" / "frames").rglob("*.jpgs"))


def test_a_corrupt_part_is_reported_deleted_and_fetched_again(mirror, server, tmp_path, capsys):
    base_url, facts = mirror
    root, part = tmp_path / "k400", server.root / "400" / "val" / "part_0.tar.gz"
    good = part.read_bytes()
    part.write_bytes(good[: len(good) // 2])  # served whole, but the archive inside is cut short
    assert kinetics_command.main(["download", "--root", str(root), "--base-url", base_url, "--split", "val"]) == 1
    assert "part_0.tar.gz" in capsys.readouterr().err and not (root / "tars" / "val" / "part_0.tar.gz").exists()
    part.write_bytes(good)
    assert kinetics_command.main(["download", "--root", str(root), "--base-url", base_url, "--split", "val"]) == 0
    assert len(list((root / "raw" / "val").glob("*.mp4"))) == facts["val"]


@pytest.mark.parametrize(
    "argv, says",
    [
        (["prepare", "--quality", "1000"], "--quality: must be 1..100, got 1000"),
        (["prepare", "--short-side", "0"], "--short-side: must be > 0"),
        (["download", "--retries", "-1"], "--retries: must be >= 0"),
        (["download", "--workers", "inf"], "--workers: expected an integer"),
    ],
)
def test_every_option_is_checked_in_one_line(tmp_path, one_line_error, argv, says):
    one_line_error(kinetics_command.main, [*argv, "--root", str(tmp_path / "k")], says)
    assert not (tmp_path / "k").exists()
