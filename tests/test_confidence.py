"""The confidence record (minivb.engine.confidence) and what the commands do with it: the features against the
model's own outputs, the distance against numpy's Mahalanobis, the thresholds' acceptance on held-out data, the
record written by training, predict's "none of the N classes", evaluate's calibration, older checkpoints."""

import json
import math

import numpy as np
import pytest
import torch
from videos import checkerboard_video

from minivb import evaluate as evaluate_cli
from minivb import predict as predict_cli
from minivb.engine import calibration as cal
from minivb.engine.checkpoint import read_checkpoint, save_checkpoint
from minivb.engine.confidence import Confidence, features_and_logits, fit_confidence
from minivb.engine.inference import load_model


def gaussian_set(n: int, classes: int = 4, views: int = 2, dim: int = 6, seed: int = 0):
    """``n`` videos × ``views`` of features around a class mean, logits that favour the class → ``(N, V, F + C)``,
    labels ``(N,)``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    means = torch.eye(classes, dim) * 4  # (C, F)
    f = means[y][:, None] + torch.randn(n, views, dim, generator=g)  # (N, V, F)
    z = 3 * torch.eye(classes)[y][:, None] + torch.randn(n, views, classes, generator=g)  # (N, V, C)
    return torch.cat([f, z], dim=-1).double(), y


def test_features_are_the_mean_region_feature_the_cls_state_and_the_logits(tiny_run):
    model, _, _ = load_model(tiny_run)
    clips = torch.randint(0, 256, (3, model.config.num_frames, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        out = features_and_logits(model, clips)
        regions = model.encoder(clips).mean(dim=(1, 2))  # (3, D_enc)
        want = torch.cat([regions, model.embed(clips), model(clips)], dim=1)
    torch.testing.assert_close(out, want)
    assert not model.encoder._forward_hooks  # the hook is gone


def test_the_distance_is_numpys_mahalanobis_and_the_record_round_trips(tmp_path):
    train, val = gaussian_set(400, seed=1), gaussian_set(200, seed=2)
    record = fit_confidence(train, val, 6, "test")
    x = train[0][..., :6].flatten(0, 1).numpy()  # every training view
    y = train[1].repeat_interleave(2).numpy()
    mu = np.stack([x[y == c].mean(0) for c in range(4)])
    cov = sum(np.cov((x[y == c] - mu[c]).T, bias=True) * (y == c).sum() for c in range(4)) / len(x)
    cov = 0.9 * cov + 0.1 * np.trace(cov) / 6 * np.eye(6)  # the shrinkage λ = 0.1 of fit_mahalanobis
    f = val[0][:5, :, :6].numpy()  # (5, V, F)
    d = [[min((v - m) @ np.linalg.inv(cov) @ (v - m) for m in mu) for v in video] for video in f]
    j = record.judge(val[0][:5])
    np.testing.assert_allclose(j.distance.numpy(), np.mean(d, axis=1), rtol=1e-8)
    assert record.temperature == cal.fit_temperature(val[0][..., 6:], val[1])
    torch.save(record.to_dict(), tmp_path / "r.pt")
    back = Confidence.from_checkpoint({"confidence": torch.load(tmp_path / "r.pt", weights_only=True)})
    assert back.thresholds() == pytest.approx(record.thresholds(), rel=1e-6)  # stored as float32


def test_the_thresholds_accept_the_asked_share_of_validation_and_of_held_out_videos():
    record = fit_confidence(gaussian_set(600, seed=3), gaussian_set(1000, seed=4), 6, "test")
    for a in (0.8, 0.95, 0.99):
        d, c = record.thresholds(a)
        distance, confidence = record.val_scores.unbind(1)
        assert (distance <= d).double().mean() >= 1 - (1 - a) / 2  # the distance test alone
        passed = ((distance <= d) & (confidence >= c)).sum().item()
        assert passed == math.ceil(a * 1000)  # both: ⌈a · N⌉ of the validation videos, no more (no ties)
        held = record.judge(gaussian_set(20000, seed=5)[0], a).accepted.double().mean().item()
        assert abs(held - a) < (0.02 if a >= 0.9 else 0.04), (a, held)  # more videos of the same distribution
    assert record.judge(gaussian_set(10, seed=6)[0], None).accepted.all()  # None: nothing rejected


def test_far_and_unsure_videos_are_rejected_each_with_its_reason():
    record = fit_confidence(gaussian_set(400, seed=7), gaussian_set(400, seed=8), 6, "test")
    far = torch.cat([torch.full((1, 2, 6), 30.0), 3 * torch.eye(4)[:1][:, None].expand(1, 2, 4)], dim=-1)  # sure
    unsure = torch.cat([4 * torch.eye(4, 6)[:1][:, None].expand(1, 2, 6), torch.zeros(1, 2, 4)], dim=-1)
    j = record.judge(torch.cat([far, unsure]).double())
    assert j.accepted.tolist() == [False, False]
    assert j.reason(0).startswith("unlike the training videos: distance") and "unsure" not in j.reason(0)
    assert j.reason(1).startswith("unsure: confidence 25.00% <") and "unlike" not in j.reason(1)  # 1/4: uniform


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda r: [1.0], "not a dict"),
        (lambda r: r | {"colour": "red"}, "unknown key 'colour'"),
        (lambda r: {k: v for k, v in r.items() if k != "means"}, "no key 'means'"),
        (lambda r: r | {"temperature": 0.0}, "temperature"),
        (lambda r: r | {"means": r["means"][:, :3]}, "disagree"),
        (lambda r: r | {"val_scores": r["val_scores"] * math.nan}, "NaN"),
        (lambda r: r | {"precision": r["precision"].tolist()}, "must be tensors"),
    ],
)
def test_a_damaged_record_is_refused_by_every_command(tiny_run, tmp_path, change, says, one_line_error):
    ckpt = read_checkpoint(tiny_run / "last.pt")
    bad = save_checkpoint(tmp_path / "bad.pt", ckpt | {"confidence": change(ckpt["confidence"])})
    video = str(next(tiny_run.parent.parent.rglob("*.mp4")))
    for main, argv in ((predict_cli.main, [video]), (evaluate_cli.main, ["--out", str(tmp_path / "eval")])):
        line = one_line_error(main, [*argv, "--checkpoint", str(bad)], f"{bad}: its confidence record cannot be used")
        assert says in line


def test_training_fits_a_record_for_last_and_best(tiny_run):
    for name in ("last.pt", "best.pt"):
        record = Confidence.from_checkpoint(read_checkpoint(tiny_run / name))
        assert record.fitted_on == "16 training and 8 validation videos × 3 views"
        assert record.val_scores.shape == (8, 2) and record.means.shape[0] == 8
        assert 0.01 <= record.temperature <= 100


def test_predict_answers_none_of_these_with_the_reason_and_the_closest_classes(tiny_run, toy, tmp_path, capsys):
    good = sorted((toy / "val").rglob("*.mp4"))  # the validation videos: every one passes at 95% (⌈7.6⌉ = 8)
    noise = checkerboard_video(tmp_path / "checkerboard.mp4")
    args = [*map(str, good), str(noise), "--checkpoint", str(tiny_run), "--json", "--topk", "2"]
    assert predict_cli.main(args) == 0
    results = json.loads(capsys.readouterr().out)
    assert all(r["answer"] == r["top"][0]["label"] for r in results[:-1])
    last = results[-1]
    assert last["answer"] is None and last["reason"].startswith("unlike the training videos: distance")
    assert predict_cli.main([str(noise), "--checkpoint", str(tiny_run), "--topk", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{noise}: none of the 8 classes (unlike the training videos: distance ")
    assert line.count("%") == 2 and "); closest: " in line
    assert predict_cli.main([str(noise), "--checkpoint", str(tiny_run), "--no-reject", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["answer"] is not None
    assert predict_cli.main([*map(str, good), "--checkpoint", str(tiny_run), "--acceptance", "0.5", "--json"]) == 0
    rejected = sum(r["answer"] is None for r in json.loads(capsys.readouterr().out))
    assert rejected == 4  # ⌈0.5 · 8⌉ = 4 pass


def test_an_older_checkpoint_is_uncalibrated_and_said_once(tiny_run, toy, tmp_path, capsys):
    ckpt = read_checkpoint(tiny_run / "last.pt")
    old = save_checkpoint(tmp_path / "old.pt", {k: v for k, v in ckpt.items() if k != "confidence"})
    videos = [str(p) for p in sorted((toy / "val").rglob("*.mp4"))[:2]]
    assert predict_cli.main([*videos, "--checkpoint", str(old), "--json"]) == 0
    out, err = capsys.readouterr()
    assert err.count("no confidence record") == 1 and "uncalibrated" in err
    model, _, prep = load_model(old)
    from minivb.engine.inference import predict

    probs, _ = predict(model, videos, prep)  # the plain softmax average, as before there was a record
    for r, p in zip(json.loads(out), probs):
        assert r["answer"] == r["top"][0]["label"] and r["distance"] is None
        assert r["top"][0]["probability"] == pytest.approx(p.max().item(), abs=1e-4)


def test_evaluate_reports_the_calibration_error_before_and_after(tiny_run, tmp_path, capsys):
    out = tmp_path / "eval"
    assert evaluate_cli.main(["--checkpoint", str(tiny_run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    c = summary["calibration"]
    record = Confidence.from_checkpoint(read_checkpoint(tiny_run / "last.pt"))
    assert c["temperature"] == record.temperature and (out / "reliability.png").stat().st_size > 0
    rows = (out / "predictions.csv").read_text().splitlines()[1:]
    conf = torch.tensor([float(r.split(",")[3]) for r in rows])
    right = torch.tensor([int(r.split(",")[4]) for r in rows]).double()
    bins = torch.bucketize(conf.double(), torch.linspace(0, 1, 16)[1:-1])  # ECE by hand, 15 bins
    by_hand = sum(abs(right[bins == b].mean() - conf[bins == b].mean()) * (bins == b).sum() for b in bins.unique())
    assert c["ece_after"] == pytest.approx(by_hand.item() / len(rows), abs=1e-3)  # the CSV keeps 4 decimals
    assert f"calibration: ECE (15 bins) {100 * c['ece_before']:.1f}% → {100 * c['ece_after']:.1f}%" in printed
