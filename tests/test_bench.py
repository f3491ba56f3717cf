"""python -m minivb.bench: the readers deliver the frames asked for, the numbers are there and positive,
the JSON is strict, bad options are one line with exit status 2. No speed thresholds (machines are noisy).
The FLOP counts match a count by hand, layer by layer.

Everything runs on tiny inputs: a 64×64 H.264 clip of 80 stamped frames, a toy set of 16 videos,
a Kinetics-shaped folder of 2 × 2 copies of that clip.
"""

import argparse
import dataclasses
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from videos import checkerboard_video, read_stamp, stamped_frames, write_h264

from minivb.bench import __main__ as bench_main
from minivb.bench import contention, decode, flops, loader, ood
from minivb.bench.__main__ import main
from minivb.bench.decode import (
    NotFrameExact,
    _bench_style,
    decode_summary,
    pyav_seek,
    pyav_sequential,
    write_test_video,
)
from minivb.data.framestore import convert_video, read_store_frames
from minivb.plumbing.files import write_json
from minivb.video import read_frames, video_info

ENV = dict(os.environ, OMP_NUM_THREADS="1")
TINY_MODEL = (
    "--encoder small --size 32 --grid 2 --num-frames 4 --dim 32 --depth 1 "
    "--heads 2 --batch-size 2 --steps 2 --warmup 1 --repeats 1"
).split()


def _strict_json(path):
    def reject(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=reject)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """H.264 with B-frames and a keyframe every 24 frames; frame i shows i in its top band."""
    return write_h264(tmp_path_factory.mktemp("bench") / "stamped.mp4", stamped_frames(80), fps=25)


# --------------------------------------------------------------------------- readers


@pytest.mark.parametrize("reader", [pyav_sequential, pyav_seek])
def test_pyav_readers_are_frame_exact(clip, reader):
    pytest.importorskip("av")
    idx = [50, 5, 30, 31, 77, 24, 50]  # unsorted, repeated, across keyframes (0, 24, 48, 72)
    frames = reader(clip, idx)
    assert frames.shape == (len(idx), 64, 64, 3) and frames.dtype == np.uint8
    assert [read_stamp(f) for f in frames] == idx
    assert np.abs(frames.astype(int) - read_frames(clip, idx)).max() <= 2


@pytest.mark.parametrize("reader", [pyav_sequential, pyav_seek])
def test_pyav_readers_refuse_missing_frames(clip, reader):
    pytest.importorskip("av")
    with pytest.raises(NotFrameExact):
        reader(clip, [10, 200])


def test_generated_test_video(tmp_path):
    codec = write_test_video(tmp_path / "t.mp4", 96, 64, frames=40)
    info = video_info(tmp_path / "t.mp4")
    assert codec in ("h264", "mp4v") and (info.width, info.height, info.frames) == (96, 64, 40)


# --------------------------------------------------------------------------- decode


def test_decode_numbers_and_frame_checks(clip, tmp_path, run_module):
    pytest.importorskip("av")
    out = tmp_path / "decode.json"
    proc = run_module(
        "minivb.bench", "decode", "--videos", str(clip), "--repeats", "2", "--clips", "2", "--json", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "| file | style |" in proc.stdout
        and "| stamped.mp4 | 64×64 | 80 |" in proc.stdout
        and "one core" in proc.stdout
    )
    data = _strict_json(out)
    assert {"benchmark", "machine", "settings", "notes", "results"} <= data.keys()
    assert data["machine"]["command"].startswith("python -m minivb.bench decode --videos")
    (f,) = data["results"]
    assert (f["width"], f["height"], f["frames"]) == (64, 64, 80)
    for style in ("train", "eval"):
        s = f["styles"][style]
        for reader in ("minivb", "pyav_seq", "pyav_seek", "store"):
            ms = s["ms_per_clip"][reader]
            assert len(ms["repeats"]) == 2 and 0 < ms["min"] <= ms["median"] <= ms["max"]
        for reader in ("pyav_seq", "pyav_seek"):  # the same frames (colour conversion may differ by a level or two)
            check = s["checks"][reader]
            assert check["ok"] is True and check["max_abs_diff"] <= 2 and check["equal"] == (check["max_abs_diff"] == 0)
        assert s["checks"]["store"]["ok"] and s["checks"]["store"]["mean_abs_diff"] < 5  # JPEG at quality 90
        for name in ("pyav_seq/minivb", "pyav_seek/minivb", "minivb/store"):
            assert s["ratios"][name]["median"] > 0


