"""minivb.data.toy.narration: what a narrator says over each toy video — and the scene records it is read from, which
paint exactly the videos the generator painted before they existed."""

import csv
import hashlib
import math

import cv2
import numpy as np
import pytest

from minivb.data.toy import (
    _ALL,
    ToyConfig,
    classes_of,
    concat_scenes,
    draw_scene,
    generate,
    is_toy_root,
    read_index,
    render_clip,
    render_scene,
    scene_at,
)
from minivb.data.toy.narration import (
    COLOURS,
    CONNECTIVES,
    FILE,
    FILLERS,
    NOUNS,
    VOCABULARY,
    asr_noise,
    colour_name,
    concat_narration,
    facts,
    narration,
    read_narrations,
    sentence,
    write_narrations,
)

# Narrations need scenes, not pixels: tiny frames keep drawing them cheap (their noise is drawn all the same).
CHEAP = ToyConfig(seed=7, train_per_class=40, val_per_class=10, frames=2, size=32, rotation=True)


def _narrations(config, split, noise):
    n = len(classes_of(config)) * (config.train_per_class if split == "train" else config.val_per_class)
    return [narration(config, split, i, noise) for i in range(n)]


# --------------------------------------------------------------------------- the scene records


def _plain(x):
    """Draw-call arguments as plain Python (their repr does not change with NumPy's)."""
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x)
    return x


def _draw_calls_digest(monkeypatch, label, seed, frames, size):
    """Every OpenCV draw call's arguments while rendering, and the generator's state after: a digest of what the
    generator drew and where it drew it that does not depend on how an OpenCV release rasterises."""
    calls = []
    for name in ("circle", "fillPoly", "ellipse", "line"):
        real = getattr(cv2, name)

        def spy(img, *args, _name=name, _real=real):
            calls.append((_name, _plain(args)))
            return _real(img, *args)

        monkeypatch.setattr(cv2, name, spy)
    rng = np.random.default_rng([seed, 1])
    render_clip(label, rng, frames, size)
    monkeypatch.undo()
    return hashlib.md5(repr((calls, rng.bit_generator.state)).encode()).hexdigest()[:16]


# Computed with the generator as it was before scenes became records (git show 5377382:minivb/data/toy/__init__.py,
# imported on its own): a twin's calls are its pair's (the video is reversed after drawing). In that session every
# file of two generated sets (default and --rotation settings) and of a concat_video was also compared byte for byte.
HEAD_DIGESTS = {
    ("left_to_right", 0, 16, 64): "91bb617bcef06fd1",
    ("left_to_right", 1, 5, 40): "a9c843a315c36c42",
    ("right_to_left", 0, 16, 64): "91bb617bcef06fd1",
    ("right_to_left", 1, 5, 40): "a9c843a315c36c42",
    ("top_to_bottom", 0, 16, 64): "2306d83649714eea",
    ("top_to_bottom", 1, 5, 40): "7e9647a3125f227c",
    ("bottom_to_top", 0, 16, 64): "2306d83649714eea",
    ("bottom_to_top", 1, 5, 40): "7e9647a3125f227c",
    ("growing", 0, 16, 64): "9b04dae1842875d3",
    ("growing", 1, 5, 40): "9ec99914503a6ad1",
    ("shrinking", 0, 16, 64): "9b04dae1842875d3",
    ("shrinking", 1, 5, 40): "9ec99914503a6ad1",
    ("opening", 0, 16, 64): "563c51c5eaab037c",
    ("opening", 1, 5, 40): "5c7d9bcfcaf10767",
    ("closing", 0, 16, 64): "563c51c5eaab037c",
    ("closing", 1, 5, 40): "5c7d9bcfcaf10767",
    ("rotating_clockwise", 0, 16, 64): "c3c3e77c8aad81d4",
    ("rotating_clockwise", 1, 5, 40): "5c910af7dea1f85f",
    ("rotating_counterclockwise", 0, 16, 64): "c3c3e77c8aad81d4",
    ("rotating_counterclockwise", 1, 5, 40): "5c910af7dea1f85f",
}


def test_the_scene_records_draw_what_the_generator_drew_before(monkeypatch):
    found = {key: _draw_calls_digest(monkeypatch, *key) for key in HEAD_DIGESTS}
    assert found == HEAD_DIGESTS


