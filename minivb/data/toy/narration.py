"""The toy set's narrations: what a narrator says over each toy video, made from the scene the generator drew.

VideoBERT learns from videos and what is said over them (YouTube's automatic speech recognition, ASR). The toy
videos have no sound, so each gets the sentence a narrator could say: the motion, the object's shape, its colour
and size, the speed — read from the video's :class:`~minivb.data.toy.Scene`, not from its pixels — from a small
template grammar, then heard through ASR-like noise (fillers, dropped words, a word heard as one of its synonyms)::

    the small red square slides to the right quickly     (noise 0)
    so the small red box slides the right quickly        (noise 0.2: a filler, a synonym, a dropped word)

The class name itself is never said (``left_to_right`` is "moves from left to right", "slides to the right", …),
and the vocabulary is small and closed (:data:`VOCABULARY`). A narration is a pure function of the toy set's
settings, the split and the index (:func:`narration`); its choices come from their own generator, so narrating
never disturbs a video's. :func:`write_narrations` stores them beside the index (``narrations.csv``), which
:func:`~minivb.data.toy.generate` never writes, so cached toy sets stay as they are. A long video made of several
clips (:func:`~minivb.data.toy.concat_video`) gets one sentence per step, heard a little after the step begins,
as speech lags the action (:func:`concat_narration`).
"""

from __future__ import annotations

import colorsys
import csv
import io
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np

from ...plumbing.files import write_atomic
from . import (
    FORMAT_VERSION,
    GENERATOR,
    SPLITS,
    Growth,
    Hand,
    Mouth,
    Scene,
    Slide,
    ToyConfig,
    classes_of,
    concat_scenes,
    read_index,
    scene_at,
)

NOISE = 0.2  # the default ASR noise: before each word a filler, and each word dropped or swapped, with noise / 3
FILE = "narrations.csv"  # beside the index: path,narration, the train rows then the val rows, in index order
_NARRATOR = 0x6E61  # the narrator's generators: [seed, split, index, _NARRATOR] (a video's: [seed, split, index])

# The grammar. Slots in braces; a slot that picks "" says nothing. Verb phrases in the base form ("watch the ball
# slide"); the third person adds -s (-es after o, s, sh, ch, x).
TEMPLATES = (
    "{np} {vp3} {speed}",
    "here {np} {vp3} {speed}",
    "now {np} {vp3} {speed}",
    "watch {np} {vp} {speed}",
    "we see {np} that {vp3} {speed}",
)
MOTION_PHRASES = {
    "left_to_right": ("move from left to right", "slide to the right", "go right", "travel across to the right"),
    "right_to_left": ("move from right to left", "slide to the left", "go left", "travel across to the left"),
    "top_to_bottom": ("move from top to bottom", "fall down", "drop down", "slide down"),
    "bottom_to_top": ("move from bottom to top", "rise up", "climb up", "slide up"),
    "growing": ("grow", "get bigger", "expand", "swell up"),
    "shrinking": ("shrink", "get smaller", "shrink down"),
    "opening": ("open its mouth", "open up", "open wide"),
    "closing": ("close its mouth", "shut its mouth", "close up"),
    "rotating_clockwise": ("turn clockwise", "spin clockwise", "rotate clockwise"),
    "rotating_counterclockwise": ("turn counterclockwise", "spin anticlockwise", "rotate counterclockwise"),
}
NOUNS = {  # what the object is called: the drawn shape, a mouth's disc, a clock hand
    "circle": ("circle", "ball", "dot"),
    "square": ("square", "box"),
    "diamond": ("diamond",),
    "triangle": ("triangle",),
    "disc": ("disc", "pacman"),
    "hand": ("hand", "pointer"),
}
# Hue (degrees, upper bound) → colour name; then each name's words.
HUES = ((15, "red"), (40, "orange"), (70, "yellow"), (160, "green"), (250, "blue"), (290, "purple"), (340, "pink"))
COLOURS = {
    "red": ("red",),
    "orange": ("orange",),
    "yellow": ("yellow",),
    "green": ("green",),
    "blue": ("blue",),
    "purple": ("purple", "violet"),
    "pink": ("pink", "magenta"),
}
SIZES = {"small": ("small", "little", "tiny"), "medium": ("", "medium"), "big": ("big", "large")}
SPEEDS = {"slow": ("slowly", "gently"), "steady": ("", "steadily"), "fast": ("quickly", "fast")}
DETERMINERS = ("the", "a")
FILLERS = ("um", "uh", "so", "okay", "well")
CONNECTIVES = (("first",), ("then", "next", "after that"), ("finally",))  # a long video's first, middle, last step

