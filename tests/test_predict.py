"""python -m minivb.predict, and minivb.attention_maps (what the model attends to).

The model is conftest's ``tiny_run`` (trained for 2 epochs on the tiny toy set by the real trainer).
"""

import json

import numpy as np
import pytest
import torch

from minivb import load_checkpoint
from minivb.attention_maps import attention_rollout, cls_maps, plot_attention
from minivb.engine.checkpoint import Preprocessing
from minivb.engine.evaluation import dataset_from_checkpoint, evaluate
from minivb.engine.inference import find_videos, load_model, predict, video_views
from minivb.model import VideoBERT, VideoBERTConfig
from minivb.predict import main
from minivb.video import read_frames


def _cli(capsys, argv):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_equals_evaluate_on_the_same_videos(tiny_run):
    """The two paths from a file to probabilities (predict's and the evaluator's) agree, clips × crops included."""
    model, classes, prep = load_model(tiny_run, clips=2, crops=3)
    data = dataset_from_checkpoint(tiny_run / "last.pt")
    ref = evaluate(model, data, num_clips=2, num_crops=3)
    probs, skipped = predict(model, [it.path for it in data.items], prep, batch_size=3)
    assert skipped == [] and len(probs) == len(data)
    torch.testing.assert_close(torch.stack(probs), ref["probs"])
    assert prep == Preprocessing(num_frames=4, stride=1, size=32, clips=2, crops=3)
    assert load_model(tiny_run)[2].clips == 3  # toy checkpoint → evaluation's toy default, 3 clips × 1 crop


def test_the_checkpoint_carries_its_preprocessing_and_older_checkpoints_still_load(tiny_run, tmp_path):
    from minivb.engine.checkpoint import read_checkpoint, save_checkpoint

    ckpt = read_checkpoint(tiny_run / "last.pt")
    record = ckpt["preprocessing"]  # what train writes: the clip the model was trained on + the toy set's views
    assert record == {"num_frames": 4, "stride": 1, "size": 32, "clips": 3, "crops": 1, "pixels": "uint8 RGB"}
    assert load_model(tiny_run)[2] == Preprocessing(**record)
    assert load_model(tiny_run, clips=2, crops=3)[2] == Preprocessing(4, 1, 32, 2, 3)  # views overridden, clip kept
    del ckpt["preprocessing"]  # a checkpoint written before the record existed: rebuilt from its options
    save_checkpoint(tmp_path / "old.pt", ckpt)
    assert load_model(tmp_path / "old.pt")[2] == Preprocessing(**record)
    ckpt["args"] = {k: v for k, v in ckpt["args"].items() if k != "subset"}  # older still: the toy set was implied
    save_checkpoint(tmp_path / "older.pt", ckpt)
    assert load_model(tmp_path / "older.pt")[2] == Preprocessing(**record)


def test_views_of_any_shape_are_the_checkpoints_training_clip(tmp_path):
    """Portrait, landscape, odd sizes, 1-frame and long videos: the views are squares of the shorter side, resized."""
    from videos import stamped_frames, write_opencv

    prep = Preprocessing(num_frames=4, stride=2, size=32, clips=2, crops=3)
    cases = {"portrait": (12, 96, 48), "landscape": (30, 72, 128), "odd": (9, 47, 33), "one_frame": (1, 40, 40)}
    paths = [
        write_opencv(tmp_path / f"{name}.avi", stamped_frames(n, h, w), fourcc="MJPG")
        for name, (n, h, w) in cases.items()
    ]
    data = video_views(paths, prep)
    for i, (name, (n, h, w)) in enumerate(cases.items()):
        views, index = data[i]
        assert index == i and views.shape == (6, 4, 3, 32, 32) and views.dtype == torch.uint8, name
        span = 3 * 2 + 1
        starts = [0, n - span] if n >= span else [0, 0]
        for c, start in enumerate(starts):
            idx = np.arange(start, start + span, 2) if n >= span else np.round(np.linspace(0, n - 1, 4)).astype(int)
            frames = torch.from_numpy(read_frames(paths[i], idx)).permute(0, 3, 1, 2)  # (T, 3, h, w)
            side = min(h, w)
            tops = [0, round((h - side) / 2), h - side] if h > w else [round((h - side) / 2)] * 3
            lefts = [round((w - side) / 2)] * 3 if h > w else [0, round((w - side) / 2), w - side]
            for k, (top, left) in enumerate(zip(tops, lefts)):
                want = torch.nn.functional.interpolate(
                    frames[:, :, top : top + side, left : left + side].float(),
                    size=(32, 32),
                    mode="bilinear",
                    antialias=True,
                    align_corners=False,
                )
                assert (views[3 * c + k].float() - want).abs().mean() < 1.5, (
                    name,
                    c,
                    k,
                )  # uint8 resize rounding; a 1-pixel shift costs ~2


