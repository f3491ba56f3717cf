"""python -m minivb.train: outputs, exact resume after kill -9 and SIGTERM, DDP on the CPU, bad input.

Every run trains a tiny model on a tiny toy set (16 train / 8 val videos) for 2 epochs of 8 steps.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minivb import load_checkpoint
from minivb.data.registry import PRESETS
from minivb.data.toy import CLASSES
from minivb.engine.checkpoint import read_checkpoint, save_checkpoint
from minivb.engine.training import train, train_once
from minivb.plumbing import runs
from minivb.plumbing.checks import UsageError
from minivb.train import main, parse_args

TINY = (
    "--epochs 2 --batch-size 2 --num-frames 4 --size 32 --dim 32 --depth 1 --heads 2 --save-every 3 --limit-val 6"
).split()
STEPS = 16  # 2 epochs × 16 videos / batch 2
# One thread per process: tiny models gain nothing from more, and on a shared 2-core machine
# OpenMP threads that wait for each other are many times slower.
ENV = dict(os.environ, OMP_NUM_THREADS="1")

# Runs minivb.train with an on_step hook (the loop's own seam): after the STALL_AT-th optimizer
# step it writes a marker file and then waits (for SIGKILL, or for a release file after SIGTERM /
# SIGINT) — a real process interrupted between two steps, at a known point.
DRIVER = """
import os, sys, time
import minivb.train
stall_at, marker, release = int(os.environ["STALL_AT"]), os.environ["STALL_MARKER"], os.environ.get("STALL_RELEASE")
def stall(state):
    if state.step == stall_at:
        open(marker, "w").close()
        while not (release and os.path.exists(release)):
            time.sleep(0.02)
sys.exit(minivb.train.main(sys.argv[1:], on_step=stall))
"""


@pytest.fixture(scope="module")
def _run(run_module):
    return lambda args, cwd: run_module("minivb.train", *args, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def reference(toy, tmp_path_factory, _run):
    """An uninterrupted run (workers 0): the result every resumed run must reproduce bit for bit."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    proc = _run(["--data-root", str(toy), "--out", str(out), *TINY], cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def _assert_same_training_state(a: Path, b: Path):
    ca, cb = read_checkpoint(a), read_checkpoint(b)
    assert ca["step"] == cb["step"] == STEPS
    assert ca["model"].keys() == cb["model"].keys()
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert sa.keys() == sb.keys() and len(sa) > 0
    for i in sa:
        for k in sa[i]:
            assert torch.equal(sa[i][k], sb[i][k]), (i, k)
    assert ca["scheduler"] == cb["scheduler"]
    assert torch.equal(ca["rng"]["cpu"], cb["rng"]["cpu"])


def _metrics(out: Path):
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _same_numbers(a: Path, b: Path):
    keys = ("epoch", "step", "train_loss", "val_loss", "val_top1", "val_top5", "lr")
    assert [{k: r[k] for k in keys} for r in _metrics(a)] == [{k: r[k] for k in keys} for r in _metrics(b)]


def _wait_for(path: Path, proc: subprocess.Popen, timeout=120):
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, f"run ended before the stall point: {proc.communicate()}"
        assert time.monotonic() - t0 < timeout, "stall point not reached"
        time.sleep(0.02)


def _start_stalling(args, cwd, stall_at, release=None):
    env = dict(ENV, STALL_AT=str(stall_at), STALL_MARKER=str(cwd / "stalled"))
    if release:
        env["STALL_RELEASE"] = str(release)
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


# --------------------------------------------------------------------------- a run's outputs


