"""minivb.data.toy: deterministic, cached, balanced, and the twins differ only in time order."""

import collections
import json

import numpy as np
import pytest

from minivb.data.toy import (
    CLASSES,
    HFLIP,
    ROTATION,
    TWINS,
    VFLIP,
    ToyConfig,
    classes_of,
    generate,
    read_index,
    render_clip,
)
from minivb.data.toy import __main__ as toy_command
from minivb.video import read_frames, video_info

SMALL = ToyConfig(seed=3, train_per_class=3, val_per_class=1, frames=12)


def _decode_all(root):
    return {
        row["path"]: read_frames(root / row["path"], range(row["frames"]))
        for split in ("train", "val")
        for row in read_index(root, split)
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("toy"), SMALL)


def test_same_seed_same_pixels_other_seed_other_pixels(small_set, tmp_path):
    again = generate(tmp_path / "again", SMALL)
    a, b = _decode_all(small_set), _decode_all(again)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    other = _decode_all(generate(tmp_path / "other", ToyConfig(**{**SMALL.__dict__, "seed": 4})))
    assert not any(np.array_equal(a[k], other[k]) for k in a)


def test_balanced_classes_and_honest_index(small_set):
    assert (small_set / "classes.txt").read_text().split() == list(CLASSES)
    for split, per_class in (("train", 3), ("val", 1)):
        rows = read_index(small_set, split)
        assert collections.Counter(r["label"] for r in rows) == {c: per_class for c in CLASSES}
        for row in rows:
            path = small_set / row["path"]
            assert path.parent.name == row["label"] and path.parent.parent.name == split  # class-folder layout
            info = video_info(path)
            assert (info.frames, info.width, info.height, info.fps) == (12, 64, 64, 8.0)


def test_cache_reuse_force_and_changed_settings(tmp_path):
    root = generate(tmp_path, SMALL)
    first = root / read_index(root, "train")[0]["path"]
    stamp = first.stat().st_mtime_ns
    generate(root, SMALL)
    assert first.stat().st_mtime_ns == stamp  # reused
    generate(root, SMALL, force=True)
    assert first.stat().st_mtime_ns != stamp  # regenerated
    generate(root, ToyConfig(**{**SMALL.__dict__, "train_per_class": 2}))
    assert len(read_index(root, "train")) == 16 and json.loads((root / "meta.json").read_text())["train_per_class"] == 2
    first.unlink()  # a lost file makes the cache invalid
    generate(root, ToyConfig(**{**SMALL.__dict__, "train_per_class": 2}))
    assert first.is_file()


@pytest.mark.parametrize("forward,backward", TWINS + (ROTATION,))
def test_twin_is_the_same_scene_played_backwards(forward, backward):
    for seed in range(5):
        a = render_clip(forward, np.random.default_rng(seed))
        b = render_clip(backward, np.random.default_rng(seed))
        np.testing.assert_array_equal(b, a[::-1])
        assert not np.array_equal(a, a[::-1])  # and it does move


def _moving_mask(video):
    """Pixels that differ from the clip's per-pixel median (the static scene): the moving object."""
    v = video.astype(np.float32)
    return np.abs(v - np.median(v, axis=0)).sum(-1) > 60  # (T, H, W)


def _centroids(video):
    ys, xs = np.mgrid[: video.shape[1], : video.shape[2]]
    mask = _moving_mask(video)
    return np.array([(xs[m].mean(), ys[m].mean()) if m.any() else (np.nan, np.nan) for m in mask])  # (T, 2): x, y


