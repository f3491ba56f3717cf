"""python -m minivb.evaluate: multi-view probabilities, metrics against independent references, outputs, bad input.

A tiny model is trained for 2 epochs on a tiny toy set (16 train / 8 val videos) by the real trainer
(conftest ``tiny_run``).
"""

import csv
import json

import pytest
import torch

from minivb import load_checkpoint
from minivb.data.clips import ClipDataset
from minivb.data.toy import CLASSES
from minivb.engine.checkpoint import read_checkpoint, save_checkpoint
from minivb.engine.evaluation import dataset_from_checkpoint, evaluate, plot_confusion
from minivb.engine.inference import multiview_probs
from minivb.evaluate import main
from minivb.metrics import accuracy_metrics
from minivb.model import VideoBERT, VideoBERTConfig


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run


def _cli(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- the numbers


def test_multiview_probabilities_are_the_mean_of_per_view_softmaxes(tmp_path):
    from videos import stamped_frames, write_opencv

    torch.manual_seed(0)
    classes = ["a", "b", "c"]
    items = [
        (str(write_opencv(tmp_path / f"v{i}.mp4", stamped_frames(10 + i, height=32, width=64))), classes[i % 3], None)
        for i in range(5)
    ]
    ds = ClipDataset(items, classes, 3, 2, train=False, size=32)  # landscape frames: 3 different crops
    model = VideoBERT(VideoBERTConfig(num_classes=3, num_frames=3, grid=2, dim=32, depth=1, num_heads=2)).eval()
    result = evaluate(model, ds, num_clips=2, num_crops=3, batch_size=2)
    assert result["probs"].shape == (5, 3) and result["views"] == 6 and result["num_videos"] == 5
    with torch.no_grad():
        for i in range(5):
            views = ds.views(i, num_clips=2, num_crops=3)  # (6, T, 3, 32, 32)
            assert not torch.equal(views[0], views[1]) and not torch.equal(views[0], views[3])
            by_hand = torch.stack([torch.softmax(model(v[None])[0], dim=0) for v in views]).mean(
                0
            )  # one view at a time
            torch.testing.assert_close(result["probs"][i], by_hand, atol=1e-5, rtol=1e-4)
    assert result["labels"].tolist() == ds.labels
    torch.testing.assert_close(result["probs"].sum(1), torch.ones(5))
    single = multiview_probs(model, ds.views(0, 1, 1))  # (B=1, T, 3, H, W) read as one view each
    torch.testing.assert_close(single, torch.softmax(model(ds.views(0, 1, 1)), dim=1))


def test_metrics_equal_an_independent_computation():
    g = torch.Generator().manual_seed(1)
    C, N = 7, 60
    logits = torch.randn(N, C, generator=g)
    labels = torch.randint(0, C - 1, (N,), generator=g)  # the last class has no videos
    m = accuracy_metrics(logits, labels)
    order = [sorted(range(C), key=lambda c: -logits[n, c].item()) for n in range(N)]
    assert m["top1"] == sum(order[n][0] == labels[n].item() for n in range(N)) / N
    assert m["top5"] == sum(labels[n].item() in order[n][:5] for n in range(N)) / N
    for c in range(C - 1):
        mine = [n for n in range(N) if labels[n] == c]
        assert m["per_class_top1"][c] == pytest.approx(sum(order[n][0] == c for n in mine) / len(mine))
    assert m["per_class_top1"][C - 1] is None  # no videos: no accuracy (JSON null), not 0
    for t in range(C):
        for p in range(C):
            assert m["confusion"][t, p] == sum(labels[n] == t and order[n][0] == p for n in range(N))
    assert accuracy_metrics(logits.softmax(1), labels)["top1"] == m["top1"]  # softmax keeps the ranking
    assert accuracy_metrics(logits[:, :3], labels.clamp(max=2))["top5"] == 1.0  # top-k with k = C < 5


# --------------------------------------------------------------------------- against the trainer


def test_one_view_equals_the_trainers_validation(run, capsys):
    ckpt = read_checkpoint(run / "last.pt")
    trainer = ckpt["history"][-1]
    model, classes = load_checkpoint(run / "last.pt")
    result = evaluate(model, dataset_from_checkpoint(run / "last.pt"), num_clips=1, num_crops=1, batch_size=3)
    assert result["num_videos"] == 8 and classes == list(CLASSES)
    assert result["top1"] == pytest.approx(trainer["val_top1"]) and result["top5"] == pytest.approx(trainer["val_top5"])
    summary = json.loads((run / "summary.json").read_text())
    assert result["per_class_top1"] == list(summary["per_class_top1"].values())  # one metrics path, the same numbers

    code, out, err = _cli(capsys, ["--checkpoint", str(run), "--clips", "1", "--crops", "1"])
    assert code == 0, err
    written = json.loads((run / "eval" / "last-val-1x1" / "summary.json").read_text())
    assert written["val_top1"] == pytest.approx(trainer["val_top1"]) and written["epochs"] == 2
    assert f"val top-1 {100 * trainer['val_top1']:.1f}%" in out


def test_cli_writes_summary_confusion_and_predictions(run, capsys, tmp_path):
    out = tmp_path / "ev"
    code, stdout, err = _cli(capsys, ["--checkpoint", str(run / "best.pt"), "--out", str(out), "--batch-size", "3"])
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion.png",
        "predictions.csv",
        "reliability.png",
        "summary.json",
    ]
    s = json.loads((out / "summary.json").read_text())
    assert {
        "val_top1",
        "val_top5",
        "epochs",
        "seconds",
        "clips",
        "crops",
        "per_class_top1",
        "num_videos",
        "skipped",
    } <= s.keys()
    assert (s["clips"], s["crops"], s["num_videos"], s["skipped"]) == (3, 1, 8, 0)  # the toy default: 3 clips × 1 crop
    assert s["epochs"] == read_checkpoint(run / "best.pt")["epoch"] and s["seconds"] >= 0
    assert list(s["per_class_top1"]) == list(CLASSES)
    cm = torch.tensor(s["confusion"])
    assert cm.sum() == s["num_videos"]
    rows = cm.sum(1)
    for c, name in enumerate(CLASSES):
        assert s["per_class_top1"][name] == pytest.approx(cm[c, c].item() / rows[c].item())
    assert s["val_top1"] == pytest.approx(cm.diag().sum().item() / s["num_videos"])
    with open(out / "predictions.csv") as f:
        preds = list(csv.DictReader(f))
    assert len(preds) == 8 and sum(int(p["correct"]) for p in preds) == cm.diag().sum()
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    # The same files again: refused without --force, so nothing is overwritten by accident.
    before = (out / "summary.json").read_bytes()
    code, _, err = _cli(capsys, ["--checkpoint", str(run / "best.pt"), "--out", str(out)])
    assert code == 2 and "already holds an evaluation" in err and "--force" in err
    assert (out / "summary.json").read_bytes() == before
    code, _, err = _cli(capsys, ["--checkpoint", str(run / "best.pt"), "--out", str(out), "--force", "--limit", "4"])
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["num_videos"] == 4


