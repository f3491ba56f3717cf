"""``python -m minivb.train``: train VideoBERT on the toy set (default, CPU, minutes) or Kinetics-400 (GPUs, DDP).

    python -m minivb.train                                   # toy set, generated if missing
    python -m minivb.train --subset k400                      # data/kinetics400, prepared by minivb.data.kinetics
    torchrun --nproc_per_node=8 -m minivb.train --subset k400
    python -m minivb.train --resume runs/toy-20250101-120000  # continue exactly where it stopped

The command parses the options and calls :func:`minivb.engine.training.train` (the run) — the loop is
:mod:`minivb.loop`, the data sets and their presets :mod:`minivb.data.registry`. Exit status: 0 on
success or after SIGTERM (a checkpoint saved), 130 after Ctrl-C, 1 if training diverged or ran out of
memory, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from .data.registry import DATASETS, PRESETS
from .engine.training import train
from .loop import Diverged, TrainState
from .plumbing.cli import Parser, add_decode_option, fraction, nonnegative_int, number, positive_int, run_main, seed
from .plumbing.device import DEVICES

# --------------------------------------------------------------------------- options


_pos_float, _nonneg_float = number(float, 0.0, True), number(float, 0.0, False)


def _smoothing(text: str) -> float:
    value = _nonneg_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line: three groups of options, none with a default (the preset fills in what is not given)."""
    presets = "\n".join(
        f"  {name}: " + ", ".join(f"{k}={'auto' if v is None else v}" for k, v in p.items())
        for name, p in PRESETS.items()
    )
    p = Parser(
        prog="python -m minivb.train",
        description="Train VideoBERT on the toy set (default) or Kinetics-400; writes config.json, metrics.csv, "
        "curves.png, last.pt, best.pt and summary.json to --out.",
        epilog=f"preset defaults (any option above overrides them):\n{presets}\n\n"
        "distributed: torchrun --nproc_per_node=N -m minivb.train ... (--batch-size is per process)",
        argument_default=argparse.SUPPRESS,
    )
    _data_and_run_options(p.add_argument_group("data and run"))
    _clip_and_model_options(p.add_argument_group("clips and model"))
    _optimisation_options(p.add_argument_group("optimisation"))
    return p


def _data_and_run_options(g) -> None:
    """The data set and its loading, the run folder (new or resumed), seed, device, and where to start from."""
    g.add_argument("--subset", choices=tuple(DATASETS), help="data set (default: toy)")
    g.add_argument(
        "--data-root",
        help="data folder (default: data/toy, or data/kinetics400 for k400); the toy set is generated there if missing",
    )
    g.add_argument(
        "--preset", choices=tuple(PRESETS), help="default settings to start from (default: the subset's name)"
    )
    g.add_argument(
        "--out", help="output folder (default: runs/<subset>-<date>-<time>); refused if it already holds a run"
    )
    g.add_argument("--resume", help="continue a run: a checkpoint file, or a run folder (uses its last.pt)")
    g.add_argument(
        "--save-every", type=nonnegative_int, help="also save last.pt every N steps (0: only at the end of each epoch)"
    )
    g.add_argument("--seed", type=seed, help="seed for model init, data order and augmentation (default: 0)")
    g.add_argument("--device", choices=DEVICES, help="auto = cuda if available, else cpu (default: auto)")
    g.add_argument(
        "--workers",
        type=nonnegative_int,
        help="DataLoader worker processes (0: load in the main process; "
        "k400 default: this process's share of the cores, less one)",
    )
    g.add_argument("--preload", action=argparse.BooleanOptionalAction, help="decode every video into memory first")
    add_decode_option(g, default=argparse.SUPPRESS)  # a resumed run keeps its own choice unless one is given
    g.add_argument(
        "--gpu-share",
        type=fraction,
        help="with --decode gpu: the share of each batch's clips decoded on the GPU, the workers decode the rest "
        "(default: 1; a resumed run keeps its own unless one is given)",
    )
    g.add_argument(
        "--limit-train", type=positive_int, help="use only N training videos (a fixed random subset; quick runs)"
    )
    g.add_argument("--limit-val", type=positive_int, help="use only N validation videos")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        help='at the end, fit the temperature and the "none of these" thresholds that predict uses (default: on; '
        "--no-calibrate saves that time: predict then prints plain probabilities and rejects nothing)",
    )
    g.add_argument(
        "--init-from",
        help="start from a checkpoint of python -m minivb.pretrain (pretrain.pt or its folder): its "
        "Transformer, time embedding and [CLS] token are copied; the CNN and the output layer start fresh",
    )


def _clip_and_model_options(g) -> None:
    """How a clip is sampled, and the model's encoder and Transformer."""
    g.add_argument("--num-frames", type=positive_int, help="frames per clip")
    g.add_argument("--stride", type=positive_int, help="take every STRIDE-th frame")
    g.add_argument("--size", type=positive_int, help="frame side in pixels after cropping")
    g.add_argument(
        "--flips",
        action=argparse.BooleanOptionalAction,
        help="mirror training clips at random (default: on); what a mirror does to a label is the data set's rule: "
        "the toy set swaps its twins, other data keep the label. --no-flips for classes that a mirror turns into "
        "each other (e.g. swiping left / right)",
    )
    g.add_argument("--encoder", choices=("small", "resnet18", "resnet50"), help="per-frame CNN")
    g.add_argument("--pretrained", action=argparse.BooleanOptionalAction, help="ImageNet weights for a ResNet encoder")
    g.add_argument("--grid", type=positive_int, help="regions per frame = grid²")
    g.add_argument("--dim", type=positive_int, help="Transformer width")
    g.add_argument("--depth", type=positive_int, help="Transformer layers N")
    g.add_argument("--heads", type=positive_int, help="attention heads")
    g.add_argument("--dropout", type=_smoothing, help="dropout rate in [0, 1)")
    g.add_argument(
        "--no-time-embedding",
        dest="time_embedding",
        action="store_false",
        help="drop the time embedding: the order-blind model (near 50%% within each toy twin pair)",
    )


def _optimisation_options(g) -> None:
    """Epochs, batch, the AdamW schedule and label smoothing."""
    g.add_argument("--epochs", type=positive_int, help="training epochs")
    g.add_argument("--batch-size", type=positive_int, help="clips per step (per process under torchrun)")
    g.add_argument("--lr", type=_pos_float, help="peak learning rate (AdamW)")
    g.add_argument("--warmup-epochs", type=_nonneg_float, help="linear warmup, then cosine decay to 0")
    g.add_argument("--weight-decay", type=_nonneg_float, help="AdamW weight decay (not on norms, biases, embeddings)")
    g.add_argument("--label-smoothing", type=_smoothing, help="label smoothing in [0, 1)")


def parse_args(argv: list[str] | None = None) -> dict:
    """Command line → the options given explicitly (a dict; :func:`minivb.engine.training.train` applies the preset)."""
    return vars(build_parser().parse_args(argv))


def main(argv: list[str] | None = None, on_step: Callable[[TrainState], None] | None = None) -> int:
    """``python -m minivb.train``: 0 on success or after SIGTERM, 130 after Ctrl-C, 1 if training diverged,
    2 on a usage error."""

    def work() -> int:
        try:
            summary = train(parse_args(argv), on_step)
        except Diverged as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 130 if summary.get("signal") == "SIGINT" else 0

    return run_main(
        work,
        lower="--batch-size, --num-frames or --size (or --dim, --depth) and start again (the last checkpoint is kept)",
    )


if __name__ == "__main__":
    raise SystemExit(main())