def _direction(video, label):
    """Measure, from pixels only, which way a decoded clip moves (+1 or -1) along its pair's axis."""
    if label in ("left_to_right", "right_to_left"):
        return np.sign(np.subtract(*_centroids(video)[[-1, 0], 0]))
    if label in ("top_to_bottom", "bottom_to_top"):
        return np.sign(np.subtract(*_centroids(video)[[-1, 0], 1]))
    if label in ("growing", "shrinking"):
        # pixels that the object covers at one end of the clip but not the other form a ring
        # around it; a growing object reaches a ring pixel the later, the further out it lies
        v = video.astype(np.float32)
        ring = np.abs(v[-1] - v[0]).sum(-1) > 60  # (H, W)
        switch = np.abs(np.diff(v, axis=0)).sum(-1).argmax(0)[ring]  # when each ring pixel changes
        ys, xs = np.nonzero(ring)
        radius = np.hypot(xs - xs.mean(), ys - ys.mean())
        return np.sign(np.corrcoef(radius, switch)[0, 1])
    if label in ROTATION:
        # the hand's centroid turns around the middle of its swept arc; in image coordinates
        # (y down) a positive cross product is clockwise on screen
        c = _centroids(video)
        c = c[~np.isnan(c[:, 0])]  # frames where the hand is where it mostly is not
        d = c - c.mean(0)
        return np.sign(np.sum(d[:-1, 0] * d[1:, 1] - d[:-1, 1] * d[1:, 0]))
    # opening / closing: the pixels that differ between the first and the last frame are the
    # mouth's wedge; closed, it has the object's bright colour (value >= 190 by construction),
    # open, the muted background shows through
    v = video.astype(np.float32)
    wedge = np.abs(v[-1] - v[0]).sum(-1) > 60  # (H, W)
    brightness = [v[i][wedge].max(-1).mean() for i in (0, -1)]  # HSV value, first and last frame
    return np.sign(brightness[0] - brightness[1])


FORWARD = {name: +1 for name, _ in TWINS + (ROTATION,)} | {name: -1 for _, name in TWINS + (ROTATION,)}


def test_decoded_motion_runs_the_way_the_label_says_and_reverses_with_time(small_set):
    for split in ("train", "val"):
        for row in read_index(small_set, split):
            video = read_frames(small_set / row["path"], range(row["frames"]))
            assert _direction(video, row["label"]) == FORWARD[row["label"]], row["path"]
            assert _direction(video[::-1], row["label"]) == -FORWARD[row["label"]], row["path"]


@pytest.mark.parametrize("label", CLASSES + ROTATION)
def test_flip_tables_say_what_a_mirror_does(label):
    video = render_clip(label, np.random.default_rng(11))
    assert FORWARD[HFLIP[label]] * _direction(video[:, :, ::-1], HFLIP[label]) == 1
    assert FORWARD[VFLIP[label]] * _direction(video[:, ::-1], VFLIP[label]) == 1
    assert HFLIP[HFLIP[label]] == label and VFLIP[VFLIP[label]] == label


def test_optional_rotation_pair(tmp_path):
    cfg = ToyConfig(seed=1, train_per_class=2, val_per_class=1, frames=12, rotation=True)
    root = generate(tmp_path, cfg)
    assert classes_of(cfg) == CLASSES + ROTATION
    assert (root / "classes.txt").read_text().split() == list(CLASSES + ROTATION)
    rows = read_index(root, "train")
    assert collections.Counter(r["label"] for r in rows) == {c: 2 for c in CLASSES + ROTATION}
    for row in rows:
        if row["label"] in ROTATION:
            video = read_frames(root / row["path"], range(row["frames"]))
            assert _direction(video, row["label"]) == FORWARD[row["label"]]


def test_never_replaces_a_folder_it_did_not_make(tmp_path):
    """A user's own class-folder data set must survive a wrong --root."""
    mine = tmp_path / "mine"
    (mine / "train" / "abseiling").mkdir(parents=True)
    (mine / "train" / "abseiling" / "a.mp4").write_bytes(b"not ours")
    with pytest.raises(ValueError, match="is not a toy set"):
        generate(mine, SMALL)
    assert (mine / "train" / "abseiling" / "a.mp4").read_bytes() == b"not ours"
    assert toy_command.main(["--root", str(mine)]) == 2
    assert (mine / "train" / "abseiling" / "a.mp4").is_file()


