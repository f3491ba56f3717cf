"""What every command keeps alike (docs/faults.md): what it writes is its own, held while it works, and replaced
with --force only when it wrote it; a failed allocation, Ctrl-C while it loads, and a clone that hides the package
each end in one line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minivb.plumbing import runs
from minivb.plumbing.checks import UsageError
from minivb.plumbing.cli import run_main
from minivb.plumbing.files import lock_folder, unlock_folder

REPO = Path(__file__).resolve().parent.parent


def test_evaluate_force_never_replaces_a_training_runs_summary(tiny_run, tmp_path, one_line_error):
    from minivb.evaluate import main

    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    before = (run / "summary.json").read_bytes()
    for force in ([], ["--force"]):
        line = one_line_error(main, ["--checkpoint", str(run), "--out", str(run), "--limit", "2", *force])
        assert "summary.json, written by minivb.train" in line and "never writes over" in line
        assert "an evaluation" not in line
    assert (run / "summary.json").read_bytes() == before
    assert json.loads(before)["command"] == "minivb.train"  # the file says who wrote it


def test_an_older_summary_without_its_writer_is_known_by_its_keys(tmp_path):
    summary = tmp_path / "summary.json"
    for keys, owner in (
        ({"split": "val", "checkpoint": "a.pt", "val_top1": 0.5, "confusion": []}, "minivb.evaluate"),
        ({"best_epoch": 2, "best_val_top1": 0.5, "val_top1": 0.5}, "minivb.train"),
        ({"masked_top1": 0.5, "vocab_size": 64}, "minivb.pretrain"),
        ({"split": "my notes"}, "no minivb command it knows"),
        ({}, "no minivb command it knows"),
    ):
        summary.write_text(json.dumps(keys))
        assert runs.summary_owner(summary) == owner
    summary.write_text("[1, 2]")
    assert runs.summary_owner(summary) == "no minivb command it knows"
    summary.unlink()
    os.mkfifo(summary)  # never opened (it would wait for a writer)
    assert runs.summary_owner(summary).endswith("(it is not a regular file)")


def test_evaluate_keeps_files_no_evaluation_claims(tiny_run, tmp_path, one_line_error):
    from minivb.evaluate import main

    out = tmp_path / "mine"
    out.mkdir()
    (out / "predictions.csv").write_text("keep me\n")
    for force in ([], ["--force"]):
        line = one_line_error(main, ["--checkpoint", str(tiny_run), "--out", str(out), "--limit", "2", *force])
        assert "predictions.csv" in line and "never writes over" in line
    assert (out / "predictions.csv").read_text() == "keep me\n"


def test_force_replaces_only_the_commands_own_files(tmp_path):
    from minivb.plumbing.files import write_json

    own, other, user = tmp_path / "own.json", tmp_path / "other.json", tmp_path / "user.json"
    write_json(own, {"command": "minivb.bench"})
    write_json(other, {"command": "minivb.summarize"})
    user.write_text('{"numbers": [1, 2]}')
    runs.output_file(own, "--json", "minivb.bench", force=True)
    with pytest.raises(UsageError, match="--force replaces only minivb.bench's own earlier output, and minivb.summ"):
        runs.output_file(other, "--json", "minivb.bench", force=True)
    with pytest.raises(UsageError, match="it does not say minivb.bench wrote it"):
        runs.output_file(user, "--json", "minivb.bench", force=True)
    os.mkfifo(tmp_path / "pipe.json")
    with pytest.raises(UsageError, match="it is not a regular file"):
        runs.output_file(tmp_path / "pipe.json", "--json", "minivb.bench", force=True)
    runs.release_outputs()


def test_evaluate_into_a_folder_another_evaluation_holds_is_refused(tiny_run, tmp_path, one_line_error):
    from minivb.evaluate import main

    out = tmp_path / "eval"
    out.mkdir()
    fd = lock_folder(out)  # another evaluate, at work in --out
    try:
        one_line_error(main, ["--checkpoint", str(tiny_run), "--out", str(out), "--limit", "2"], "in use by another")
    finally:
        unlock_folder(out, fd)
    assert not (out / "summary.json").exists()


def test_a_file_being_written_by_another_command_is_refused_then_free(tmp_path):
    target = tmp_path / "gallery.pt"
    fd = lock_folder(tmp_path, ".gallery.pt.lock")  # another retrieve index --out gallery.pt, at work
    with pytest.raises(UsageError, match="is being written by another command"):
        runs.output_file(target, "--out", "minivb.retrieve")
    unlock_folder(tmp_path, fd, ".gallery.pt.lock")
    runs.output_file(target, "--out", "minivb.retrieve")  # now ours, until the command ends
    assert (tmp_path / ".gallery.pt.lock").exists()
    target.write_bytes(b"done")
    runs.release_outputs()
    assert not (tmp_path / ".gallery.pt.lock").exists()
    with pytest.raises(UsageError, match="already exists"):  # the second writer, once the first has finished
        runs.output_file(target, "--out", "minivb.retrieve")


def test_two_retrieve_index_into_one_file_one_is_refused(tiny_run, toy, tmp_path, one_line_error):
    from minivb.retrieve import main

    out = tmp_path / "g.pt"
    fd = lock_folder(tmp_path, ".g.pt.lock")
    argv = ["index", "--checkpoint", str(tiny_run), "--data-root", str(toy), "--split", "val", "--out", str(out)]
    try:
        one_line_error(main, argv, "is being written by another command")
    finally:
        unlock_folder(tmp_path, fd, ".g.pt.lock")
    assert not out.exists()


def _cv2_error(text: str) -> Exception:
    import cv2

    return cv2.error(text)


@pytest.mark.parametrize(
    "error, asked",
    [
        (
            RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8589934592 bytes."),
            "8.0 GiB",
        ),
        (RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total)"), "20 GiB"),
        (MemoryError("Unable to allocate 7.45 GiB for an array with shape (1000000000,)"), "7.45 GiB"),
        (MemoryError("Unable to allocate 206. MiB for an array with shape (27000000,)"), "206 MiB"),
        (MemoryError(), "memory"),
        (
            _cv2_error("error: (-4:Insufficient memory) Failed to allocate 8053063680 bytes in function 'OutOfMemory'"),
            "7.5 GiB",
        ),
    ],
)
def test_a_failed_allocation_is_one_line_naming_what_to_lower(capsys, error, asked):
    def work():
        raise error

    assert run_main(work, lower="--batch-size, or raise --hop") == 1
    err = capsys.readouterr().err
    assert err == f"error: out of memory (could not allocate {asked}); lower --batch-size, or raise --hop\n"


def test_a_real_allocation_failure_is_caught_and_other_runtime_errors_are_not(capsys):
    import torch

    assert run_main(lambda: torch.empty(2**62, dtype=torch.uint8)) == 1
    assert "could not allocate 4294967296.0 GiB); lower --batch-size" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="a bug"):
        run_main(lambda: (_ for _ in ()).throw(RuntimeError("a bug")))


def test_ctrl_c_while_a_command_loads_is_one_line(tmp_path):
    (tmp_path / "torch.py").write_text("raise KeyboardInterrupt  # Ctrl-C while torch loads\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    for module in ("minivb.train", "minivb.data.toy"):
        done = subprocess.run([sys.executable, "-m", module], capture_output=True, text=True, env=env, timeout=60)
        assert done.stderr.strip() == "interrupted" and "Traceback" not in done.stderr
        assert done.returncode in (130, -2)  # Python ends by SIGINT, as the shell expects


def test_a_clone_that_hides_the_installed_package_is_one_line(tmp_path):
    (tmp_path / "minivb").symlink_to(REPO)  # a clone named minivb, and a command run from the folder holding it
    for module in ("minivb.train", "minivb.evaluate", "minivb.data.toy"):
        done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.startswith("error: the folder minivb/ here (your minivb clone) hides the installed")
        assert done.stderr.count("\n") == 1


COMMANDS = [
    "minivb.train",
    "minivb.evaluate",
    "minivb.predict",
    "minivb.retrieve",
    "minivb.summarize",
    "minivb.pretrain",
    "minivb.bench.__main__",
    "minivb.data.toy.__main__",
    "minivb.data.kinetics.__main__",
]


def _parsers(parser, name):
    """``(name, parser)`` of a command and of each of its subcommands."""
    import argparse

    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _parsers(p, f"{name} {sub}")


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("module", COMMANDS)
def test_every_help_says_what_each_part_does_and_fits_the_terminal(module, columns, monkeypatch):
    import importlib

    monkeypatch.setenv("COLUMNS", str(columns))
    for name, parser in _parsers(importlib.import_module(module).build_parser(), module):
        assert parser.description, f"{name} has no description"
        text = parser.format_help()
        assert "%%" not in text and "see the module docstring" not in text, name
        assert max(map(len, text.splitlines())) <= columns, f"{name}: a help line is wider than {columns}"
        for action in parser._actions:
            for each in getattr(action, "_choices_actions", None) or [action]:  # a subcommand's line, or an option's
                what = f"{name} {each.option_strings or each.dest}"
                assert each.help and not each.help.startswith("(default"), f"{what}: no help"


@pytest.mark.parametrize("epochs", [1, 2, 30])
def test_curves_are_ticked_at_whole_epochs(epochs):
    row = dict(train_loss=1.0, val_loss=1.0, val_top1=0.5, val_top5=0.9)
    fig = runs.curves_figure([dict(row, epoch=e) for e in range(1, epochs + 1)])
    fig.canvas.draw()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(t == int(t) for t in ticks), ticks


@pytest.mark.parametrize("after", [0.3, 0.6, 0.9, 1.2])
def test_ctrl_c_at_any_moment_of_the_start_is_one_line(tiny_run, tmp_path, after):
    """A real SIGINT while PyTorch loads (it used to abort inside C++, be lost, or print a RecursionError)."""
    import signal
    import time

    argv = [sys.executable, "-m", "minivb.evaluate", "--checkpoint", str(tiny_run), "--out", str(tmp_path / "e")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (130, -2) and err.strip() == "interrupted", err


def test_evaluate_refuses_an_unwritable_out_before_any_work(tiny_run, tmp_path, capsys):
    from minivb.evaluate import main

    for out in ("/proc/minivb-test/out", str(tiny_run / "last.pt" / "eval")):
        assert main(["--checkpoint", str(tiny_run), "--out", out]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.startswith(f"error: --out {out}: cannot write there")
    assert main(["--checkpoint", str(tiny_run), "--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "e")])
    assert not (tmp_path / "e").exists()  # refused before it wrote anything: no empty folder left


def test_train_into_another_commands_folder_says_what_is_there(tiny_run, tmp_path):
    from minivb.plumbing.files import write_json

    evaluation, pretraining = tmp_path / "eval", tmp_path / "pre"
    write_json(evaluation / "summary.json", {"command": "minivb.evaluate"})
    write_json(pretraining / "summary.json", {"command": "minivb.pretrain"})
    (pretraining / "pretrain.pt").write_bytes(b"")
    with pytest.raises(UsageError, match="holds minivb.evaluate's files \\(summary.json\\); choose another --out"):
        runs.check_out(evaluation, None)
    with pytest.raises(UsageError, match=f"holds a pretraining run .*pass --init-from {pretraining} and another"):
        runs.check_out(pretraining, None)
    with pytest.raises(UsageError, match=f"continue it with --resume {tiny_run}"):
        runs.check_out(tiny_run, None)