@pytest.mark.parametrize("label", _ALL)
def test_render_clip_is_the_drawn_scene_painted(label):
    a, b = np.random.default_rng([3, 1]), np.random.default_rng([3, 1])
    scene = draw_scene(label, b, frames=6, size=40)
    np.testing.assert_array_equal(render_clip(label, a, frames=6, size=40), render_scene(scene))
    assert a.bit_generator.state == b.bit_generator.state  # every draw happens while drawing the scene
    assert (scene.frames, scene.size, scene.backwards) == (6, 40, _ALL.index(label) % 2 == 1)
    np.testing.assert_array_equal(render_scene(scene), render_scene(scene))  # painting draws nothing


def test_scene_at_is_the_scene_of_the_generated_video():
    config = ToyConfig(seed=2, frames=3, size=32)
    for i in (0, 5, 13):
        label = classes_of(config)[i % 8]
        expected = render_clip(label, np.random.default_rng([2, 1, i]), 3, 32)  # val = split 1
        np.testing.assert_array_equal(render_scene(scene_at(config, "val", i)), expected)


# --------------------------------------------------------------------------- the words


def test_same_seed_same_words_other_seed_other_words():
    config = ToyConfig(seed=1, train_per_class=3, frames=2, size=32)
    first = _narrations(config, "train", 0.2)
    assert first == _narrations(config, "train", 0.2)
    other = _narrations(ToyConfig(**{**config.__dict__, "seed": 2}), "train", 0.2)
    assert sum(a != b for a, b in zip(first, other)) > len(first) // 2


def test_the_class_name_is_never_said():
    for noise in (0, 0.2, 1):
        for text in _narrations(CHEAP, "val", noise):
            assert not any(name in text for name in _ALL), text
    assert not VOCABULARY & set(_ALL)  # not even "growing" or "closing" on its own


def test_a_narration_names_the_drawn_shape_and_colour():
    assert [colour_name(c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 128, 0))] == [
        "red",
        "green",
        "blue",
        "yellow",
        "orange",
    ]
    for i in range(len(classes_of(CHEAP)) * 3):
        scene, words = scene_at(CHEAP, "train", i), narration(CHEAP, "train", i, noise=0).split()
        seen = facts(scene)
        expected = {"opening": "disc", "closing": "disc"}.get(scene.label, scene.shape)
        assert seen.noun == ("hand" if "rotating" in scene.label else expected)
        assert set(words) & set(NOUNS[seen.noun]) and set(words) & set(COLOURS[colour_name(scene.colour)]), words


def test_noise_zero_is_the_sentence_and_noise_adds_asr_mistakes():
    clean, noisy = _narrations(CHEAP, "val", 0), _narrations(CHEAP, "val", 0.2)
    scene, rng = scene_at(CHEAP, "val", 0), np.random.default_rng([7, 1, 0, 0x6E61])
    assert clean[0] == " ".join(sentence(facts(scene), rng))
    changed = sum(a != b for a, b in zip(clean, noisy))
    assert 0.3 * len(clean) < changed < len(clean)  # about one mistake in six words: most narrations, not all
    assert any(set(text.split()) & set(FILLERS) for text in noisy)
    assert not any(set(text.split()) & set(FILLERS) for text in clean)
    assert any(len(b.split()) < len(a.split()) for a, b in zip(clean, noisy))  # a word dropped
    assert asr_noise(["the", "red", "ball"], np.random.default_rng(0), 0) == ["the", "red", "ball"]
    with pytest.raises(ValueError, match="noise"):
        narration(CHEAP, "val", 0, noise=1.5)


def test_the_vocabulary_is_closed():
    for noise in (0, 0.2, 1):
        for split in ("train", "val"):
            for text in _narrations(CHEAP, split, noise):
                assert set(text.split()) <= VOCABULARY, text
    # a word-level tokenizer built from the training narrations knows every word of the held-out ones
    known = {w for text in _narrations(CHEAP, "train", 0) for w in text.split()}
    unknown = {w for text in _narrations(CHEAP, "val", 0) for w in text.split()} - known
    assert not unknown


