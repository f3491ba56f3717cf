"""What a command loads is checked before it is used (issue 30, rule 2): checkpoints and retrieval galleries.

A checkpoint whose weights are NaN, whose preprocessing record is damaged, impossible or disagrees with its model,
or whose class list does not fit its output layer is refused when it is read — by every command, as one line
``error: …`` naming the file, exit status 2. A gallery whose rows are not unit vectors is refused; a gallery that
cannot say which weights made it, or whose labels are all one, says so. The model is conftest's ``tiny_run``.
"""

import logging

import pytest
import torch

from minivb import evaluate, predict, retrieve, summarize, train
from minivb.engine.checkpoint import Preprocessing, load_checkpoint, read_checkpoint, save_checkpoint
from minivb.engine.gallery import Gallery


def _nan(ckpt, value=float("nan")):
    name = [n for n, t in ckpt["model"].items() if t.is_floating_point()][3]  # not the first: the first bad is named
    bad = ckpt["model"][name].clone().contiguous()
    bad.view(-1)[1] = value
    ckpt["model"][name] = bad
    return name


def _record(**changes):
    def change(ckpt):
        ckpt["preprocessing"] = {**ckpt["preprocessing"], **changes}
        return next(iter(changes))

    return change


def _unknown_key(ckpt):
    ckpt["preprocessing"] = {**ckpt["preprocessing"], "frames": 4}
    return "frames"


def _classes(n):
    def change(ckpt):
        ckpt["classes"] = [f"c{i}" for i in range(n)]
        return "class"

    return change


def _older_args(ckpt):  # a checkpoint from before the record: rebuilt from its options, checked the same
    del ckpt["preprocessing"]
    ckpt["args"] = {**ckpt["args"], "num_frames": -4}
    return "num_frames"


BROKEN = {
    "nan weight": _nan,
    "infinite weight": lambda ckpt: _nan(ckpt, float("inf")),
    "unknown key": _unknown_key,
    "wrong type": _record(num_frames="4"),
    "a bool for a number": _record(stride=True),
    "not a dict": lambda ckpt: ckpt.update(preprocessing="uint8") or "preprocessing",
    "frames of another model": _record(num_frames=8),  # the time embedding has 4
    "impossible pixels": _record(pixels="float BGR"),
    "negative frames": _record(num_frames=-4),
    "zero stride": _record(stride=0),
    "zero size": _record(size=0),
    "zero clips": _record(clips=0),
    "two crops": _record(crops=2),
    "fewer classes": _classes(7),  # the output layer has 8
    "more classes": _classes(9),
    "older args": _older_args,
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_checkpoint_is_refused_by_every_command(case, tiny_run, toy, tmp_path, one_line_error):
    ckpt = read_checkpoint(tiny_run / "last.pt")
    what = BROKEN[case](ckpt)
    path = save_checkpoint(tmp_path / "broken.pt", ckpt)
    with pytest.raises(ValueError, match=what) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    video = str(sorted((toy / "val").rglob("*.mp4"))[0])
    for main, argv in [
        (predict.main, [video, "--checkpoint", str(path)]),
        (evaluate.main, ["--checkpoint", str(path), "--out", str(tmp_path / "eval")]),
        (summarize.main, [video, "--checkpoint", str(path), "--out", str(tmp_path / "strip.png")]),
        (retrieve.main, ["index", "--checkpoint", str(path), video, "--out", str(tmp_path / "g.pt")]),
        (train.main, ["--resume", str(path), "--out", str(tmp_path / "resumed")]),
    ]:
        line = one_line_error(main, argv, str(path))
        assert what in line, line
    assert not any((tmp_path / name).exists() for name in ("eval", "strip.png", "g.pt", "resumed"))


def test_the_record_is_checked_wherever_it_is_made(tmp_path, one_line_error):
    assert Preprocessing(4, 1, 32, 3, 3) == Preprocessing.from_checkpoint(
        {"preprocessing": {"num_frames": 4, "stride": 1, "size": 32}}, clips=3, crops=3
    )
    for bad, match in [
        (dict(num_frames=0), "num_frames"),
        (dict(size=-1), "size"),
        (dict(crops=2), "crops"),
        (dict(pixels="uint8 BGR"), "pixels"),
    ]:
        with pytest.raises(ValueError, match=match):
            Preprocessing(**{"num_frames": 4, "stride": 1, "size": 32, **bad})
    with pytest.raises(ValueError, match="frames"):
        Preprocessing.from_checkpoint({"preprocessing": {"num_frames": 4, "stride": 1, "size": 32, "frames": 4}})
    gallery = tmp_path / "g.pt"  # a gallery keeps the record of its queries' views
    Gallery(torch.eye(2), ["a", "b"], preprocessing={"num_frames": 4, "stride": 1, "size": 32, "crops": 2}).save(
        gallery
    )
    one_line_error(retrieve.main, ["search", "--index", str(gallery), "a"], "crops must be 1 or 3, got 2")


# --------------------------------------------------------------------------- galleries


def _save_raw(path, embeddings, labels=None, **extra):
    """A gallery file written without :class:`Gallery`'s checks (as a damaged or foreign file would be)."""
    paths = [f"v{i}.mp4" for i in range(len(embeddings))]
    save_checkpoint(path, {"format": "minivb.gallery", "embeddings": embeddings, "paths": paths, "labels": labels})
    return path


def test_a_gallery_of_rows_that_are_not_unit_vectors_is_refused(tmp_path, one_line_error):
    rows = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.6, 0.8], [0.5, 0.5]])
    with pytest.raises(ValueError, match="3 of 5 embeddings are not unit vectors"):
        Gallery(rows, [f"v{i}.mp4" for i in range(5)])
    zeros = _save_raw(tmp_path / "zeros.pt", torch.zeros(4, 2), ["a", "a", "b", "b"])
    line = one_line_error(retrieve.main, ["evaluate", "--index", str(zeros)], "4 of 4 embeddings are not unit")
    assert str(zeros) in line
    Gallery(torch.tensor([[1.0, 0.0], [0.0, 1.0005]]), ["a", "b"])  # float rounding is not a defect