# Words ASR may hear as one another: every group of synonyms above.
_SYNONYMS = {
    w: tuple(x for x in group if x and x != w)
    for table in (NOUNS, COLOURS, SIZES, SPEEDS)
    for group in table.values()
    for w in group
    if w and len([x for x in group if x]) > 1
}


def third_person(phrase: str) -> str:
    """The base form's first word in the third person: "go right" → "goes right", "slide up" → "slides up"."""
    verb, _, rest = phrase.partition(" ")
    verb += "es" if verb.endswith(("o", "s", "sh", "ch", "x")) else "s"
    return f"{verb} {rest}".strip()


def _vocabulary() -> frozenset[str]:
    words = {w for t in TEMPLATES for w in t.split() if not w.startswith("{")}
    phrases = [p for ps in MOTION_PHRASES.values() for p in ps]
    words |= {w for p in phrases + [third_person(p) for p in phrases] for w in p.split()}
    for table in (NOUNS, COLOURS, SIZES, SPEEDS):
        words |= {w for group in table.values() for w in group if w}
    words |= {*DETERMINERS, "an", *FILLERS, "with", "tip"} | {w for c in CONNECTIVES for p in c for w in p.split()}
    return frozenset(words)


VOCABULARY = _vocabulary()  # every word a narration can have, at any noise level


# --------------------------------------------------------------------------- what is seen


@dataclass(frozen=True)
class Facts:
    """What a narration says about a scene, before its words are chosen."""

    label: str  # the class (never said as such)
    noun: str  # a key of NOUNS: the drawn shape, "disc" (a mouth) or "hand"
    colour: str  # a key of COLOURS: the object's colour
    size: str  # a key of SIZES: "small", "medium" or "big"; "" for a growth (its size is what changes)
    speed: str  # a key of SPEEDS: "slow", "steady" or "fast"
    tip: str = ""  # a hand's tip colour (a key of COLOURS); "" otherwise


def colour_name(rgb: Sequence[int]) -> str:
    """An RGB colour (0–255) → the name of its hue (a key of :data:`COLOURS`)."""
    hue = colorsys.rgb_to_hsv(*(v / 255 for v in rgb))[0] * 360
    return next((name for bound, name in HUES if hue < bound), "red")


def _third_of(x: float, lo: float, hi: float, words: tuple[str, str, str]) -> str:
    """Which third of the range ``[lo, hi]`` the generator drew ``x`` from → its word."""
    return words[min(2, max(0, math.floor(3 * (x - lo) / (hi - lo))))]


def facts(scene: Scene) -> Facts:
    """What ``scene`` shows, in the grammar's terms; sizes and speeds are thirds of the ranges the generator draws
    from (speed: how far the object goes in the clip)."""
    S, m, colour = scene.size, scene.motion, colour_name(scene.colour)
    size, speed = ("small", "medium", "big"), ("slow", "steady", "fast")
    if isinstance(m, Slide):
        return Facts(
            scene.label,
            scene.shape,
            colour,
            _third_of(m.r / S, 0.08, 0.14, size),
            _third_of(m.dist / S, 0.35, 0.6, speed),
        )
    if isinstance(m, Growth):
        return Facts(scene.label, scene.shape, colour, "", _third_of((m.r1 - m.r0) / S, 0.09, 0.21, speed))
    if isinstance(m, Mouth):
        return Facts(
            scene.label, "disc", colour, _third_of(m.r / S, 0.18, 0.26, size), _third_of(m.m1 - m.m0, 60, 115, speed)
        )
    if isinstance(m, Hand):
        turn = _third_of(m.turn, 0.5 * math.pi, math.pi, speed)
        return Facts(scene.label, "hand", colour, _third_of(m.length / S, 0.2, 0.3, size), turn, colour_name(m.tip))
    raise TypeError(f"no words for a motion of type {type(m).__name__}")