def test_cli_predicts_files_and_folders_and_reports_bad_ones(tiny_run, toy, tmp_path, capsys):
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    good = sorted((toy / "val").rglob("*.mp4"))[:3]
    for i, p in enumerate(good):
        (folder / "sub" / f"v{i}.mp4").write_bytes(p.read_bytes())
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    (folder / "notes.txt").write_text("ignored: not a video suffix")
    code, out, err = _cli(
        capsys, [str(good[0]), str(folder), str(tmp_path / "missing.mp4"), "--checkpoint", str(tiny_run), "--topk", "3"]
    )
    assert code == 1  # some failed
    errors = err.strip().splitlines()
    assert len(errors) == 2
    assert "missing.mp4: no such file or folder" in errors[0] and "broken.mp4: not a readable video" in errors[1]
    lines = out.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(good[0])] + [
        str(folder / "sub" / f"v{i}.mp4") for i in range(3)
    ]
    assert lines[0].split(": ")[1] == lines[1].split(": ")[1]  # the same video copied: the same answer
    assert all(len(line.split(", ")) == 3 for line in lines)

    code, out, err = _cli(
        capsys, [*map(str, good), "--checkpoint", str(tiny_run / "last.pt"), "--json", "--topk", "99"]
    )
    assert code == 0 and err == ""
    results = json.loads(out)
    _, classes = load_checkpoint(tiny_run / "last.pt")
    assert [r["path"] for r in results] == list(map(str, good))
    for r in results:
        assert [t["label"] for t in r["top"]] and len(r["top"]) == len(classes)  # --topk capped at the class count
        probs = [t["probability"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-3


def test_the_model_and_its_confidence_record_come_from_one_reading_of_the_checkpoint(
    tiny_run, toy, monkeypatch, capsys
):
    """A run still training rewrites last.pt every epoch: predict read it twice (the model, then the record), so it
    could pair one epoch's weights with the next epoch's temperature. Now it reads it once."""
    import minivb.engine.inference as inference
    from minivb.engine.checkpoint import read_checkpoint

    reads = []
    monkeypatch.setattr(inference, "read_checkpoint", lambda path: reads.append(path) or read_checkpoint(path))
    video = sorted((toy / "val").rglob("*.mp4"))[0]
    code, out, err = _cli(capsys, [str(video), "--checkpoint", str(tiny_run), "--json"])
    assert code == 0 and reads == [tiny_run / "last.pt"]
    model, classes, prep, record = inference.load_classifier(tiny_run)
    assert record.temperature == inference.load_confidence(tiny_run).temperature and classes == load_model(tiny_run)[1]


def test_find_videos_lists_folders_and_reports_what_is_not_there(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "v").mkdir()
    for name in ("b.MP4", "a.mov", "c.txt"):
        (tmp_path / "v" / name).write_bytes(b"x")
    files, problems = find_videos([tmp_path / "v", tmp_path / "empty", tmp_path / "nope.avi", tmp_path / "v" / "c.txt"])
    assert files == [str(tmp_path / "v" / "a.mov"), str(tmp_path / "v" / "b.MP4"), str(tmp_path / "v" / "c.txt")]
    assert [(p.path, p.reason.split(" (")[0]) for p in problems] == [
        (str(tmp_path / "empty"), "a folder without videos"),
        (str(tmp_path / "nope.avi"), "no such file or folder"),
    ]


def test_many_views_run_through_the_model_a_bounded_number_at_a_time(tiny_run, toy):
    """D13: predict --clips N counted only the input, not the network's activations, which grow with the views of
    one forward pass. The views now go through the model at most MAX_VIEWS at a time, with the same answer."""
    from minivb.engine.inference import MAX_VIEWS, multiview_probs

    model, _, prep = load_model(tiny_run, clips=150, crops=1)
    video = str(next((toy / "val").rglob("*.mp4")))
    views, _ = video_views([video], prep)[0]  # (150, T, 3, S, S)
    seen = []
    forward = model.forward
    model.forward = lambda x: seen.append(len(x)) or forward(x)
    probs = multiview_probs(model, views[None])  # (1, C)
    assert max(seen) <= MAX_VIEWS and sum(seen) == 150
    with torch.no_grad():
        whole = forward(views).float().softmax(-1).mean(0)  # every view in one pass
    torch.testing.assert_close(probs[0], whole, atol=1e-5, rtol=1e-4)


def test_a_folder_scan_accounts_for_every_entry_named_like_a_video(tiny_run, toy, tmp_path, capsys):
    """D6 of the hardening issue: FIFOs, broken links and folders named *.mp4 were dropped without a word, and a
    folder of only such entries was "a folder without videos". Each is now named, with why."""
    import os
    import shutil

    mine, odd = tmp_path / "mine", tmp_path / "odd"
    mine.mkdir()
    odd.mkdir()
    shutil.copy(next((toy / "val").rglob("*.mp4")), mine / "a.mp4")
    for folder in (mine, odd):
        os.mkfifo(folder / "pipe.mp4")  # reading it would block forever: it is reported, never opened
        (folder / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
        (folder / "clips.mp4").mkdir()
    files, problems = find_videos([mine, odd])
    assert files == [str(mine / "a.mp4")]
    why = {p.path: p.reason for p in problems}
    for folder in (mine, odd):
        assert why[str(folder / "pipe.mp4")] == "not a regular file (a FIFO, socket or device)"
        assert why[str(folder / "gone.mp4")] == "a broken link (its target does not exist)"
        assert why[str(folder / "clips.mp4")] == "a folder named like a video"
    assert len(problems) == 6  # and not "a folder without videos" for odd/
    assert main([str(mine), str(odd), "--checkpoint", str(tiny_run)]) == 1  # one classified, six reported
    out, err = capsys.readouterr()
    assert out.count(str(mine / "a.mp4")) == 1 and err.count("cannot classify") == 6


def test_bad_input_is_one_line_exit_2(tiny_run, toy, tmp_path, one_line_error):
    video = str(next((toy / "val").rglob("*.mp4")))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    one_line_error(main, [video], "--checkpoint")
    one_line_error(main, [video, "--checkpoint", str(tmp_path / "none.pt")], "no such checkpoint")
    one_line_error(main, [video, "--checkpoint", str(junk)], "not a readable minivb checkpoint")
    one_line_error(main, [video, "--checkpoint", str(tiny_run), "--topk", "0"], "--topk: must be > 0")
    one_line_error(main, [video, "--checkpoint", str(tiny_run), "--crops", "2"], "--crops: invalid choice")
    one_line_error(main, [video, "--checkpoint", str(tiny_run), "--clips", "nan"], "--clips: expected an integer")
    one_line_error(main, ["--checkpoint", str(tiny_run)], "the following arguments are required: VIDEO")


def test_shell_help_and_exit_status(tiny_run, tmp_path, run_module):
    r = run_module("minivb.predict", "--help")
    assert r.returncode == 0 and "--topk" in r.stdout and "--json" in r.stdout
    r = run_module("minivb.predict", tmp_path / "missing.mp4", "--checkpoint", tiny_run)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"minivb.predict: cannot classify {tmp_path / 'missing.mp4'}: no such file or folder"
    ]
    (tmp_path / "junk.mp4").write_bytes(b"junk")  # OpenCV's own "cannot open" warning must not show (one line)
    r = run_module("minivb.predict", tmp_path / "junk.mp4", "--checkpoint", tiny_run)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"minivb.predict: cannot classify {tmp_path / 'junk.mp4'}: not a readable video (FFmpeg cannot open it: "
        f"unknown format or truncated)"
    ]


# --------------------------------------------------------------------------- explain


def _slow_rollout(attns, residual=0.5):
    """Abnar & Zuidema's recipe, one example and one layer at a time with NumPy."""
    B = attns[0].shape[0]
    out = []
    for b in range(B):
        r = None
        for a in attns:
            m = a[b].double().numpy().mean(axis=0)
            m = (1 - residual) * m + residual * np.eye(len(m))
            m = m / m.sum(axis=1, keepdims=True)
            r = m if r is None else m @ r
        out.append(r)
    return torch.tensor(np.stack(out))


def test_attention_rollout_matches_the_recipe_and_keeps_rows_stochastic():
    g = torch.Generator().manual_seed(0)
    attns = [torch.rand(2, 3, 7, 7, generator=g).softmax(-1) for _ in range(3)]
    r = attention_rollout(attns)
    torch.testing.assert_close(r.double(), _slow_rollout(attns), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(r.sum(-1), torch.ones(2, 7))
    one = attention_rollout(attns[:1])  # one layer: ½·mean_heads(A) + ½·I
    torch.testing.assert_close(one, 0.5 * attns[0].mean(1) + 0.5 * torch.eye(7))
    with pytest.raises(ValueError, match="at least one layer"):
        attention_rollout([])


def test_cls_maps_shapes_and_agreement_with_the_models_own_maps():
    torch.manual_seed(0)
    model = VideoBERT(VideoBERTConfig(num_classes=5, num_frames=4, grid=2, dim=32, depth=2, num_heads=2)).eval()
    video = torch.rand(2, 4, 3, 32, 32)
    maps = cls_maps(model, video)
    torch.testing.assert_close(maps["logits"], model(video), atol=1e-5, rtol=1e-5)
    assert maps["last"].shape == maps["rollout"].shape == (2, 4, 4)
    torch.testing.assert_close(maps["rollout"].sum((1, 2)), torch.ones(2))
    _, attns = model(video, need_weights=True)
    torch.testing.assert_close(maps["last"], attns[-1][:, :, 0, 1:].mean(1).reshape(2, 4, 4))
    fig = plot_attention((video[0] * 255).to(torch.uint8), {k: maps[k][0] for k in ("last", "rollout")}, title="t")
    assert len(fig.axes) == 3 * 4
