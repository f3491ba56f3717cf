"""Fixtures shared by the test files.

``toy``: a tiny toy set, made once per session (read-only: copy it, or use ``toy_copy``, to break files).
``one_line_error``: a command line's ``main`` must fail with exit status 2 and one ``error: …`` line.
``run_module``: ``python -m MODULE ARGS`` in a subprocess (one OpenMP thread, a timeout).
``server``: a loopback HTTP server.
``tiny_run``: the run folder of a tiny model trained for 2 epochs on ``toy`` by the real trainer (read-only).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# tests/videos.py (test-video makers) and tests/httpserver.py (a loopback HTTP server) are plain modules.
sys.path.insert(0, str(Path(__file__).parent))

from httpserver import Server  # noqa: E402

# The ToyConfig of ``toy``: 8 classes × (2 train + 1 val) videos of 8 frames, 64×64 → 16 train / 8 val videos.
TOY = dict(train_per_class=2, val_per_class=1, frames=8)


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> Path:
    """The root of a toy set made with ``ToyConfig(**TOY)`` (16 train / 8 val videos of 8 frames): shared, do not
    modify."""
    from minivb.data.toy import ToyConfig, generate

    return generate(tmp_path_factory.mktemp("toy"), ToyConfig(**TOY))


# A model small enough to train in seconds: 4 frames of 32×32, one layer of width 32.
TINY = "--epochs 2 --batch-size 2 --num-frames 4 --stride 1 --size 32 --dim 32 --depth 1 --heads 2".split()


@pytest.fixture(scope="session")
def tiny_run(toy, tmp_path_factory) -> Path:
    """A run folder (config.json, last.pt, best.pt, summary.json) of ``TINY`` trained on ``toy``: shared, do not
    modify."""
    import torch

    from minivb.engine.training import train
    from minivb.train import parse_args

    out = tmp_path_factory.mktemp("runs") / "tiny"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from more threads on a shared machine
    try:
        train(parse_args(["--data-root", str(toy), "--out", str(out), *TINY]))
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture
def toy_copy(toy, tmp_path) -> Path:
    """A private copy of ``toy`` at ``tmp_path / "toy"``, free to break."""
    return Path(shutil.copytree(toy, tmp_path / "toy"))


@pytest.fixture
def one_line_error(capsys):
    """``check(main, argv, match="")``: ``main(argv)`` exits 2 with one stderr line ``error: …match…`` → that line.

    Exit 2 may be returned or raised (argparse's ``SystemExit``); a traceback or a second line fails.
    """

    def check(main, argv, match: str = "") -> str:
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2, err
        assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], err
        return lines[0]

    return check


@pytest.fixture(scope="session")
def run_module():
    """``run(module, *args, timeout=120, **kw)`` → ``subprocess.CompletedProcess`` of ``python -m module args``
    (text output).

    One OpenMP thread: tiny models gain nothing from more, and on a shared machine threads that wait for each
    other are slow.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def run(module: str, *args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", module, *map(str, args)],
            capture_output=True,
            text=True,
            env=kw.pop("env", env),
            timeout=timeout,
            **kw,
        )

    return run


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server over ``tmp_path/www`` (see tests/httpserver.py)."""
    root = tmp_path / "www"
    root.mkdir()
    srv = Server(root)
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join(timeout=5)