def test_a_users_meta_json_does_not_make_their_folder_ours(tmp_path):
    """A folder with its own meta.json (even one with a format_version) is not a toy set: nothing is deleted."""
    mine = tmp_path / "mine"
    (mine / "train" / "dogs").mkdir(parents=True)
    (mine / "train" / "dogs" / "d1.mp4").write_bytes(b"my dog")
    (mine / "meta.json").write_text(json.dumps({"format_version": 3, "owner": "me"}))
    with pytest.raises(ValueError, match="is not a toy set"):
        generate(mine, SMALL)
    assert toy_command.main(["--root", str(mine)]) == 2
    assert (mine / "train" / "dogs" / "d1.mp4").read_bytes() == b"my dog"
    # a set made before meta.json named its generator is still recognised (only generator-made files in it)
    made = generate(tmp_path / "old", SMALL)
    meta = json.loads((made / "meta.json").read_text())
    (made / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "generator"}))
    assert (
        generate(made, SMALL) == made and json.loads((made / "meta.json").read_text())["generator"] == "minivb.data.toy"
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown toy class"):
        render_clip("jumping", np.random.default_rng(0))
    with pytest.raises(ValueError, match="train_per_class must be a positive integer"):
        generate("unused", ToyConfig(train_per_class=0))
    with pytest.raises(ValueError, match="frames must be an integer >= 2"):
        render_clip("growing", np.random.default_rng(0), frames=1)


def test_cli(tmp_path, capsys):
    assert (
        toy_command.main(["--root", str(tmp_path), "--train-per-class", "1", "--val-per-class", "1", "--seed", "5"])
        == 0
    )
    assert "wrote 8 train + 8 val videos" in capsys.readouterr().out
    assert (
        toy_command.main(["--root", str(tmp_path), "--train-per-class", "1", "--val-per-class", "1", "--seed", "5"])
        == 0
    )
    assert "reusing" in capsys.readouterr().out


@pytest.mark.parametrize(
    "bad, says",
    [
        (["--train-per-class", "-3"], "--train-per-class: must be > 0"),
        (["--size", "16"], "--size: must be >= 32"),
        (["--frames", "x"], "--frames: expected an integer"),
        (["--frames", "1"], "--frames: must be >= 2"),
        (["--fps", "inf"], "--fps"),  # OpenCV's writer would hang on an infinite rate
        (["--fps", "nan"], "--fps"),
        (["--fps", "0"], "--fps: must be > 0"),
        (["--fps", "1e30"], "fps must be between 0.01 and 65535"),
        (["--seed", "-1"], "--seed: must be >= 0"),
        (["--seed", "1208925819614629174706176"], "--seed: must be < 2**63"),
    ],
)
def test_bad_options_are_one_line_exit_2_and_write_nothing(tmp_path, one_line_error, bad, says):
    one_line_error(toy_command.main, ["--root", str(tmp_path / "toy"), *bad], says)
    assert not (tmp_path / "toy").exists()


def test_bad_option_from_the_shell_does_not_hang(tmp_path, run_module):
    proc = run_module("minivb.data.toy", "--root", tmp_path / "toy", "--fps", "inf", timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: argument --fps") and not (tmp_path / "toy").exists()


def test_generate_checks_its_config_before_writing(tmp_path):
    for bad, says in (
        (dict(fps=float("inf")), "fps must be between"),
        (dict(fps=1e5), "fps must be between"),
        (dict(seed=-1), "seed must be a non-negative integer"),
        (dict(frames=1), "frames must be an integer >= 2"),
        (dict(size=31), "size must be an integer >= 32"),
        (dict(val_per_class=0), "val_per_class must be a positive integer"),
    ):
        with pytest.raises(ValueError, match=says):
            generate(tmp_path / "toy", ToyConfig(**bad))
    assert not (tmp_path / "toy").exists()


def test_a_full_disk_is_said_as_such(tmp_path, monkeypatch, capsys):
    """D19 of the hardening issue: on a full disk the generator said "OpenCV cannot open an mp4v video writer"."""
    from collections import namedtuple

    from minivb.data import toy

    class Refused:  # what OpenCV's writer does when it cannot create the file
        def __init__(self, *args):
            pass

        def isOpened(self):
            return False

    monkeypatch.setattr(toy.cv2, "VideoWriter", Refused)
    monkeypatch.setattr(toy.shutil, "disk_usage", lambda path: namedtuple("Usage", "total used free")(1, 1, 0))
    assert toy_command.main(["--root", str(tmp_path / "toy"), "--train-per-class", "1", "--val-per-class", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no space left on {tmp_path / 'toy'}"), err