# --------------------------------------------------------------------------- words


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[rng.integers(len(options))]


def sentence(seen: Facts, rng: np.random.Generator) -> list[str]:
    """The words a narrator says for ``seen`` (no noise): a template, then a word for each slot, drawn from ``rng``
    in a fixed order (template, determiner, size, colour, noun, motion, speed)."""
    template, det = _pick(rng, TEMPLATES), _pick(rng, DETERMINERS)
    size = _pick(rng, SIZES[seen.size]) if seen.size else ""
    colour, noun = _pick(rng, COLOURS[seen.colour]), _pick(rng, NOUNS[seen.noun])
    phrase, speed = _pick(rng, MOTION_PHRASES[seen.label]), _pick(rng, SPEEDS[seen.speed])
    np_ = f"{det} {size} {colour} {noun}" + (f" with a {COLOURS[seen.tip][0]} tip" if seen.tip else "")
    words = template.format(np=np_, vp=phrase, vp3=third_person(phrase), speed=speed).split()
    return [_article(w, nxt) for w, nxt in zip(words, words[1:] + [""])]


def _article(word: str, following: str) -> str:
    """The article before a vowel: "a orange box" → "an orange box"."""
    return "an" if word == "a" and following[:1] in ("a", "e", "i", "o", "u") else word


def asr_noise(words: Sequence[str], rng: np.random.Generator, noise: float = NOISE) -> list[str]:
    """``words`` as speech recognition might hear them: before each word a filler ("um", "so", …), and each word
    dropped, or else heard as one of its synonyms, each with probability ``noise / 3``. ``noise=0``: ``words``."""
    if not 0 <= noise <= 1:
        raise ValueError(f"noise must be between 0 and 1, got {noise}")
    if noise == 0:
        return list(words)
    heard = []
    for word in words:
        filler, drop, swap = rng.random(3) < noise / 3
        if filler:
            heard.append(_pick(rng, FILLERS))
        if drop:
            continue
        heard.append(_pick(rng, _SYNONYMS[word]) if swap and word in _SYNONYMS else word)
    return heard or list(words[:1])


def narrate_scene(scene: Scene, rng: np.random.Generator, noise: float = NOISE) -> str:
    """A narration of ``scene``: its sentence, drawn from ``rng``, then heard through ASR noise drawn from the same
    ``rng`` after it (so the sentence under the noise is the same at every noise level)."""
    return " ".join(asr_noise(sentence(facts(scene), rng), rng, noise))


def narration(config: ToyConfig, split: str, index: int, noise: float = NOISE) -> str:
    """The narration of video ``index`` of ``split`` in the toy set made with ``config``: deterministic, from the
    video's scene and the narrator's own generator ``[seed, split, index, _NARRATOR]``."""
    rng = np.random.default_rng([config.seed, SPLITS.index(split), index, _NARRATOR])
    return narrate_scene(scene_at(config, split, index), rng, noise)


# --------------------------------------------------------------------------- long videos


@dataclass(frozen=True)
class Utterance:
    """One sentence of a long video's narration, and when it is heard (seconds from the video's start)."""

    start: float
    end: float
    text: str


