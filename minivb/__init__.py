"""minivb — a VideoBERT-style video Transformer, built one notebook at a time.

The lesson (``video``, ``encoder``, ``attention``, ``transformer``, ``model``, …: what the notebooks build) stands
on plumbing only; the data (``data/``), the engine (``engine/``) and the commands (``python -m minivb.train`` and
friends, which parse arguments, call the library and print) stand on it. docs/layers.md is the map.

``minivb.load_checkpoint(path)`` → ``(model, class names)`` from a checkpoint written by
``python -m minivb.train``.
"""

__version__ = "0.1.0"

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

# python -m minivb.<command>: a Ctrl-C while PyTorch loads (seconds) could land inside its C++ code and abort, or be
# lost. It waits, blocked, until the command's run_main lets it in (plumbing.cli), then ends the command in one line.
_COMMANDS = {"train", "evaluate", "predict", "retrieve", "summarize", "pretrain", "bench", "data.toy", "data.kinetics"}
_argv = getattr(sys, "orig_argv", [])
if sys.argv[:1] == ["-m"] and "-m" in _argv[:-1] and _argv[_argv.index("-m") + 1].removeprefix("minivb.") in _COMMANDS:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def _interrupted(kind, value, traceback, _default=sys.excepthook):  # (a Ctrl-C before the mask, say)
        if issubclass(kind, KeyboardInterrupt):
            print("\ninterrupted", file=sys.stderr)
        else:
            _default(kind, value, traceback)

    sys.excepthook = _interrupted

# Before torch is first imported (libgomp, PyTorch's OpenMP on Linux, reads it once, when torch loads it): a thread
# that waits for the next parallel op spins 1 000 times, not 300 000 (milliseconds), before it sleeps. Beside another
# busy process the default spinning slows toy training ~3×; this keeps it near its share of the cores and costs
# 5–12% with the cores to itself (0.88–0.95× measured: python -m minivb.bench contention). Any wait setting in the
# environment wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "1000"
# Before OpenCV is first imported (by whichever module comes first): FFmpeg's and OpenCV's own complaints about a
# file go to stderr; minivb turns every failure into one VideoDecodeError line instead (minivb.video).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

__all__ = ["load_checkpoint", "__version__"]


def __getattr__(name: str):
    """``minivb.load_checkpoint`` loads the checkpoint code on first use: ``import minivb.attention`` stays light."""
    if name == "load_checkpoint":
        from .engine.checkpoint import load_checkpoint

        return load_checkpoint
    raise AttributeError(f"module 'minivb' has no attribute {name!r}")
