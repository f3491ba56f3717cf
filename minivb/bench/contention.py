"""``python -m minivb.bench contention``: clips per second of the toy model's training step with the cores to itself
and beside another busy process, under libgomp's default wait policy, under minivb's fix, passive, and on one thread.

PyTorch's CPU wheels on Linux run their parallel ops on a GNU OpenMP (libgomp) thread team. Unless
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` says otherwise, a thread that waits (for the next op, or at the barrier
that ends one) first busy-waits, 300 000 spins (milliseconds), then sleeps. With the cores to itself that saves
wake-ups; beside a busy neighbour, a thread spins on a core while the thread it waits for is descheduled, so the
step burns more CPU per clip and slows down far more than the share of the cores it loses. libgomp reads its
settings once, when torch is loaded, so ``import minivb`` sets ``GOMP_SPINCOUNT=1000`` (unless the environment sets
a wait policy) before it imports torch; ``OMP_WAIT_POLICY=PASSIVE`` (spin count 0) sleeps at once, which costs
more wake-ups when the cores are free.

Every measurement is a fresh process: the model of ``--preset toy`` (overrides as for ``loader``), AdamW, a fixed
random uint8 batch ``(B, T, 3, size, size)``, ``--warmup`` untimed steps, then steps for ``--seconds`` (at least 2).
Settings: ``default`` (torch imported before minivb, no ``OMP_WAIT_POLICY``/``GOMP_SPINCOUNT``: libgomp's defaults),
``fix`` (minivb imported first, as ``python -m minivb.train`` does), ``passive`` (``OMP_WAIT_POLICY=PASSIVE``),
``1-thread`` (default + ``torch.set_num_threads(1)``). Neighbours: ``none``; ``spin``, one Python busy loop;
``matmul``, a torch matmul loop on every core (libgomp defaults).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

from ..data import registry
from ..plumbing.cli import UsageError, nonnegative_int, number, positive_int
from .report import LiveTable, add_overrides, fmt, fmt_range, machine_facts, ratios, summarize, usable_cpus

SETTINGS = ("default", "fix", "passive", "1-thread")
NEIGHBOURS = ("none", "spin", "matmul")
OVERRIDES = ("encoder", "size", "num_frames", "grid", "dim", "depth", "heads", "batch_size")
_OMP = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# The worker: torch first (libgomp's defaults, whatever minivb would set) or minivb first (the fix).
_WORKER = """import json, sys
cfg = json.loads(sys.argv[1])
if cfg["setting"] != "fix":
    import torch