def test_a_reader_that_is_not_frame_exact_is_reported_not_timed(clip, tmp_path):
    store = tmp_path / "s.jpgs"
    convert_video(clip, store, step=1)

    def off_by_one(path, idx):
        return read_frames(path, np.asarray(idx) + 1)

    def lost(path, idx):
        raise NotFrameExact("seek landed after the frame")

    readers = {
        "minivb": (read_frames, clip),
        "pyav_seq": (off_by_one, clip),
        "pyav_seek": (lost, clip),
        "store": (read_store_frames, store),
    }
    result = _bench_style(readers, [np.arange(0, 16, 4)], clips=1, repeats=2)
    assert result["checks"]["pyav_seq"]["ok"] is False and result["checks"]["pyav_seq"]["max_abs_diff"] > 100
    assert result["checks"]["pyav_seek"] == {"ok": False, "reason": "NotFrameExact: seek landed after the frame"}
    for name in ("pyav_seq", "pyav_seek"):
        assert result["ms_per_clip"][name]["median"] is None and result["ratios"][f"{name}/minivb"]["median"] is None
    assert result["ms_per_clip"]["minivb"]["median"] > 0 and result["ratios"]["minivb/store"]["median"] > 0
    table = decode_summary(
        [{"name": "x.mp4", "width": 64, "height": 64, "frames": 80, "fps": 25.0, "styles": {"train": result}}]
    )
    assert table.count("not frame-exact") == 2


def test_json_is_strict(tmp_path):
    write_json(
        tmp_path / "x.json", {"nan": float("nan"), "inf": [float("inf")], "np": np.float32(1.5), "n": np.int64(3)}
    )
    assert _strict_json(tmp_path / "x.json") == {"nan": None, "inf": [None], "np": 1.5, "n": 3}


def test_decode_without_pyav(clip, tmp_path):
    out = tmp_path / "decode.json"
    code = "import sys; sys.modules['av'] = None; from minivb.bench.__main__ import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "decode",
            "--videos",
            str(clip),
            "--repeats",
            "1",
            "--clips",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "PyAV is not installed" in proc.stdout
    s = _strict_json(out)["results"][0]["styles"]["train"]
    assert s["ms_per_clip"].keys() == {"minivb", "store"} and s["ms_per_clip"]["minivb"]["median"] > 0
    assert "pyav_seq/minivb" not in s["ratios"] and s["ratios"]["minivb/store"]["median"] > 0


# --------------------------------------------------------------------------- loader


def _check_loader(data, sources, files):
    assert data["benchmark"] == "loader" and data["settings"]["pretrained"] is False
    assert [(r["source"], r["decode"]) for r in data["results"]] == sources
    for r in data["results"]:
        assert r["files"] == files
        for m in ("loader", "model", "training"):
            c = r["clips_per_s"][m]
            assert len(c["repeats"]) == 1 and c["median"] > 0
        for q in ("training/model", "loader/model"):
            assert r["ratios"][q]["median"] > 0