def concat_narration(
    labels: Sequence[str],
    lengths: Sequence[int],
    *,
    seed: int,
    shot: int | None = None,
    size: int = 64,
    fps: float = 8,
    noise: float = NOISE,
    max_delay: float = 1.0,
) -> list[Utterance]:
    """The narration of the video :func:`~minivb.data.toy.concat_video` makes with the same arguments: one
    sentence per segment ("first …", "then …", "finally …"), describing its first shot's scene.

    Speech lags the action: segment ``i``'s sentence starts ``delay`` seconds after the segment does, ``delay``
    uniform in ``[0, max_delay]`` (at most half the segment), and lasts until the segment's end plus the same delay
    (cut at the next sentence and at the video's end). Deterministic: ``[seed, i, _NARRATOR, 1]`` per segment.
    """
    if not max_delay >= 0:
        raise ValueError(f"max_delay must be ≥ 0 seconds, got {max_delay}")
    segments = concat_scenes(labels, lengths, seed=seed, shot=shot, size=size)
    bounds = np.cumsum([0] + [sum(m for _, m in shots) for shots in segments]) / fps  # (segments + 1,) seconds
    said = []
    for i, shots in enumerate(segments):
        rng = np.random.default_rng([seed, i, _NARRATOR, 1])
        delay = min(rng.uniform(0, max_delay), (bounds[i + 1] - bounds[i]) / 2)
        step = CONNECTIVES[0 if i == 0 else 2 if i == len(segments) - 1 else 1]
        words = (_pick(rng, step).split() if len(segments) > 1 else []) + sentence(facts(shots[0][0]), rng)
        said.append((float(bounds[i] + delay), float(bounds[i + 1] + delay), " ".join(asr_noise(words, rng, noise))))
    starts = [s for s, _, _ in said[1:]] + [float(bounds[-1])]
    return [Utterance(s, min(e, nxt), text) for (s, e, text), nxt in zip(said, starts)]


# --------------------------------------------------------------------------- on disk


def config_of(root: Path) -> ToyConfig:
    """The settings of the complete toy set under ``root`` (its meta.json), or a one-line ``ValueError``."""
    try:
        meta = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{root} holds no toy set ({e}); make one with python -m minivb.data.toy --root {root}"
        ) from None
    if not isinstance(meta, dict) or meta.get("generator") != GENERATOR or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{root} holds no toy set of this version; make one with python -m minivb.data.toy --root {root}"
        )
    if meta.get("incomplete"):
        raise ValueError(
            f"{root} holds an incomplete toy set; make it again with python -m minivb.data.toy --root {root}"
        )
    return ToyConfig(**{f.name: meta[f.name] for f in fields(ToyConfig)})


def write_narrations(root: str | Path, noise: float = NOISE) -> Path:
    """Write ``root/narrations.csv`` (columns ``path,narration``: the rows of ``train.csv`` then those of ``val.csv``,
    in their order) for the toy set under ``root`` → its path. Idempotent (a file already right is left alone) and
    atomic (a reader sees the old file or the new one)."""
    root = Path(root)
    config = config_of(root)
    classes, out = classes_of(config), io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "narration"])
    for split in SPLITS:
        for i, row in enumerate(read_index(root, split)):
            if row["label"] != classes[i % len(classes)] or row["frames"] != config.frames:
                raise ValueError(
                    f"{root / f'{split}.csv'}: row {i + 1} is not what the toy generator wrote; regenerate"
                )
            writer.writerow([row["path"], narration(config, split, i, noise)])
    path = root / FILE
    if not (path.is_file() and path.read_text() == out.getvalue()):
        write_atomic(path, out.getvalue())
    return path


def read_narrations(root: str | Path, split: str) -> list[str]:
    """The narrations of ``split``'s videos, in the order of its index (:func:`~minivb.data.toy.read_index`)."""
    root = Path(root)
    paths = [row["path"] for row in read_index(root, split)]
    if not (root / FILE).is_file():
        raise FileNotFoundError(f"{root / FILE} does not exist; write it with write_narrations({str(root)!r})")
    with open(root / FILE, newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["path"].startswith(f"{split}/")]
    if [row["path"] for row in rows] != paths:
        raise ValueError(f"{root / FILE} does not match {root / f'{split}.csv'}; write it again with write_narrations")
    return [row["narration"] for row in rows]