def test_run_writes_its_output_folder(reference):
    out, proc = reference
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt",
        "config.json",
        "curves.png",
        "last.pt",
        "metrics.csv",
        "summary.json",
    ]
    rows = _metrics(out)
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[-1]["step"] == str(STEPS)
    assert list(rows[0]) == [
        "epoch",
        "step",
        "train_loss",
        "val_loss",
        "val_top1",
        "val_top5",
        "lr",
        "clips_per_s",
        "seconds",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert {"val_top1", "val_top5", "epochs", "seconds", "per_class_top1", "device", "world_size"} <= summary.keys()
    assert summary["epochs"] == 2 and summary["world_size"] == 1 and summary["val_clips"] == 6
    assert list(summary["per_class_top1"]) == list(CLASSES)
    assert (
        float(rows[-1]["val_top1"]) == summary["val_top1"]
        or abs(float(rows[-1]["val_top1"]) - summary["val_top1"]) < 1e-5
    )
    config = json.loads((out / "config.json").read_text())
    assert config["args"]["dim"] == 32 and config["args"]["encoder"] == PRESETS["toy"]["encoder"]
    assert config["model"]["time_embedding"] is True and config["classes"] == list(CLASSES)
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 2 and "top-1" in lines[1] and "clips/s" in lines[1]
    model, classes = load_checkpoint(out / "last.pt")
    assert classes == list(CLASSES) and model.config.dim == 32
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] in (1, 2)


def test_a_broken_video_is_skipped_with_one_warning(toy_copy, tmp_path, _run):
    data = toy_copy
    bad = data / "train" / "growing" / "growing_0000.mp4"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    proc = _run(["--data-root", str(data), "--out", str(tmp_path / "run"), "--no-preload", *TINY], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "skipping" in line]
    assert len(warnings) == 1 and str(bad) in warnings[0], proc.stderr  # drawn in both epochs, reported once
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == STEPS


def test_odd_files_in_class_folders_are_reported_and_counted(toy_copy, tmp_path, _run):
    data = toy_copy
    for index in ("train.csv", "val.csv", "meta.json"):  # someone's class-folder layout (not a toy set)
        (data / index).unlink()
    fifo, folder, link = (
        data / "train" / "growing" / "fifo.mp4",
        data / "train" / "closing" / "folder.mp4",
        data / "val" / "opening" / "gone.mp4",
    )
    os.mkfifo(fifo)
    folder.mkdir()
    link.symlink_to(data / "nowhere.mp4")
    proc = _run(
        ["--subset", "k400", "--preset", "toy", "--data-root", str(data), "--out", str(tmp_path / "run"), *TINY],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "skipping" in line]
    assert sorted(warnings) == sorted(
        [
            f"WARNING: skipping {fifo}: not a regular file",
            f"WARNING: skipping {folder}: not a regular file",
            f"WARNING: skipping {link}: a broken link (its target does not exist)",
        ]
    ), proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["skipped_train_clips"], summary["skipped_val_clips"]) == (2, 1)
    assert summary["train_clips"] == 18  # 16 videos + the 2 odd names, listed (and replaced when drawn)
    assert summary["val_clips"] + summary["skipped_val_clips"] == 6  # --limit-val 6: evaluated + skipped


# --------------------------------------------------------------------------- exact resume