def test_loader_toy(toy, tmp_path, capsys):
    out = tmp_path / "loader.json"
    assert (
        main(["loader", "--preset", "toy", "--data-root", str(toy), "--workers", "0", *TINY_MODEL, "--json", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "| source | decode | files | loader alone clips/s |" in printed and "| toy | cpu | 16 |" in printed
    data = _strict_json(out)
    _check_loader(data, [("toy", "cpu")], 16)
    assert data["settings"]["preload"] is True and data["settings"]["size"] == 32  # the preset's, and an override


def test_loader_k400_prepared_and_originals(clip, tmp_path, capsys):
    pytest.importorskip("minivb.data.kinetics")
    out = tmp_path / "loader.json"
    args = [
        "loader",
        "--preset",
        "k400",
        "--videos",
        str(clip),
        "--classes",
        "2",
        "--per-class",
        "2",
        "--workers",
        "1",
        "--device",
        "cpu",
        "--decode",
        "cpu",
        "gpu",  # on the CPU: the gpu path's code with torchvision's CPU decoder
        "--gpu-share",
        "1",
        "0.5",  # half of each batch decoded by the workers
        *TINY_MODEL,
        "--json",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| prepared | cpu | 4 |" in printed and "| prepared | gpu | 4 |" in printed and "| gpu 0.5 |" in printed
    assert "| originals | cpu | 4 |" in printed and "decode gpu: not for the original videos" in printed
    assert "| clips/s of decode gpu / cpu (frame stores) |" in printed and "| training, gpu 0.5 |" in printed
    data = _strict_json(out)
    _check_loader(data, [("prepared", "cpu"), ("prepared", "gpu"), ("prepared", "gpu 0.5"), ("originals", "cpu")], 4)
    assert [r["gpu_share"] for r in data["results"]] == [1, 1, 0.5, 1] and data["settings"]["gpu_share"] == [1, 0.5]
    ratios = data["gpu/cpu decoding"]
    assert ratios.keys() == {"gpu", "gpu 0.5"} and ratios["gpu 0.5"]["training"]["median"] > 0
    assert data["settings"]["decode"] == ["cpu", "gpu"]
    assert data["settings"]["workers"] == 1 and data["settings"]["stride"] == 4


def test_loader_alone_builds_no_model(toy, tmp_path, capsys):
    out = tmp_path / "loader.json"
    assert (
        main(
            [
                "loader",
                "--preset",
                "toy",
                "--data-root",
                str(toy),
                "--measure",
                "loader",
                *TINY_MODEL,
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert "not built" in capsys.readouterr().out
    (row,) = _strict_json(out)["results"]
    assert (
        row["clips_per_s"].keys() == {"loader"} and row["clips_per_s"]["loader"]["median"] > 0 and row["ratios"] == {}
    )


# --------------------------------------------------------------------------- flops

TINY = dict(encoder="small", num_frames=2, size=64, grid=2, dim=16, depth=1, heads=2)


def _hand_count(s: dict) -> dict:
    """FLOPs of a small-CNN VideoBERT by hand (2 per multiply-add; norms, softmax, GELU, additions: 0)."""
    T, d, L, R = s["num_frames"], s["dim"], 1 + s["num_frames"] * s["grid"] ** 2, s["grid"] ** 2
    cnn, side, c_in = 0, s["size"], 3
    for c_out in (16, 32, 64, 128):  # SmallCNN's four blocks
        side //= 2  # 3×3 convolution, stride 2, padding 1
        cnn += 2 * T * side * side * c_out * c_in * 9
        c_in = c_out
    hidden = round(4.0 * d)  # mlp_ratio 4
    layer = 4 * 2 * L * d * d + 2 * 2 * L * d * hidden + 4 * L * L * d  # q, k, v, out; MLP; QKᵀ and A·V
    rest = 2 * (T * R) * c_in * d + s["depth"] * layer + 2 * d * 400  # proj (not on [CLS]); layers; head on [CLS]
    return {"cnn": cnn, "transformer_head": rest, "attention": s["depth"] * 4 * L * L * d}


@pytest.mark.parametrize("changes", [{}, {"depth": 2, "dim": 24, "heads": 3, "num_frames": 3}])
def test_flops_match_a_count_by_hand(changes):
    s = TINY | changes
    row = flops.count_flops(s)
    hand = _hand_count(s)
    f = row["flops"]
    assert row["tokens"] == 1 + s["num_frames"] * 4
    assert {k: f[k] for k in hand} == hand  # FlopCounterMode counts matmuls and convolutions only: exact
    assert f["total"] == f["cnn"] + f["transformer_head"] == f["counted"] + f["attention"]
    model = flops.build_model(s)
    x = torch.zeros(1, s["num_frames"], 3, s["size"], s["size"])
    assert flops._count(model.encoder, x)[0] == f["cnn"]  # the encoder on its own, as in the same pass
    assert row["params"] == sum(p.numel() for p in model.parameters())


def test_fused_attention_is_what_the_counter_misses():
    check = flops.attention_check(TINY)
    L, d = check["tokens"], check["dim"]
    assert check["equal"] and check["missed"] == check["formula"] == 4 * L * L * d
    assert check["fused"] == 4 * 2 * L * d * d  # only the four projections


def test_flops_command(tmp_path, capsys, monkeypatch):
    from minivb.data import registry

    k400 = registry.DATASETS["k400"]
    monkeypatch.setitem(registry.DATASETS, "k400", dataclasses.replace(k400, preset=k400.preset | TINY))
    out = tmp_path / "flops.json"
    assert main(["flops", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| variant | encoder | T |" in printed and "| preset | small | 2 | 64² | 2 | 9 |" in printed
    assert "equal" in printed and "4·L²·d" in printed
    data = _strict_json(out)
    assert [r["variant"] for r in data["results"]] == [name for name, _ in flops.VARIANTS]
    assert data["attention_check"]["equal"] and data["results"][-1]["settings"]["encoder"] == "resnet50"
    assert len(data["reading"]) == 6 and all(line in printed for line in data["reading"])
    preset = data["results"][0]["flops"]
    assert preset["total"] == sum(_hand_count(TINY)[k] for k in ("cnn", "transformer_head"))


# --------------------------------------------------------------------------- contention


CONTENTION = (
    "contention --settings 1-thread --neighbours spin --seconds 0 --warmup 0 --repeats 1 "
    "--size 32 --num-frames 2 --dim 32 --depth 1 --heads 2 --batch-size 2"
).split()  # a tiny model, no wait: seconds


def test_contention_tiny(tmp_path, capsys):
    out = tmp_path / "contention.json"
    args = [*CONTENTION, "--json", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| setting | neighbour | clips/s |" in printed and "| 1-thread | spin |" in printed
    rows = _strict_json(out)["results"]
    assert [(r["setting"], r["neighbour"]) for r in rows] == [("1-thread", "none"), ("1-thread", "spin")]
    for r in rows:
        assert r["clips_per_s"]["median"] > 0 and r["steps"] == [2] and r["cpu_ms_per_clip"]["median"] > 0
        assert r["vs_idle"]["median"] > 0 and r["vs_reference_idle"]["median"] > 0
    assert rows[0]["vs_idle"]["median"] == rows[0]["vs_reference_idle"]["median"] == 1.0  # the reference itself
    assert rows[1]["vs_idle"] == rows[1]["vs_reference_idle"] and rows[0]["threads"] == rows[1]["threads"] == 1
    assert rows[1]["others"]["median"] is None or rows[1]["others"]["median"] > 0  # the neighbour was busy


@pytest.mark.parametrize(
    "given, spincount", [({}, "1000"), ({"OMP_WAIT_POLICY": "PASSIVE"}, "0"), ({"GOMP_SPINCOUNT": "20"}, "20")]
)
def test_import_minivb_shortens_the_spin_wait(given, spincount):
    """``import minivb`` before torch: libgomp starts with GOMP_SPINCOUNT=1000, unless the environment sets a wait."""
    env = {k: v for k, v in ENV.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | given
    code = "import os, minivb, torch; torch.ones(4) + 1; print(os.environ.get('GOMP_SPINCOUNT'))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env | {"OMP_DISPLAY_ENV": "VERBOSE"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == given.get("GOMP_SPINCOUNT", "1000" if not given else "None")
    if "GOMP_SPINCOUNT = " not in proc.stderr:
        pytest.skip("torch is not built with GNU OpenMP (libgomp) here")
    assert f"GOMP_SPINCOUNT = '{spincount}'" in proc.stderr  # what libgomp itself uses


# --------------------------------------------------------------------------- ood


def test_ood_tiny(tiny_run, tmp_path, capsys, one_line_error):
    """The table of every score on a tiny run, 2 held-out videos per class: strict JSON, AUROCs and shares in [0, 1],
    thresholds that keep at least --acceptance of the validation videos, a temperature in its range; the
    embedding-space rows after the logit rows, fitted on the tiny toy's 16 training videos."""
    from minivb.engine.calibration import T_RANGE

    out = tmp_path / "ood.json"
    one_line_error(
        main, ["ood", "--checkpoint", str(tiny_run), "--json", str(tiny_run / "last.pt"), "--force"], "inputs"
    )
    real = tmp_path / "real"  # --real: a folder of the user's videos, one more kind
    real.mkdir()
    checkerboard_video(real / "board.mp4")
    argv = ["--per-class", "2", "--workers", "0", "--json", str(out), "--real", str(real)]
    assert main(["ood", "--checkpoint", str(tiny_run), *argv]) == 0
    printed = capsys.readouterr().out
    assert "## minivb.bench ood" in printed and "| score | T | AUROC rotation | AUROC static | AUROC noise |" in printed
    assert "ECE (15 bins)" in printed and "| max_logit | — |" in printed
    assert "| mahalanobis | — |" in printed and "| knn (k=10) | — |" in printed
    assert "| mahalanobis (regions+cls) | — |" in printed and f"| {ood.RULE} | " in printed
    assert "fitted on the 16 training videos × 3 views" in printed
    data = _strict_json(out)
    assert {"benchmark", "machine", "settings", "notes", "results", "calibration"} <= data.keys()
    rows, c = data["results"], data["calibration"]
    scores = [(score, which is None) for score, which in ood.ROWS] + [(s, True) for s, _, _ in ood.EMBEDDING_ROWS]
    assert [(r["score"], r["temperature"] is None) for r in rows[:-1]] == scores
    assert [r.get("feature") for r in rows[len(ood.ROWS) : -1]] == [f for _, f, _ in ood.EMBEDDING_ROWS]
    assert [r["k"] for r in rows[len(ood.ROWS) : -1]] == [k for _, _, k in ood.EMBEDDING_ROWS]
    assert rows[len(ood.ROWS) + 1]["threshold"] <= 1  # knn: a cosine similarity
    assert rows[len(ood.ROWS)]["threshold"] <= 0  # mahalanobis: minus a squared distance
    rule = rows[-1]
    assert rule["score"] == ood.RULE and set(rule["auroc"].values()) == {None}  # two thresholds: no single score
    assert rule["temperature"] == c["temperature"]  # fitted as training fits it: the same T
    assert rule["rejected"]["real"] == 1  # a checkerboard is nothing like a toy scene
    for r in rows:
        assert set(r["auroc"]) == set(r["rejected"]) == {*ood.KINDS, "real"}
        aurocs = [v for v in r["auroc"].values() if v is not None]
        assert all(0 <= v <= 1 for v in [*aurocs, *r["rejected"].values(), *r["accepted"].values()])
        assert r["accepted"]["val"] >= 0.95  # the threshold is the ⌈0.95 · N⌉-th highest validation score
    assert T_RANGE[0] <= c["temperature"] <= T_RANGE[1] and c["fitted_on"]["videos"] == 8  # the tiny toy's val set
    assert all(0 <= c[s]["ece"][w] <= 1 for s in ("val", "held_out") for w in ("before", "after"))
    assert c["val"]["nll"]["after"] <= c["val"]["nll"]["before"] + 1e-12  # T minimizes the NLL where it was fitted


def test_ood_videos_are_what_they_say(tmp_path):
    """Static videos repeat one frame; noise videos are not constant; rotation videos are the --rotation pair."""
    from minivb.data.toy import ROTATION, ToyConfig
    from minivb.video import read_frames, video_info

    videos = ood.make_videos(tmp_path, ToyConfig(frames=6, size=32), per_class=1, seed=5)
    assert [len(videos[k]) for k in ("held_out", "rotation", "static", "noise")] == [8, 2, 8, 8]
    assert sorted(p.split("/")[-2] for p in videos["rotation"]) == sorted(ROTATION)
    static = read_frames(videos["static"][0], range(6)).astype(int)  # (6, 32, 32, 3)
    noise = read_frames(videos["noise"][0], range(6)).astype(int)
    assert video_info(videos["noise"][0]).frames == 6 and (video_info(videos["static"][0]).width == 32)
    assert np.abs(static - static[0]).mean() < 2 < np.abs(noise - noise[0]).mean()  # (mp4v: not bit-exact)


# --------------------------------------------------------------------------- command line


def test_help(capsys, run_module):
    proc = run_module("minivb.bench", "--help")
    assert proc.returncode == 0 and "usage: python -m minivb.bench" in proc.stdout and "decode" in proc.stdout
    for command, option in (
        ("decode", "--videos"),
        ("loader", "--data-root"),
        ("flops", "--preset"),
        ("contention", "--neighbours"),
        ("ood", "--acceptance"),
        ("language", "--fractions"),
    ):
        with pytest.raises(SystemExit) as stop:
            main([command, "--help"])
        assert stop.value.code == 0 and option in capsys.readouterr().out


def test_every_subcommand_says_what_it_does(capsys):
    """Issue 30: ``--help`` of a subcommand did not say what it measures; each now has a one-sentence help (in
    ``python -m minivb.bench --help``) and a description (in its own ``--help``)."""
    (sub,) = [a for a in bench_main.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    with pytest.raises(SystemExit):
        main(["--help"])
    top = " ".join(capsys.readouterr().out.split())
    assert {a.dest for a in sub._choices_actions} == bench_main.COMMANDS.keys()
    for action in sub._choices_actions:
        assert action.help.endswith(".") and action.help.count(". ") == 0 and action.help in top
        description = sub.choices[action.dest].description
        with pytest.raises(SystemExit):
            main([action.dest, "--help"])
        assert description and " ".join(description.split()) in " ".join(capsys.readouterr().out.split())


class _Terminal(io.StringIO):
    def isatty(self):  # tqdm draws its bar on a terminal only
        return True


LOADER_K400 = "loader --preset k400 --videos {clip} --classes 2 --per-class 2 --workers 0 --device cpu "
INTERRUPTED = [  # the arguments, the function that measures a row, the progress bar's unit, the first row
    ("decode --videos {clip} {clip} --repeats 1 --clips 1", decode, "_bench_file", "style", "| stamped.mp4 | train |"),
    (LOADER_K400 + " ".join(TINY_MODEL), loader, "_measure_source", "batch", "| prepared | cpu | 4 |"),
    ("flops", flops, "count_flops", "variant", "| preset | small | 2 | 64² |"),
    (" ".join(CONTENTION), contention, "_worker", "run", "| 1-thread | none |"),
]


@pytest.mark.parametrize("args, module, name, unit, row", INTERRUPTED, ids=[a.split()[0] for a, *_ in INTERRUPTED])
def test_rows_print_as_measured_and_ctrl_c_keeps_them(
    args, module, name, unit, row, clip, tmp_path, capsys, monkeypatch
):
    """Issue 30: a long benchmark printed nothing until it ended, and Ctrl-C lost every number. Now a progress
    bar runs on stderr, each row prints as soon as it is measured, and Ctrl-C (here: at the second row's
    measurement) keeps the rows printed and writes them to --json, marked interrupted, then exits 130."""
    command = args.split()[0]
    if command == "flops":
        from minivb.data import registry

        k400 = registry.DATASETS["k400"]
        monkeypatch.setitem(registry.DATASETS, "k400", dataclasses.replace(k400, preset=k400.preset | TINY))
    measure, printed = getattr(module, name), []

    def stop_at_the_second(*a, **kw):
        printed.append(capsys.readouterr().out)  # what was printed before this measurement
        if len(printed) == 2:
            raise KeyboardInterrupt
        return measure(*a, **kw)

    monkeypatch.setattr(module, name, stop_at_the_second)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    out = tmp_path / "partial.json"
    assert main([*args.format(clip=clip).split(), "--json", str(out)]) == 130
    assert f"## minivb.bench {command}" in printed[0] and row in printed[1]  # the first row, before the second began
    assert f"wrote {out} (interrupted" in capsys.readouterr().out
    assert f"{unit}/s]" in sys.stderr.getvalue() and sys.stderr.getvalue().endswith("\ninterrupted\n")
    data = _strict_json(out)
    assert data["interrupted"] is True and data["benchmark"] == command and len(data["results"]) == 1


@pytest.mark.parametrize(
    "args, says",
    [
        (["loader", "--data-root", "{tmp}/missing"], "--data-root"),
        (["decode", "--videos", "{tmp}/missing.mp4"], "--videos"),
        (["decode", "--repeats", "0"], "--repeats"),
        (["loader", "--json", "{tmp}/no/such/folder/out.json"], "/no/such/folder does not exist; make it first"),
        (["loader", "--preset", "imagenet"], "--preset"),
        (["loader", "--preset", "toy", "--gpu-share", "0.5"], "--gpu-share goes with --decode gpu"),
        (["loader", "--gpu-share", "1.5"], "must be <= 1"),
        (["flops", "--preset", "toy"], "--preset"),
        (["flops", "--json", "{tmp}/no/such/folder/out.json"], "--json"),
        (["contention", "--settings", "fast"], "--settings"),
        (["ood", "--checkpoint", "{tmp}/missing"], "--checkpoint"),
        (["ood", "--checkpoint", "{tmp}", "--acceptance", "1.5"], "--acceptance"),
        (["language", "--data-root", "{tmp}/toy", "--fractions", "0.5"], "--fractions must include 1"),
        (["language", "--data-root", "{tmp}/toy", "--fractions", "1", "1.5"], "--fractions must be in (0, 1]"),
        ([], "required"),
    ],
)
def test_bad_options_one_line_exit_2(tmp_path, one_line_error, args, says):
    one_line_error(main, [a.format(tmp=tmp_path) for a in args], says)  # argparse's errors and ours alike


def test_an_output_file_under_a_file_names_that_file_as_given(tmp_path, one_line_error, monkeypatch):
    """Issue 30, rule 6: --json afile/x.json, with afile a file, said "the folder /abs/afile does not exist; make it
    first". Every command's output file now says that afile is a file, with the path as given."""
    from minivb.plumbing import runs
    from minivb.plumbing.checks import UsageError

    (tmp_path / "afile").write_text("a file")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(bench_main.COMMANDS, "contention", lambda *a: pytest.fail("the benchmark ran"))
    err = one_line_error(main, [*CONTENTION, "--json", "afile/x.json"], "--json afile/x.json: ")
    assert "afile is a file, not a folder" in err and str(tmp_path) not in err and "does not exist" not in err
    with pytest.raises(UsageError, match="^--out afile/sub/g.pt: cannot write there: afile is a file, not a folder"):
        runs.output_file("afile/sub/g.pt", "--out", "minivb.retrieve")
    one_line_error(main, [*CONTENTION, "--json", "no/such/x.json"], "the folder no/such does not exist; make it first")


def test_json_never_writes_over_an_earlier_result_or_an_input(tmp_path, one_line_error, monkeypatch):
    out = tmp_path / "earlier.json"
    out.write_text("an earlier run's numbers")
    with monkeypatch.context() as m:  # refused before any work: the benchmark must not start
        m.setitem(bench_main.COMMANDS, "contention", lambda *a: pytest.fail("the benchmark ran"))
        one_line_error(main, [*CONTENTION, "--json", str(out)], f"--json {out} already exists; pass --force")
        assert out.read_text() == "an earlier run's numbers"
        one_line_error(main, ["decode", "--videos", str(out), "--json", str(out), "--force"], "this command's inputs")
        index = tmp_path / "data" / "originals" / "train.csv"  # a data root's index: read, never written
        index.parent.mkdir(parents=True)
        index.write_text("path,label\n")
        args = ["loader", "--data-root", str(tmp_path / "data"), "--json", str(index), "--force"]
        one_line_error(main, args, "this command's inputs")
    one_line_error(main, [*CONTENTION, "--json", str(out), "--force"], "it does not say minivb.bench wrote it")
    out.write_text('{"command": "minivb.bench", "results": []}')  # an earlier run's file: --force replaces it
    assert main([*CONTENTION, "--json", str(out), "--force"]) == 0 and _strict_json(out)["results"]


def test_bad_option_from_the_shell(tmp_path, run_module):
    proc = run_module("minivb.bench", "loader", "--preset", "toy", "--data-root", str(tmp_path / "missing"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_language_tiny(toy_copy, tmp_path, capsys):
    """The paper's experiments end to end on a tiny toy set: five pretraining runs, the zero-shot table, the
    transfer over two seeds; a second call reuses every finished run (and a run with other options is refused)."""
    runs = tmp_path / "runs"
    args = ["language", "--data-root", str(toy_copy), "--runs", str(runs), "--fractions", "0.5", "1"]
    args += ["--seeds", "2", "--epochs", "1", "--json", str(tmp_path / "language.json")]
    torch.set_num_threads(1)
    assert main(args) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "language.json").read_text())
    assert [r["run"] for r in result["results"]] == ["prior", "joint-50", "joint-100", "joint-100-stride3"]
    assert [r["train_videos"] for r in result["results"]] == [16, 8, 16, 16]
    for r in result["results"]:
        assert 0 <= r["summary"]["zero_shot_verb"]["top1"] <= 1 and f"| {r['run']} |" in out
    transfer = result["transfer"]
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in transfer["accuracy"].values())
    assert set(transfer["mean"]) == {"joint", "video", "scratch"} and "transfer (5 labels per class) from joint" in out
    assert set(result["ceiling"]) == {"cnn", "flow"} and all(0 <= a <= 1 for a in result["ceiling"].values())
    assert "with every training label, a classifier on the words alone reaches" in out
    assert sorted(p.name for p in runs.iterdir()) == [
        "joint-100",
        "joint-100-stride3",
        "joint-50",
        "prior",
        "video",
        "video-cnn",
    ]

    stamp = {p.name: (p / "pretrain.pt").stat().st_mtime_ns for p in runs.iterdir()}
    assert main([*args[:-2], "--json", str(tmp_path / "again.json")]) == 0  # every run reused, not trained again
    assert {p.name: (p / "pretrain.pt").stat().st_mtime_ns for p in runs.iterdir()} == stamp
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["transfer"]["accuracy"] == transfer["accuracy"]  # the same seeds give the same numbers
    capsys.readouterr()
    assert main([*args[:-4], "--epochs", "2"]) == 2
    said = capsys.readouterr().err
    assert f"--runs {runs}: prior cannot be reused or made (--out {runs / 'prior'} already holds a run" in said
    assert f"delete {runs / 'prior'}, or choose another --runs" in said
    assert main([*args[:-2], "--max-stride", "50"]) == 2  # refused before any run: not after the other runs
    assert "--max-stride 50 is more than a clip's" in capsys.readouterr().err
    assert not (runs / "joint-100-stride50").exists()


def test_the_gpu_measurement_script_asks_what_the_bench_and_the_tests_accept(tmp_path):
    """.ci/gpu is run once, on a lent GPU machine with minutes to spare (issue 35): an option the benchmark no longer
    takes must fail here, not there. Its python calls are recorded by a stand-in and parsed by the real parsers."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    calls, bin_dir, clips = tmp_path / "calls.jsonl", tmp_path / "bin", tmp_path / "clips"
    bin_dir.mkdir()
    clips.mkdir()
    names = ("k400_arm_wrestling.mp4", "basketball_426x240.mp4")
    for name in names:
        (clips / name).write_bytes(b"")
    stand_in = bin_dir / "python"
    stand_in.write_text(
        f"#!{sys.executable}\nimport json, sys\nopen({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    stand_in.chmod(0o755)
    env = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", ".ci/gpu", str(clips), str(tmp_path / "out"), "0.25"], cwd=root, env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()
    argvs = [json.loads(line) for line in calls.read_text().splitlines()]
    tests = [a for a in argvs if a[:2] == ["-m", "pytest"]]
    benches = [a[3:] for a in argvs if a[:3] == ["-m", "minivb.bench", "loader"]]
    assert len(tests) == 1 and (root / tests[0][-1]).is_file()
    assert len(benches) == 2
    eager, compiled = (bench_main.build_parser().parse_args(["loader", *argv]) for argv in benches)
    assert eager.gpu_share == [1.0, 0.5, 0.25] and eager.decode == ["cpu", "gpu"] and eager.device == "cuda"
    assert compiled.compile and compiled.gpu_share == [0.25] and compiled.videos == [str(clips / n) for n in names]
    missing = subprocess.run(
        ["bash", ".ci/gpu", str(tmp_path), str(tmp_path / "out")], cwd=root, env=env, capture_output=True
    )
    assert missing.returncode == 2 and b"copy ../shared/fixtures' clips there" in missing.stderr