# --------------------------------------------------------------------------- on disk


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("toy"), ToyConfig(seed=4, train_per_class=2, val_per_class=1, frames=4))


def test_narrations_csv_round_trip_beside_the_index(tiny_set):
    before = sorted(p for p in tiny_set.rglob("*") if p.is_file())
    path = write_narrations(tiny_set)
    assert path == tiny_set / FILE and sorted(p for p in tiny_set.rglob("*") if p.is_file()) == sorted(before + [path])
    config = ToyConfig(seed=4, train_per_class=2, val_per_class=1, frames=4)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "narration"]
    assert [r["path"] for r in rows] == [r["path"] for s in ("train", "val") for r in read_index(tiny_set, s)]
    for split in ("train", "val"):
        assert read_narrations(tiny_set, split) == _narrations(config, split, 0.2)
    stamp = path.stat().st_mtime_ns
    assert write_narrations(tiny_set) == path and path.stat().st_mtime_ns == stamp  # idempotent: left alone
    assert generate(tiny_set, config) == tiny_set and is_toy_root(tiny_set)  # the cache still holds
    write_narrations(tiny_set, noise=0)
    assert read_narrations(tiny_set, "val") == _narrations(config, "val", 0)
    assert not list(tiny_set.glob(".*.tmp"))


def test_narrations_refuse_what_they_do_not_match(tiny_set, tmp_path):
    with pytest.raises(ValueError, match="no toy set"):
        write_narrations(tmp_path)
    (tmp_path / "train.csv").write_text("path,label,frames\n")
    (tmp_path / "val.csv").write_text("path,label,frames\n")
    with pytest.raises(FileNotFoundError, match="write_narrations"):
        read_narrations(tmp_path, "val")
    (tmp_path / FILE).write_text((tiny_set / "train.csv").read_text().replace(",label,frames", ",narration"))
    (tmp_path / "train.csv").write_text("path,label,frames\nother.mp4,growing,4\n")
    with pytest.raises(ValueError, match="does not match"):
        read_narrations(tmp_path, "train")


# --------------------------------------------------------------------------- long videos

LABELS, LENGTHS = ["left_to_right", "closing", "growing", "bottom_to_top"], [10, 7, 12, 16]


def test_a_long_video_gets_one_sentence_per_step_heard_a_little_late():
    said = concat_narration(LABELS, LENGTHS, seed=3, shot=4, size=32, fps=8)
    assert said == concat_narration(LABELS, LENGTHS, seed=3, shot=4, size=32, fps=8)
    assert said != concat_narration(LABELS, LENGTHS, seed=4, shot=4, size=32, fps=8)
    bounds = np.cumsum([0] + LENGTHS) / 8  # seconds
    assert len(said) == len(LABELS)
    for i, u in enumerate(said):
        assert bounds[i] <= u.start <= bounds[i] + min(1.0, (bounds[i + 1] - bounds[i]) / 2) < u.end
        assert u.end <= (said[i + 1].start if i + 1 < len(said) else bounds[-1])
    assert [u.start for u in concat_narration(LABELS, LENGTHS, seed=3, size=32, max_delay=0)] == list(bounds[:-1])
    assert len({u.start - b for u, b in zip(said, bounds)}) > 1  # each its own delay


def test_each_step_is_said_from_its_first_shot():
    said = concat_narration(LABELS, LENGTHS, seed=3, shot=4, size=32, noise=0)
    scenes = concat_scenes(LABELS, LENGTHS, seed=3, shot=4, size=32)
    assert [len(shots) for shots in scenes] == [math.ceil(n / 4) for n in LENGTHS]
    for u, shots, step in zip(said, scenes, [CONNECTIVES[0], CONNECTIVES[1], CONNECTIVES[1], CONNECTIVES[2]]):
        seen, words = facts(shots[0][0]), u.text.split()
        assert any(u.text.startswith(c + " ") for c in step)
        assert set(words) & set(NOUNS[seen.noun]) and set(words) & set(COLOURS[seen.colour])
        assert set(words) <= VOCABULARY and not any(name in u.text for name in _ALL)
    alone = concat_narration(LABELS[:1], LENGTHS[:1], seed=3, size=32, noise=0)[0].text.split()
    assert not set(alone) & {w for c in CONNECTIVES for p in c for w in p.split()}