from minivb.bench.contention import measure_steps
print(json.dumps(measure_steps(cfg)))
"""
_READY = "import sys; print('ready', flush=True); sys.stdout.close()\n"
_NEIGHBOUR_CODE = {
    "spin": _READY + "while True: pass",
    "matmul": "import torch; torch.set_num_threads({cpus}); a = torch.randn(512, 512); a @ a\n"
    + _READY
    + "while True: a @ a",
}


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (Linux ``/proc/stat``), or None."""
    try:
        with open("/proc/stat") as f:
            t = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(t) - t[3] - t[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def measure_steps(cfg: dict) -> dict:
    """In the worker: training steps of the toy model on one fixed batch → clips/s, CPU cores used by this process
    and by everything else on the machine (``others``: None off Linux) while it was timed."""
    import torch

    from .loader import build_step

    if cfg["setting"] == "1-thread":
        torch.set_num_threads(1)
    s = dict(registry.get(None).preset, pretrained=False, compile=False, seed=0) | cfg["overrides"]
    torch.manual_seed(0)
    _, step = build_step(s, 8, torch.device("cpu"))
    videos = torch.randint(0, 256, (s["batch_size"], s["num_frames"], 3, s["size"], s["size"]), dtype=torch.uint8)
    labels = torch.randint(0, 8, (s["batch_size"],))  # (B,)
    for _ in range(cfg["warmup"]):
        step(videos, labels)
    busy0, cpu0, t0, steps = _busy_seconds(), time.process_time(), time.perf_counter(), 0
    while steps < 2 or time.perf_counter() - t0 < cfg["seconds"]:
        step(videos, labels)
        steps += 1
    wall, busy = time.perf_counter() - t0, _busy_seconds()
    own = (time.process_time() - cpu0) / wall
    return {
        "clips_per_s": steps * s["batch_size"] / wall,
        "steps": steps,
        "threads": torch.get_num_threads(),
        "cores": own,
        "others": None if busy is None else max(0.0, (busy - busy0) / wall - own),
    }


def _clean_env() -> dict:
    """This environment without the libgomp wait settings (the child imports the same minivb: installed, or the
    working folder that ``python -c`` puts on its path, as ``python -m`` does)."""
    return {k: v for k, v in os.environ.items() if k not in _OMP}


@contextlib.contextmanager
def _neighbour(name: str):
    """A busy process on the same cores (or none) for the duration of the block."""
    if name == "none":
        yield
        return
    code = _NEIGHBOUR_CODE[name].format(cpus=usable_cpus())
    proc = subprocess.Popen([sys.executable, "-c", code], env=_clean_env(), stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout.readline().strip() != "ready":
            raise UsageError(f"the {name} neighbour did not start")
        time.sleep(0.2)
        yield
    finally:
        proc.kill()
        proc.wait()


def _worker(setting: str, opts) -> dict:
    cfg = {
        "setting": setting,
        "seconds": opts.seconds,
        "warmup": opts.warmup,
        "overrides": {k: getattr(opts, k) for k in OVERRIDES if getattr(opts, k) is not None},
    }
    env = _clean_env() | ({"OMP_WAIT_POLICY": "PASSIVE"} if setting == "passive" else {})
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, json.dumps(cfg)], env=env, capture_output=True, text=True, timeout=600
    )
    if proc.returncode:
        raise UsageError(f"the {setting} worker failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_contention(opts, argv: list[str]) -> dict:
    """The ``contention`` subcommand → its results (also printed: in the last repeat, each neighbour's rows as
    soon as they are measured)."""
    settings = list(dict.fromkeys(opts.settings))
    neighbours = ["none", *[n for n in dict.fromkeys(opts.neighbours) if n != "none"]]  # first: every ratio needs it
    ref = settings[0]
    overrides = "".join(f", {k}={getattr(opts, k)}" for k in OVERRIDES if getattr(opts, k) is not None)
    notes = [
        f"model: the toy preset{overrides}; {opts.warmup} warm-up steps, then steps for {opts.seconds} s (at least 2), "
        f"× {opts.repeats} repeats, each in a fresh process",
        f"neighbours: spin = one Python busy loop; matmul = a 512×512 torch matmul loop on {usable_cpus()} "
        f"threads (libgomp defaults)",
        f"reference: {ref}, idle, in the same repeat; fair share with one busy neighbour on {usable_cpus()} "
        f"cores ≈ the 1-thread idle speed",
    ]
    keys = ("seconds", "warmup", "repeats", "settings", "neighbours", *OVERRIDES)
    result = {"benchmark": "contention", "machine": machine_facts(argv)}
    result |= {"settings": {k: getattr(opts, k) for k in keys}, "notes": notes}
    runs = {(s, n): [] for n in neighbours for s in settings}
    headers = [*HEADERS[:4], f"/ {ref} idle", *HEADERS[4:]]
    with LiveTable(result, headers, lambda r: [_cells(r)], len(runs) * opts.repeats, "run", left=2) as table:
        for r in range(opts.repeats):  # interleaved: every repeat measures every cell, with the same neighbour running
            for n in neighbours:
                with _neighbour(n):
                    for s in settings[r % len(settings) :] + settings[: r % len(settings)]:  # rotate the order
                        runs[(s, n)].append(_worker(s, opts))
                        table.tick()
                if r == opts.repeats - 1:  # the rows of this neighbour are complete (and the idle ones, measured first)
                    for s in settings:
                        table.add(_row(runs, s, n, ref))
    print(FOOTNOTE)
    return result


def _row(runs: dict, s: str, n: str, ref: str) -> dict:
    """A row of the results: setting ``s`` beside neighbour ``n``, over the repeats (``runs``: every cell's)."""
    got = runs[(s, n)]
    rate = [g["clips_per_s"] for g in got]
    return {
        "setting": s,
        "neighbour": n,
        "clips_per_s": summarize(rate) | {"repeats": rate},
        "vs_idle": ratios(rate, [g["clips_per_s"] for g in runs[(s, "none")]]),
        "vs_reference_idle": ratios(rate, [g["clips_per_s"] for g in runs[(ref, "none")]]),
        "cpu_ms_per_clip": summarize([1000 * g["cores"] / g["clips_per_s"] for g in got]),
        "cores": summarize([g["cores"] for g in got]),
        "others": summarize([g["others"] for g in got]),
        "threads": got[0]["threads"],
        "steps": [g["steps"] for g in got],
    }


HEADERS = ["setting", "neighbour", "clips/s", "/ own idle", "CPU ms per clip", "cores used", "others' cores"]
FOOTNOTE = (
    "\nclips/s: median over the repeats; ratios: median (min–max) of the per-repeat ratios. "
    "CPU ms per clip above the idle number: time spent spinning. others' cores: everything else "
    "on the machine while timed (the neighbour, and any other work, which skews the numbers)."
)


def _cells(r: dict) -> list[str]:
    return [
        r["setting"],
        r["neighbour"],
        fmt(r["clips_per_s"]["median"]),
        fmt_range(r["vs_idle"]),
        fmt_range(r["vs_reference_idle"]),
        fmt(r["cpu_ms_per_clip"]["median"]),
        fmt(r["cores"]["median"], 2),
        fmt(r["others"]["median"], 2),
    ]


def add_parser(sub, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The ``contention`` subcommand and its options (``parents``: the shared options)."""
    c = sub.add_parser(
        "contention",
        parents=parents,
        help="Training clips per second of the toy model alone and beside a busy process.",
        description="Measure how a busy neighbour (a Python loop, a torch matmul loop) slows the toy model's "
        "training step under libgomp's default wait policy, minivb's GOMP_SPINCOUNT=1000, OMP_WAIT_POLICY=PASSIVE "
        "and one thread; every measurement runs in a fresh process.",
    )
    c.add_argument(
        "--settings",
        nargs="+",
        choices=SETTINGS,
        default=list(SETTINGS),
        metavar="SETTING",
        help=f"thread settings, one or more of {', '.join(SETTINGS)}; the first is the reference (default: all)",
    )
    c.add_argument(
        "--neighbours",
        nargs="+",
        choices=NEIGHBOURS,
        default=list(NEIGHBOURS),
        metavar="NAME",
        help=f"busy neighbours, one or more of {', '.join(NEIGHBOURS)} (none is always measured; default: all)",
    )
    c.add_argument(
        "--seconds", type=number(float, 0.0, False), default=4.0, help="timed seconds per measurement (default: 4)"
    )
    c.add_argument("--warmup", type=nonnegative_int, default=2, help="untimed steps first (default: 2)")
    c.add_argument("--repeats", type=positive_int, default=3, help="timed repeats (default: 3)")
    m = c.add_argument_group("overrides of the toy preset (as python -m minivb.train takes them)")
    add_overrides(m, ("--encoder", "--size", "--num-frames", "--grid", "--dim", "--depth", "--heads"))
    m.add_argument("--batch-size", type=positive_int, help="clips per step")
    return c