@pytest.mark.parametrize("workers, stall_at", [(0, 11), (2, 5)])
def test_kill_9_then_resume_is_bit_identical(toy, reference, tmp_path, workers, stall_at, _run):
    out = tmp_path / "run"
    args = ["--data-root", str(toy), "--out", str(out), "--workers", str(workers), *TINY]
    proc = _start_stalling(args, tmp_path, stall_at)
    _wait_for(tmp_path / "stalled", proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its DataLoader workers, between two steps
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    saved = read_checkpoint(out / "last.pt")
    assert 2 <= saved["step"] < stall_at and not (out / "summary.json").exists()  # the stalled step was lost
    resumed = _run(["--resume", str(out), "--workers", str(workers)], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at epoch {saved['epoch'] + 1}, step {saved['step']}" in resumed.stdout
    _assert_same_training_state(reference[0] / "last.pt", out / "last.pt")
    _same_numbers(reference[0], out)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(toy, reference, tmp_path, _run):
    out = tmp_path / "run"
    proc = _start_stalling(["--data-root", str(toy), "--out", str(out), *TINY], tmp_path, 6, release=tmp_path / "go")
    _wait_for(tmp_path / "stalled", proc)
    proc.send_signal(signal.SIGTERM)  # arrives inside the step's hook: the run saves before the next batch and stops
    time.sleep(0.2)
    (tmp_path / "go").touch()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stopped by SIGTERM" in stdout and "Traceback" not in stderr
    assert read_checkpoint(out / "last.pt")["step"] == 6 and not (out / "summary.json").exists()
    resumed = _run(["--resume", str(out / "last.pt")], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_training_state(reference[0] / "last.pt", out / "last.pt")
    _same_numbers(reference[0], out)


def test_ctrl_c_saves_says_how_to_resume_and_exits_130(toy, reference, tmp_path, _run):
    out = tmp_path / "run"
    proc = _start_stalling(
        ["--data-root", str(toy), "--out", str(out), "--workers", "1", *TINY], tmp_path, 7, release=tmp_path / "go"
    )
    _wait_for(tmp_path / "stalled", proc)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the trainer and its workers get SIGINT
    time.sleep(0.2)
    (tmp_path / "go").touch()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "stopped by SIGINT" in stdout and f"--resume {out}" in stdout
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert read_checkpoint(out / "last.pt")["step"] == 7
    resumed = _run(["--resume", str(out)], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_training_state(reference[0] / "last.pt", out / "last.pt")


# --------------------------------------------------------------------------- the run folder


def test_a_run_stops_its_loader_workers_before_it_returns(toy, tmp_path):
    """The persistent DataLoader workers ignore SIGTERM (it is the trainer's to handle), so the SIGTERM with which
    Python's exit ends leftover children cannot end them: a run that left them to garbage collection hung at exit
    (after a resume). The run stops them itself."""
    import gc
    import multiprocessing

    gc.disable()  # as at exit: nothing may depend on when the collector runs
    try:
        status = main(["--data-root", str(toy), "--out", str(tmp_path / "run"), "--workers", "1", *TINY])
        left = multiprocessing.active_children()
    finally:
        gc.enable()
    for worker in left:  # (SIGKILL: a failing test must not hang the suite at its exit, as the run did)
        worker.kill()
        worker.join()
    assert status == 0 and left == []


def test_a_users_folder_with_a_meta_json_is_never_called_deletable(tmp_path, one_line_error):
    """D23 of the hardening issue: for a user's own folder holding its own meta.json the trainer said "delete" it.
    It is not a toy set: say how to train on one's own videos. A toy set whose making was interrupted (its
    meta.json says "incomplete") is made again, as a missing one is."""
    import json

    from minivb.data import registry, toy

    mine = tmp_path / "mine"
    (mine / "train" / "a").mkdir(parents=True)
    (mine / "meta.json").write_text(json.dumps({"author": "me", "camera": "phone"}))
    err = one_line_error(main, ["--data-root", str(mine), *TINY], "is not a toy set")
    assert "delete" not in err and "--subset k400" in err
    assert sorted(p.name for p in mine.iterdir()) == ["meta.json", "train"]  # untouched

    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    marker = {"generator": toy.GENERATOR, "format_version": toy.FORMAT_VERSION, "incomplete": True}
    (interrupted / "meta.json").write_text(json.dumps(marker))
    registry.ensure_toy(interrupted)
    assert len(toy.read_index(interrupted, "train")) == 8 * toy.ToyConfig().train_per_class


def test_no_flips_reaches_the_training_clips(toy):
    from minivb.data.clips import load_items
    from minivb.engine.training import build_data, resolve_options

    items, classes = load_items(toy, "train")
    for argv, want in (([], True), (["--no-flips"], False), (["--flips"], True)):
        opts, _, _ = resolve_options(parse_args(["--data-root", str(toy), *TINY, "--no-preload", *argv]))
        train_set = build_data(opts, classes, items, items, torch.device("cpu"), 0, 1)[0]
        assert opts.flips is want and train_set.flips is want


def test_a_warmup_longer_than_the_run_is_said(toy, tmp_path, capsys):
    argv = ["--data-root", str(toy), "--out", str(tmp_path / "run"), *TINY, "--epochs", "1", "--warmup-epochs", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 epoch × 8 steps" in out  # (not "1 epochs")
    assert "note: the warmup (24 steps) is longer than the run (8 steps): the learning rate stops at 33% of --lr" in out
    assert "note: one class" not in out and "without a training video" not in out


def test_one_class_and_classes_without_training_videos_are_said(toy_copy, tmp_path, capsys):
    rows = (toy_copy / "train.csv").read_text().splitlines()
    (toy_copy / "train.csv").write_text("\n".join([rows[0], *(r for r in rows[1:] if ",closing," not in r)]) + "\n")
    assert main(["--data-root", str(toy_copy), "--out", str(tmp_path / "a"), *TINY, "--epochs", "1"]) == 0
    assert (
        "note: 1 class without a training video, which the model can never learn: closing\n" in capsys.readouterr().out
    )
    (toy_copy / "classes.txt").write_text("closing\n")
    for split in ("train", "val"):
        rows = (toy_copy / f"{split}.csv").read_text().splitlines()
        (toy_copy / f"{split}.csv").write_text("\n".join([rows[0], *(r for r in rows[1:] if ",closing," in r)]) + "\n")
    (toy_copy / "train.csv").write_text((toy_copy / "val.csv").read_text())
    assert main(["--data-root", str(toy_copy), "--out", str(tmp_path / "b"), *TINY, "--epochs", "1"]) == 0
    assert (
        "note: one class (closing): every prediction is right, so its accuracy means nothing" in capsys.readouterr().out
    )


def test_log_takes_the_runs_lines_or_silences_them(toy, tmp_path, capsys):
    opts = parse_args(["--data-root", str(toy), *TINY, "--epochs", "1"])
    lines = []
    train(opts | {"out": str(tmp_path / "kept")}, log=lines.append)
    assert lines[0].startswith("minivb.train: toy") and lines[1].startswith("epoch   1/1")
    assert lines[-1].startswith("done: val top-1")
    quiet = train(opts | {"out": str(tmp_path / "quiet")}, log=None)
    assert capsys.readouterr().out == ""  # nothing printed, the run still kept
    assert (tmp_path / "quiet" / "metrics.csv").read_text().count("\n") == 2 and quiet["epochs"] == 1


def test_train_once_reuses_a_finished_run_with_the_same_options_and_trains_otherwise(toy, tmp_path):
    opts = parse_args(["--data-root", str(toy), *TINY, "--epochs", "1"]) | {"out": str(tmp_path / "run")}
    assert not (tmp_path / "run").exists()
    lines = []
    first = train_once(opts, log=lines.append)  # nothing there yet: it trains
    assert lines[0].startswith("minivb.train: toy") and (tmp_path / "run" / "last.pt").is_file()
    weights = (tmp_path / "run" / "last.pt").read_bytes()
    lines.clear()
    again = train_once(opts | {"data_root": str(toy / "." / "")}, log=lines.append)  # same run, its folder spelt anew
    assert lines == [
        f"reusing {tmp_path / 'run'}: a finished run with these options (val top-1 {100 * first['val_top1']:.1f}%)"
    ]
    assert again == json.loads(json.dumps(first)) and (tmp_path / "run" / "last.pt").read_bytes() == weights
    with pytest.raises(UsageError, match="holds a run"):  # other options: not this run, and never overwritten
        train_once(opts | {"seed": 1}, log=None)
    assert (tmp_path / "run" / "last.pt").read_bytes() == weights


def test_train_once_sets_aside_a_run_that_other_code_made_and_trains_again(toy, tmp_path):
    """Notebooks 07 and 08 reuse notebook 06's runs: after a change to minivb (a fixed bug, a new default) an old run
    must not stand in for what this code trains, and must not be lost either."""
    opts = parse_args(["--data-root", str(toy), *TINY, "--epochs", "1"]) | {"out": str(tmp_path / "run")}
    first = train_once(opts, log=None)
    assert first["code"] == runs.code_version()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary | {"code": "0" * 12}))
    weights = (tmp_path / "run" / "last.pt").read_bytes()
    lines = []
    again = train_once(opts, log=lines.append)
    (aside,) = tmp_path.glob("run.old-*")
    assert lines[0] == f"{tmp_path / 'run'} was made by other minivb code than this; kept as {aside}, made again"
    assert lines[1].startswith("minivb.train: toy") and again["code"] == runs.code_version()
    assert (aside / "last.pt").read_bytes() == weights and json.loads((aside / "summary.json").read_text())["code"]


def test_source_fingerprint_follows_the_code_not_its_comments_docstrings_or_layout(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    module = package / "m.py"
    module.write_text('"""A module."""\n\n\ndef f(x):\n    """Twice x."""\n    return 2 * x\n')
    before = runs.source_fingerprint(package)
    module.write_text('"""The module, said anew."""\n\ndef f(x):  # a comment\n    """Doubled."""\n    return 2*x\n')
    assert runs.source_fingerprint(package) == before
    module.write_text('"""A module."""\n\n\ndef f(x):\n    """Twice x."""\n    return 3 * x\n')
    assert runs.source_fingerprint(package) != before
    module.write_text('"""A module."""\n\n\ndef f(x):\n    """Twice x."""\n    return 2 * x\n')
    (package / "n.py").write_text("y = 1\n")  # a new module is new code
    assert runs.source_fingerprint(package) != before


def test_no_calibrate_skips_the_confidence_record_and_a_run_without_one_is_reused(toy, tmp_path):
    opts = parse_args(["--data-root", str(toy), *TINY, "--epochs", "1", "--no-calibrate"])
    lines = []
    train(opts | {"out": str(tmp_path / "run")}, log=lines.append)
    assert not any(line.startswith("calibrating") for line in lines)
    assert "confidence" not in read_checkpoint(tmp_path / "run" / "last.pt")
    lines.clear()
    train_once(opts | {"out": str(tmp_path / "run")}, log=lines.append)  # finished as asked: not trained again
    assert len(lines) == 1 and lines[0].startswith("reusing")


def test_two_runs_cannot_share_an_output_folder(toy, tmp_path, one_line_error):
    out = tmp_path / "run"
    first = _start_stalling(["--data-root", str(toy), "--out", str(out), *TINY], tmp_path, 2, release=tmp_path / "go")
    _wait_for(tmp_path / "stalled", first)  # the first run holds the folder (no checkpoint in it yet)
    one_line_error(main, ["--data-root", str(toy), "--out", str(out), *TINY], f"--out {out} is in use by another run")
    (tmp_path / "go").touch()
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert json.loads((out / "summary.json").read_text())["steps"] == STEPS  # the first run's, whole
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt",
        "config.json",
        "curves.png",
        "last.pt",
        "metrics.csv",
        "summary.json",
    ]  # the lock is gone with its run


def test_a_run_killed_before_its_first_checkpoint_can_be_started_again(toy, tmp_path, one_line_error):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")  # what a run killed (or out of disk) before its first checkpoint leaves
    one_line_error(main, ["--resume", str(out)], "stopped before its first checkpoint")
    assert main(["--data-root", str(toy), "--out", str(out), *TINY]) == 0
    assert json.loads((out / "config.json").read_text())["args"]["out"] == str(out)


def test_debris_of_a_killed_run_is_removed_and_checkpoints_get_usual_permissions(toy, reference, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in (".last.pt.x1y2.tmp", ".curves.png.tmp", ".summary.json.tmp"):
        (out / name).write_bytes(b"half a file")
    assert main(["--data-root", str(toy), "--out", str(out), *TINY]) == 0
    assert not list(out.glob(".*"))
    umask = os.umask(0)
    os.umask(umask)
    for name in ("last.pt", "best.pt", "summary.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


@pytest.mark.parametrize(
    "failure",
    [
        OSError(28, "No space left on device"),
        RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1472 vs 1358"),
    ],
)
def test_a_full_disk_is_one_line_keeps_the_last_checkpoint_and_leaves_no_debris(
    toy, tmp_path, monkeypatch, capsys, failure
):
    """The disk fills up at the third checkpoint (simulated: torch.save fails as it does on a full disk)."""
    out, save, calls = tmp_path / "run", torch.save, [0]

    def filling_up(obj, f, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            f.write(b"half a checkpoint")
            raise failure
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", filling_up)
    assert main(["--data-root", str(toy), "--out", str(out), *TINY]) == 1  # saves at steps 3, 6 (last.pt), then 8 …
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no space left on {out}") and "Traceback" not in err[0], err
    assert read_checkpoint(out / "last.pt")["step"] == 6  # the last good checkpoint, whole
    assert not list(out.glob(".*"))  # no temporary file, no lock


def test_a_disk_full_at_the_start_leaves_no_half_written_file(toy, tmp_path, monkeypatch, capsys):
    """config.json cannot be written (ENOSPC): one line, exit 1, no 0-byte .config.json.*.tmp; the folder stays
    usable."""
    import errno

    import minivb.plumbing.files

    out, fdopen = tmp_path / "run", os.fdopen

    class Full:  # the temporary file is made, then every write to it fails
        def __init__(self, fd, *args, **kwargs):
            self.file = fdopen(fd, *args, **kwargs)

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(minivb.plumbing.files.os, "fdopen", Full)  # every atomic write of the package goes through it
    assert main(["--data-root", str(toy), "--out", str(out), *TINY]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no space left on {out}"), err
    assert list(out.iterdir()) == []  # nothing half-written, no lock
    monkeypatch.setattr(minivb.plumbing.files.os, "fdopen", fdopen)
    assert main(["--data-root", str(toy), "--out", str(out), *TINY]) == 0  # space again: the same --out works


def test_an_unusable_out_is_one_line_before_any_work(toy, tmp_path, one_line_error):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    data = ["--data-root", str(toy), *TINY]
    one_line_error(main, [*data, "--out", str(a_file)], f"--out {a_file} is a file")
    one_line_error(main, [*data, "--out", str(a_file / "run")], "cannot write there")
    one_line_error(main, [*data, "--out", "/proc/minivb-run"], "cannot write there")
    assert a_file.read_text() == "x"


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
    ],
)
def test_out_of_memory_while_training_is_one_line(toy, tmp_path, monkeypatch, capsys, error):
    from minivb.model import VideoBERT

    forward, calls = VideoBERT.forward, [0]

    def hungry(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 5 and self.training:  # the 5th training step
            raise error
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(VideoBERT, "forward", hungry)
    assert main(["--data-root", str(toy), "--out", str(tmp_path / "run"), *TINY]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith("error: out of memory (could not allocate") and "--batch-size" in err[0]
    ), err
    assert read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 3  # --save-every 3: kept


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_an_unwritable_out_is_one_line(toy, tmp_path, one_line_error):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    one_line_error(main, ["--data-root", str(toy), "--out", str(locked / "run"), *TINY], "cannot write there")


def test_divergence_stops_with_one_line_and_keeps_the_last_good_checkpoint(toy, tmp_path, _run):
    out = tmp_path / "run"
    proc = _run(["--data-root", str(toy), "--out", str(out), *TINY, "--lr", "1e30"], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "training diverged" in lines[0] and "Traceback" not in proc.stderr
    assert not (out / "summary.json").exists() and not (out / "best.pt").exists()
    if (out / "last.pt").exists():  # a checkpoint from before the divergence: finite weights only
        assert all(torch.isfinite(v).all() for v in read_checkpoint(out / "last.pt")["model"].values())


# --------------------------------------------------------------------------- the loop


def test_train_one_epoch_is_the_loop_written_out(toy):
    """The package's loop = the six lines of notebook 06 (same seed → bit-identical weights and counters)."""
    from minivb.data.clips import Augmentation, ClipDataset, ShardedSampler, collate, load_items
    from minivb.loop import TrainState, train_one_epoch, warmup_cosine
    from minivb.model import VideoBERT, VideoBERTConfig

    items, classes = load_items(toy, "train")
    data = ClipDataset(items, classes, 4, 2, train=True, size=32, augment=Augmentation(seed=0))
    sampler = ShardedSampler(len(data), shuffle=True, seed=0, with_epoch=True)
    loader = torch.utils.data.DataLoader(data, batch_size=4, sampler=sampler, collate_fn=collate)

    def setup():
        torch.manual_seed(0)
        model = VideoBERT(VideoBERTConfig(num_classes=len(classes), num_frames=4, grid=2, dim=32, depth=1, num_heads=2))
        optimizer = model.configure_optimizers(lr=1e-3, weight_decay=0.05)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(2, 8))
        return model, optimizer, scheduler

    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    model, optimizer, scheduler = setup()
    losses = []
    for videos, labels, _ in loader:
        loss = criterion(model(videos), labels)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())

    package, p_optimizer, p_scheduler = setup()
    state = TrainState()
    assert train_one_epoch(package, loader, p_optimizer, p_scheduler, criterion, state, torch.device("cpu"))
    assert state.step == state.step_in_epoch == len(losses) == 4 and state.loss_count == 16
    assert state.loss_sum == pytest.approx(sum(4 * x for x in losses), rel=1e-6)
    for (name, a), b in zip(model.state_dict().items(), package.state_dict().values()):
        assert torch.equal(a, b), name
    assert p_scheduler.state_dict() == scheduler.state_dict()

    stopped = TrainState()  # stop() is asked before each batch: stopping at once trains nothing
    assert not train_one_epoch(
        package, loader, p_optimizer, p_scheduler, criterion, stopped, torch.device("cpu"), stop=lambda: True
    )
    assert stopped.step == 0


# --------------------------------------------------------------------------- distributed


def test_torchrun_two_processes_on_the_cpu(toy, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "minivb.train",
        "--data-root",
        str(toy),
        "--out",
        str(out),
        *TINY,
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done: val top-1") == 1 and proc.stdout.count("epoch   1/2") == 1  # rank 0 alone logs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 8  # each rank: 8 videos per epoch, batch 2
    assert summary["val_clips"] == 6  # the ranks' shards cover the validation set exactly once
    for row in _metrics(out):
        loss, top1, top5 = float(row["train_loss"]), float(row["val_top1"]), float(row["val_top5"])
        assert 0 < loss < 10 and 0 <= top1 <= top5 <= 1 and float(row["clips_per_s"]) > 0
    assert read_checkpoint(out / "last.pt")["world_size"] == 2
    # the data order and the schedule depend on the number of processes: resuming with another is refused
    assert main(["--resume", str(out), "--data-root", str(toy)]) == 2
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "best.pt",
        "config.json",
        "curves.png",
        "last.pt",
        "metrics.csv",
        "summary.json",
    ]


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line_exit_2_and_saves_nothing(toy, reference, tmp_path, one_line_error):
    ref = reference[0]
    before = {p.name: p.read_bytes() for p in ref.iterdir()}
    fresh = tmp_path / "fresh"
    data = ["--data-root", str(toy), "--out", str(fresh)]
    one_line_error(main, ["--subset", "ucf101"], "invalid choice: 'ucf101'")
    one_line_error(main, ["--preset", "huge"], "invalid choice: 'huge'")
    one_line_error(main, ["--batch-size", "-4"], "--batch-size: must be > 0")
    one_line_error(main, ["--num-frames", "0"], "--num-frames: must be > 0")
    one_line_error(main, ["--resume", str(tmp_path / "nothing")], "no such checkpoint")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    one_line_error(main, ["--resume", str(junk)], f"{junk} is not a readable minivb checkpoint")
    model_only = save_checkpoint(
        tmp_path / "model.pt",
        {k: v for k, v in read_checkpoint(ref / "best.pt").items() if k in ("model", "config", "classes")},
    )
    one_line_error(main, ["--resume", str(model_only)], "no training state")
    one_line_error(main, ["--resume", str(ref), "--dim", "64"], "was trained with --dim 32, not --dim 64; drop --dim")
    one_line_error(main, ["--resume", str(ref), "--no-flips"], "with --flips, not --no-flips; drop --no-flips to")
    older = read_checkpoint(ref / "last.pt")  # a run from before --flips: it mirrored its clips
    older["args"].pop("flips")
    older_path = save_checkpoint(tmp_path / "older" / "last.pt", older)
    one_line_error(main, ["--resume", str(older_path), "--no-flips"], "was trained with --flips, not --no-flips")
    one_line_error(main, ["--data-root", str(toy), "--out", str(ref), *TINY], f"--out {ref} already holds a run")
    msg = one_line_error(
        main,
        ["--subset", "k400", "--data-root", str(tmp_path / "k400"), "--out", str(fresh)],
        f"no Kinetics-400 data in {tmp_path / 'k400'}",
    )
    assert f"python -m minivb.data.kinetics download --root {tmp_path / 'k400'}" in msg  # the two commands to run
    assert f"python -m minivb.data.kinetics prepare --root {tmp_path / 'k400'}" in msg
    one_line_error(main, [*data, "--heads", "3", "--dim", "32"], "dim (32) must be divisible by num_heads (3)")
    one_line_error(main, [*data, "--size", "8"], "--size 8")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my files")
    one_line_error(main, ["--data-root", str(tmp_path / "mine"), "--out", str(fresh)], "is not a toy set")
    (tmp_path / "theirs" / "train" / "abseiling").mkdir(parents=True)  # someone's class-folder videos
    (tmp_path / "theirs" / "train" / "abseiling" / "a.mp4").write_bytes(b"keep me")
    one_line_error(main, ["--data-root", str(tmp_path / "theirs"), "--out", str(fresh)], "is not a toy set")
    assert (tmp_path / "theirs" / "train" / "abseiling" / "a.mp4").read_bytes() == b"keep me"
    one_line_error(main, ["--data-root", str(junk), "--out", str(fresh)], "is a file")
    one_line_error(main, [*data, "--seed", "-1"], "--seed: must be >= 0")
    one_line_error(main, [*data, "--seed", "1208925819614629174706176"], "--seed: must be < 2**63")
    one_line_error(main, [*data, "--lr", "nan"], "--lr: must be a finite number")
    one_line_error(
        main, [*data, "--num-frames", "100000"], "--num-frames 100000 × 3 × --size 64² = "
    )  # before allocating
    one_line_error(main, [*data, "--size", "100000"], "GB per batch as float32")
    one_line_error(main, ["--resume", str(ref / "best.pt")], "pass a new --out")
    assert not fresh.exists()  # a failed start creates nothing
    assert {p.name: p.read_bytes() for p in ref.iterdir()} == before  # and overwrites nothing


def test_resume_refusals_name_the_right_cause(reference, tmp_path, one_line_error):
    """Issue 30, rule 6: a resumed run's --gpu-share is judged on its effective --decode (given, else the run's own),
    as a fresh run's is; a refusal says an option as the command line does, never Python's None."""
    from minivb.engine.training import resolve_options

    ref = reference[0]
    one_line_error(main, ["--resume", str(ref), "--gpu-share", "0.5"], "--gpu-share 0.5 goes with --decode gpu")
    one_line_error(main, ["--resume", str(ref), "--decode", "cpu", "--gpu-share", "0.5"], "goes with --decode gpu")
    opts, _, _ = resolve_options(parse_args(["--resume", str(ref), "--decode", "gpu", "--gpu-share", "0.5"]))
    assert (opts.decode, opts.gpu_share) == ("gpu", 0.5)
    on_gpu = read_checkpoint(ref / "last.pt")
    on_gpu["args"]["decode"] = "gpu"
    on_gpu_path = save_checkpoint(tmp_path / "gpu" / "last.pt", on_gpu)
    opts, _, _ = resolve_options(parse_args(["--resume", str(on_gpu_path), "--gpu-share", "0.5"]))
    assert (opts.decode, opts.gpu_share) == ("gpu", 0.5)  # the run's own --decode gpu
    share = ["--resume", str(on_gpu_path), "--decode", "cpu", "--gpu-share", "0.5"]
    one_line_error(main, share, "--gpu-share 0.5 goes with --decode gpu")
    err = one_line_error(main, ["--resume", str(ref), "--limit-train", "8"], "was trained without --limit-train, ")
    assert "not --limit-train 8; drop --limit-train to resume it" in err and "None" not in err
    one_line_error(
        main, ["--resume", str(ref), "--limit-val", "8"], "was trained with --limit-val 6, not --limit-val 8"
    )
    one_line_error(main, ["--resume", str(ref), "--encoder", "resnet18"], "--encoder small, not --encoder resnet18")
    err = one_line_error(main, ["--resume", str(ref), "--out", str(tmp_path / "new")], "that run already trained")
    assert "raise --epochs to train on" in err and not (tmp_path / "new" / "summary.json").exists()
    one_line_error(main, ["--resume", str(ref), "--init-from", str(ref)], "--resume continues one: pass one")


def test_bad_input_from_the_shell_has_no_traceback(tmp_path, _run):
    for args, code in ((["--epochs", "-1"], 2), (["--subset", "k400", "--data-root", str(tmp_path / "none")], 2)):
        proc = _run(args, cwd=tmp_path)
        assert proc.returncode == code
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "runs").exists()
    help_text = _run(["--help"], cwd=tmp_path).stdout
    for option in (
        "--subset",
        "--data-root",
        "--preset",
        "--epochs",
        "--batch-size",
        "--lr",
        "--num-frames",
        "--stride",
        "--workers",
        "--device",
        "--seed",
        "--out",
        "--resume",
        "--save-every",
        "--compile",
        "--no-time-embedding",
        "--limit-train",
        "--limit-val",
    ):
        assert option in help_text, option
