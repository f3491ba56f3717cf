"""``python -m minivb.pretrain``: masked visual-token pretraining, the original VideoBERT idea (no labels).

    python -m minivb.pretrain                          # toy set: 64 words, 20 epochs, ~30 s on a CPU
    python -m minivb.pretrain --subset k400            # ImageNet ResNet-18 tokenizer, 12⁴ words, the k400 model size
    python -m minivb.train --init-from runs/pretrain-toy-…   # fine-tune the classifier from it
    python -m minivb.pretrain --language joint         # with the narrations: VideoBERT's joint model (notebook 10)

The work is :func:`minivb.engine.pretraining.pretrain`; the defaults per data set are its
``pretrain_preset`` in :mod:`minivb.data.registry` (and its ``language_preset`` with ``--language``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .data.registry import DATASETS
from .engine.joint_pretraining import LANGUAGES
from .engine.pretraining import Stopped, pretrain
from .plumbing.cli import Parser, nonnegative_int, number, positive_int, run_main, seed
from .plumbing.device import DEVICES


def build_parser() -> argparse.ArgumentParser:
    """The command line: options in help order, none with a default (the data set's preset fills them in)."""
    presets = "\n".join(
        f"  {k}: " + ", ".join(f"{a}={b}" for a, b in d.pretrain_preset.items()) for k, d in DATASETS.items()
    )
    presets += "".join(
        f"\n  {k} with --language: " + ", ".join(f"{a}={b}" for a, b in d.language_preset.items())
        for k, d in DATASETS.items()
        if d.language_preset
    )
    p = Parser(
        prog="python -m minivb.pretrain",
        argument_default=argparse.SUPPRESS,
        description="Pretrain VideoBERT the original way, without labels: every frame of a clip becomes a visual "
        "word (frozen CNN features, hierarchical k-means), and a BERT over the words learns to fill in masked ones "
        "(15% of the positions: 80% [MASK], 10% a random word, 10% unchanged). Writes pretrain.pt and "
        "summary.json to --out; python -m minivb.train --init-from OUT fine-tunes from it. With --language joint, "
        "the toy set's narrations join the visual words in one sequence (VideoBERT's joint model): the run then "
        "measures zero-shot classification, text-to-video search and captions, and python -m minivb.retrieve text "
        "searches videos with a sentence.",
        epilog=f"preset defaults (options override them):\n{presets}",
    )
    _run_options(p)
    _vocabulary_options(p)
    _optimisation_options(p)
    _clip_and_model_options(p)
    _machine_options(p)
    return p


def _run_options(p: argparse.ArgumentParser) -> None:
    """The data set, the run folder (new or resumed) and the seed."""
    p.add_argument("--subset", choices=tuple(DATASETS), help="data set (default: toy)")
    p.add_argument(
        "--data-root",
        help="data folder (default: data/toy, or data/kinetics400); its train split is used "
        "without labels, its val split for the masked-token accuracy",
    )
    p.add_argument("--out", help="output folder (default: runs/pretrain-<subset>-<date>-<time>)")
    p.add_argument(
        "--resume",
        metavar="OUT",
        help="continue a run that SIGTERM or Ctrl-C stopped: its vocabulary and finished epochs are kept "
        "(only --device and --workers may change)",
    )
    p.add_argument("--seed", type=seed, help="seed for the tokenizer CNN, k-means, masking and the model (default: 0)")
    p.add_argument(
        "--language",
        choices=LANGUAGES,
        help="none: visual words only (default); joint: the narration and the visual words in one sequence, with "
        "text cloze, video cloze and alignment (VideoBERT's joint model; then zero-shot, search and captions are "
        "measured); prior: the narrations alone, the language-prior baseline (toy set only: it has narrations)",
    )
    p.add_argument(
        "--max-stride",
        type=positive_int,
        help="--language joint: each training pair's visual sentence at a random pace, every s-th word with s "
        "from 1 to MAX_STRIDE (the paper: 1 to 5; default: 1, off)",
    )


def _vocabulary_options(p: argparse.ArgumentParser) -> None:
    """The visual words: the k-means tree's depth and branching, and the frames it is fitted on."""
    p.add_argument("--levels", type=positive_int, help="k-means tree depth (the paper: 4)")
    p.add_argument(
        "--clusters",
        type=number(int, 1, True),
        help="clusters per node, at least 2 (the paper: 12); words = clusters ** levels",
    )
    p.add_argument("--kmeans-frames", type=positive_int, help="fit k-means on at most this many frames")
    p.add_argument(
        "--tokenizer",
        choices=("cnn", "flow"),
        help="cnn: a word per frame from the frozen CNN; flow: a word per pair of consecutive frames from their "
        "optical flow (default: cnn, or flow with --language)",
    )


def _optimisation_options(p: argparse.ArgumentParser) -> None:
    """Epochs, batch, learning rate and how many training videos."""
    p.add_argument("--epochs", type=positive_int, help="pretraining epochs")
    p.add_argument("--batch-size", type=positive_int, help="sequences per step")
    p.add_argument("--lr", type=number(float, 0.0, True), help="peak learning rate (AdamW, warmup + cosine)")
    p.add_argument("--limit", type=positive_int, help="use only N training videos (a fixed random subset)")


def _clip_and_model_options(p: argparse.ArgumentParser) -> None:
    """How a clip is sampled, the tokenizer's region grid, and the BERT's size."""
    p.add_argument("--num-frames", type=positive_int, help="frames per clip = words per sentence")
    p.add_argument("--stride", type=positive_int, help="take every STRIDE-th frame")
    p.add_argument("--size", type=positive_int, help="frame side in pixels (the centre square, resized)")
    p.add_argument(
        "--grid",
        type=positive_int,
        help="the tokenizer CNN's regions per frame = grid² (their features are concatenated)",
    )
    p.add_argument("--dim", type=positive_int, help="Transformer width (as minivb.train's, for --init-from)")
    p.add_argument("--depth", type=positive_int, help="Transformer layers")
    p.add_argument("--heads", type=positive_int, help="attention heads")


def _machine_options(p: argparse.ArgumentParser) -> None:
    """Workers, device, and whether the k400 tokenizer downloads ImageNet weights."""
    p.add_argument("--workers", type=nonnegative_int, help="DataLoader workers for decoding (k400 default: cores − 1)")
    p.add_argument("--device", choices=DEVICES, help="auto = cuda if available (default: auto)")
    p.add_argument(
        "--no-pretrained",
        dest="pretrained",
        action="store_false",
        help="k400: a random tokenizer CNN instead of ImageNet weights (no download)",
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m minivb.pretrain``: 0 on success or after SIGTERM, 130 after Ctrl-C, 2 on a usage error."""
    given = vars(build_parser().parse_args(argv))

    def work() -> int:
        try:
            pretrain(given)
        except (Stopped, KeyboardInterrupt) as e:
            name = e.signal if isinstance(e, Stopped) else "SIGINT"
            out = getattr(e, "out", None) or given.get("resume") or given.get("out")
            if out is not None and (Path(out) / "words.pt").is_file():  # the vocabulary (and epochs) are kept
                kept = f"{e.epochs_done} finished epoch(s) kept; " if isinstance(e, Stopped) and e.epochs_done else ""
                print(
                    f"\nstopped by {name}; {kept}continue with: python -m minivb.pretrain --resume {out}",
                    file=sys.stderr,
                )
            else:  # stopped before the vocabulary was built: nothing to continue from
                print(
                    f"\nstopped by {name} before the vocabulary was built; run the same command again", file=sys.stderr
                )
            return 130 if name == "SIGINT" else 0
        return 0

    return run_main(work)


if __name__ == "__main__":
    raise SystemExit(main())