def test_a_gallery_without_a_fingerprint_is_searched_with_a_warning(tiny_run, toy, tmp_path, caplog):
    videos = sorted(str(p) for p in (toy / "val").rglob("*.mp4"))[:2]
    made = tmp_path / "g.pt"
    assert retrieve.main(["index", "--checkpoint", str(tiny_run), *videos, "--out", str(made)]) == 0
    with caplog.at_level(logging.WARNING):
        assert retrieve.main(["search", "--index", str(made), videos[0]]) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # a fingerprint: checked, no word
    g = Gallery.load(made)
    old = tmp_path / "old.pt"
    Gallery(g.embeddings, g.paths, checkpoint=g.checkpoint, preprocessing=g.preprocessing).save(old)
    for argv in (["search", "--index", str(old), videos[0]], ["search", "--index", str(old), videos[0], "--json"]):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert retrieve.main([*argv, "--checkpoint", str(tiny_run)]) == 0
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "cannot be checked" in warnings[0] and str(old) in warnings[0], warnings


def test_the_report_counts_the_labels_present_and_one_label_means_nothing(tmp_path, capsys, caplog):
    rows = torch.nn.functional.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    classes = [f"c{i}" for i in range(8)]
    two = tmp_path / "two.pt"
    Gallery(rows, [f"v{i}.mp4" for i in range(6)], ["c1", "c1", "c1", "c5", "c5", "c5"], classes).save(two)
    with caplog.at_level(logging.WARNING):
        assert retrieve.main(["evaluate", "--index", str(two)]) == 0
    assert "6 videos of 2 labels" in capsys.readouterr().out and not caplog.records
    one = tmp_path / "one.pt"
    Gallery(rows, [f"v{i}.mp4" for i in range(6)], ["c3"] * 6, classes).save(one)
    for json_out in (False, True):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert retrieve.main(["evaluate", "--index", str(one), *(["--json"] if json_out else [])]) == 0
        out = capsys.readouterr().out
        assert json_out or "6 videos of 1 label," in out
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "every neighbour is relevant" in warnings[0], warnings