def test_confusion_picture_has_class_names_and_counts():
    cm = torch.tensor([[3, 1], [0, 2]])
    ax = plot_confusion(cm, ["up", "down"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["up", "down"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["up", "down"]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "3"]  # counts in the non-zero cells
    with pytest.raises(ValueError, match="expected"):
        plot_confusion(cm, ["a", "b", "c"])


# --------------------------------------------------------------------------- broken files and bad input


def test_a_broken_video_is_skipped_and_counted(run, toy_copy, tmp_path, capsys, caplog):
    data = toy_copy
    bad = data / "val" / "growing" / "growing_0000.mp4"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    out = tmp_path / "ev"
    with caplog.at_level("WARNING", logger="minivb.data.clips"):
        code, _, err = _cli(
            capsys, ["--checkpoint", str(run), "--data-root", str(data), "--out", str(out), "--batch-size", "3"]
        )
    assert code == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["skipped"] == 1 and s["num_videos"] == 7 and s["skipped_files"] == [str(bad)]
    assert sum(sum(row) for row in s["confusion"]) == 7 and s["per_class_top1"]["growing"] is None
    warnings = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"skipping {bad}: "), warnings


def test_bad_input_is_one_line_exit_2(run, tmp_path, one_line_error):
    def error(argv, match):
        one_line_error(main, argv, match)

    error(["--checkpoint", str(tmp_path / "missing.pt")], "no such checkpoint")
    error(["--checkpoint", str(tmp_path)], "holds no last.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    error(["--checkpoint", str(junk)], "is not a readable minivb checkpoint")
    bare = save_checkpoint(
        tmp_path / "bare.pt",
        {k: v for k, v in read_checkpoint(run / "last.pt").items() if k in ("model", "config", "classes")},
    )
    error(["--checkpoint", str(bare), "--out", str(tmp_path / "o")], "no training options")
    error(
        ["--checkpoint", str(run), "--data-root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")],
        f"data root {tmp_path / 'nowhere'} does not exist",
    )
    error(["--checkpoint", str(run), "--split", "test", "--out", str(tmp_path / "o")], "no test split")
    error(["--checkpoint", str(run), "--clips", "0"], "--clips: must be > 0")
    error(["--checkpoint", str(run), "--crops", "2"], "--crops: invalid choice")
    error(["--checkpoint", str(run), "--batch-size", "-1"], "--batch-size: must be > 0")
    error(["--checkpoint", str(run), "--workers", "x"], "--workers: expected an integer")
    error([], "the following arguments are required: --checkpoint")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    error(["--checkpoint", str(run), "--out", str(a_file)], "cannot write there")  # refused before evaluating
    error(["--checkpoint", str(run), "--out", "/proc/minivb-eval"], "cannot write there")
    error(["--checkpoint", str(run), "--clips", "100000", "--out", str(tmp_path / "o")], "--clips 100000 × --crops 1")
    assert a_file.read_text() == "x"
    assert not (tmp_path / "o").exists()


def test_another_data_sets_folder_is_named_as_such(run, toy, tmp_path, one_line_error):
    """D22 of the hardening issue: evaluating on another data set's folder advised adding its labels to a
    classes.txt that already had them. The truth: the checkpoint was trained on other classes."""
    import shutil

    other = tmp_path / "other"
    for split in ("train", "val"):
        for label in ("dog", "cat"):
            (other / split / label).mkdir(parents=True)
            shutil.copy(next((toy / "val").rglob("*.mp4")), other / split / label / "a.mp4")
    (other / "classes.txt").write_text("cat\ndog\n")
    err = one_line_error(main, ["--checkpoint", str(run), "--data-root", str(other), "--out", str(tmp_path / "o")])
    assert "holds labels this checkpoint was not trained on: cat, dog" in err and "knows 8 classes" in err
    assert "add them" not in err


def test_an_output_path_through_a_file_says_which_file(run, tmp_path, one_line_error):
    """D28: "cannot write there (File exists)" named no culprit; now the file in the way is named."""
    a_file = tmp_path / "file"
    a_file.write_text("x")
    err = one_line_error(main, ["--checkpoint", str(run), "--out", str(a_file / "eval")], "cannot write there")
    assert f"{a_file} is a file, not a folder" in err and "File exists" not in err


def test_a_terminal_sees_progress_a_log_file_does_not(run, tmp_path):
    """Evaluating ~20k Kinetics videos printed nothing for minutes; on a terminal a bar now shows the work (in a
    log file or a notebook, nothing: the other tests' one-line stderr checks hold)."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    proc = subprocess.Popen(
        [sys.executable, "-m", "minivb.evaluate", "--checkpoint", str(run), "--out", str(tmp_path / "o")],
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=120) == 0
    os.close(leader)
    assert b"evaluating" in seen and b"batch" in seen


def test_shell_help_and_no_traceback(tmp_path, run_module):
    proc = run_module("minivb.evaluate", "--checkpoint", tmp_path / "none.pt")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    help_text = run_module("minivb.evaluate", "--help").stdout
    for option in (
        "--checkpoint",
        "--data-root",
        "--split",
        "--clips",
        "--crops",
        "--batch-size",
        "--workers",
        "--device",
        "--out",
        "--force",
        "10 × 3",
        "4 clips × 3 crops",
    ):
        assert option in " ".join(help_text.split()), option  # (lines wrap where the terminal ends)
