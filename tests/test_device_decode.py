"""--decode gpu (minivb.data.device_decode), run on the CPU: the same clips as the cpu path, bad JPEGs replaced,
exact resume, and the commands' --decode option.

The gpu path's code is device-agnostic: on a CPU device ``decode_jpeg`` is torchvision's libjpeg-turbo and the
resize runs in float32 as torchvision's does on CUDA. Measured here (toy-like and textured frames):
torchvision's CPU decoder gives OpenCV's pixels exactly, and the float32 resize differs from the cpu path's
uint8 resize by at most 1 grey level (mean ≈ 0.13). What nvjpeg adds on a GPU is not measured here.
"""

import csv
import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY as CONFTEST_TINY  # tests/ is on the path (conftest.py)
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.transforms import v2

from minivb.data.clips import Augmentation, ClipDataset, MultiViewDataset, Replaced, Skipped, collate, sample_seed
from minivb.data.device_decode import (
    DeviceDecoded,
    EncodedBatch,
    EncodedClips,
    collate_encoded,
    decode_batch,
    decode_jpegs,
    resolve_decode,
)
from minivb.data.framestore import encode_frames, read_store_frames, read_store_jpegs, write_store
from minivb.data.loader import clip_loader
from minivb.data.toy import HFLIP, VFLIP
from minivb.engine.checkpoint import read_checkpoint

CPU = torch.device("cpu")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (nvJPEG)")
CLASSES = ["left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top"]


def _textured(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """``n`` frames of smooth random texture that drifts from frame to frame (JPEG-like content, not noise)."""
    g = np.random.default_rng(seed)
    base = g.random((height // 8 + 2, width // 8 + 2, 3)) * 255
    import cv2

    frames = []
    for t in range(n):
        shifted = np.roll(base, t, axis=1)
        frames.append(cv2.resize(shifted, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 255))
    return np.stack(frames).astype(np.uint8)


def _store(path: Path, n: int, height: int, width: int, seed: int) -> str:
    write_store(path, encode_frames(_textured(n, height, width, seed)), width, height, 1, 25.0)
    return str(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> list[tuple]:
    """Six frame stores of several sizes (landscape, portrait, square) and lengths, one per (label) item."""
    folder = tmp_path_factory.mktemp("stores")
    shapes = [(72, 96, 20), (100, 60, 14), (64, 64, 9), (90, 120, 30), (56, 80, 6), (81, 107, 17)]
    return [(_store(folder / f"s{k}.jpgs", n, h, w, k), CLASSES[k % 4], n, 1) for k, (h, w, n) in enumerate(shapes)]


def _pair(items, train: bool, gpu_share: float = 1.0, **kw):
    """The same clips decoded by the workers (a ClipDataset) and as JPEG bytes (its EncodedClips)."""
    augment = Augmentation(**(dict(seed=7, hflip=HFLIP, vflip=VFLIP) | kw))
    args = dict(num_frames=5, stride=2, size=40, train=train, augment=augment)
    return ClipDataset(items, CLASSES, **args), EncodedClips(ClipDataset(items, CLASSES, **args), gpu_share)


def _views(data, clips: int, crops: int):
    """``data``'s views (a ClipDataset's, or an EncodedClips' as JPEG bytes) as a data set."""
    if isinstance(data, EncodedClips):
        return EncodedClips(MultiViewDataset(data.dataset, clips, crops), data.share)
    return MultiViewDataset(data, clips, crops)


def _decoded(encoded: EncodedBatch, size: int) -> torch.Tensor:
    videos, failed = decode_batch(encoded, size, CPU)
    assert failed == []
    return videos


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    """The bound measured between the two paths on the CPU: ≤ 1 grey level, mean well under one."""
    assert a.shape == b.shape and a.dtype == b.dtype == torch.uint8
    d = (a.int() - b.int()).abs()
    assert d.max() <= 1 and d.float().mean() < 0.3, (d.max(), d.float().mean())


# --------------------------------------------------------------------------- the same clips


def test_torchvision_decodes_the_stores_jpegs_as_opencv_does(stores):
    path = stores[3][0]
    _, data, lengths, which = read_store_jpegs(path, [4, 2, 4, 7])
    assert len(lengths) == 3 and which.tolist() == [0, 1, 0, 2]  # each wanted frame once
    images = decode_jpegs(list(torch.split(torch.from_numpy(data), lengths.tolist())), CPU)
    ours = torch.stack(images)[torch.from_numpy(which)].permute(0, 2, 3, 1).numpy()
    assert np.array_equal(ours, read_store_frames(path, [4, 2, 4, 7]))  # bit for bit: both are libjpeg-turbo


def test_the_cpu_path_crops_as_random_resized_crop_does(stores):
    """The refactored cpu path = transforms.v2.RandomResizedCrop called on the clip under the same seed stream."""
    cpu, _ = _pair(stores, train=True, vflip=None, hflip=None)
    crop = v2.RandomResizedCrop(40, scale=(0.6, 1.0), antialias=True)
    for epoch, i in [(0, 0), (1, 1), (2, 3), (0, 5)]:
        video, _ = cpu[(epoch, i)]
        seed = sample_seed(1, 7, epoch, i)
        clip = torch.from_numpy(cpu._clip(i, "random", seed)).permute(0, 3, 1, 2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 2)
            expected = crop(tv_tensors.Video(clip)).as_subclass(torch.Tensor)
        flip = bool(torch.rand((), generator=torch.Generator().manual_seed(seed + 1)) < 0.5)
        assert torch.equal(video, expected.flip(-1) if flip else expected)


@pytest.mark.parametrize("train", [True, False])
def test_encoded_samples_decode_to_the_cpu_paths_clips(stores, train):
    cpu, gpu = _pair(stores, train=train)
    for epoch in range(3):
        keys = [(epoch, i) for i in range(len(stores))]
        a, b = collate([cpu[k] for k in keys]), collate_encoded([gpu[k] for k in keys])
        assert isinstance(b[0], EncodedBatch)
        assert torch.equal(a[1], b[1])  # labels: the same flips drawn, the same twin swaps
        _close(_decoded(b[0], 40), a[0])  # (B, T, 3, 40, 40)
    if train:  # the draws vary: some clips mirrored, several crop sizes
        boxes = torch.stack([gpu[(e, i)][0].boxes[0] for e in range(4) for i in range(6)])
        flips = torch.stack([gpu[(e, i)][0].flips[0] for e in range(4) for i in range(6)])
        assert len(set(boxes[:, 2].tolist())) > 5 and 0 < flips.float().mean() < 1


@pytest.mark.parametrize("clips, crops", [(1, 1), (2, 3)])
def test_encoded_views_decode_to_the_cpu_paths_views(stores, clips, crops):
    cpu, gpu = _pair(stores, train=False)
    a = collate([MultiViewDataset(cpu, clips, crops)[i] for i in range(len(stores))])
    b = collate_encoded([_views(gpu, clips, crops)[i] for i in range(len(stores))])
    assert b[0].multiview and b[0].frames.shape[:2] == (len(stores), clips * crops)
    _close(_decoded(b[0], 40), a[0])  # (B, V, T, 3, 40, 40)


def test_the_device_loader_with_workers_gives_the_cpu_loaders_batches(stores):
    cpu, gpu = _pair(stores, train=True)
    gpu.dataset.set_epoch(1), cpu.set_epoch(1)
    kw = dict(batch_size=4, collate_fn=collate, num_workers=2, persistent_workers=True)
    expected = list(DataLoader(cpu, **kw))
    loader = clip_loader(gpu.dataset, CPU, 4, 2, decode="gpu", persistent=True)  # --decode gpu: the loader wraps it
    assert isinstance(loader, DeviceDecoded) and isinstance(loader.dataset, EncodedClips) and len(loader) == 2
    for epoch in range(2):  # re-iterable, as the trainer iterates it once per epoch
        got = list(loader)
        assert len(got) == len(expected)
        for (va, ya, sa), (vb, yb, sb) in zip(expected, got):
            _close(vb, va)
            assert torch.equal(ya, yb) and sa == sb == []
    assert clip_loader(cpu, CPU, 4, 2, decode="cpu").__class__ is DataLoader  # decoded by the workers: as it is


@pytest.mark.parametrize("train", [True, False])
def test_a_gpu_share_splits_each_batch_between_the_workers_and_the_device(stores, train):
    """``gpu_share=0.5``: about half of each batch comes as JPEG bytes, the rest decoded by the workers — in its
    place in the batch, bit for bit the cpu path's clip; the batch as a whole is the cpu path's."""
    items = stores * 2
    cpu, _ = _pair(items, train=train)
    _, half = _pair(items, train=train, gpu_share=0.5)
    on = [half.decodes_on_device(i) for i in range(len(items))]
    assert sum(on) == 6 and all(0 < sum(on[k : k + 4]) < 4 for k in range(len(items) - 3))  # every run of 4: mixed
    keys = [(1, i) for i in range(len(items))]
    a, b = collate([cpu[k] for k in keys]), collate_encoded([half[k] for k in keys])
    assert b[0].encoded.tolist() == on and len(b[0].counts) == 6 and b[0].ready.shape == (6, 5, 3, 40, 40)
    assert torch.equal(b[0].ready, a[0][[i for i in range(len(items)) if not on[i]]])  # the workers' clips: exact
    assert torch.equal(a[1], b[1])
    _close(_decoded(b[0], 40), a[0])  # (B, T, 3, 40, 40), each clip in its place
    kw = dict(batch_size=3, collate_fn=collate, num_workers=2)
    expected = list(DataLoader(cpu, **kw))
    got = list(clip_loader(half.dataset, CPU, 3, 2, decode="gpu", gpu_share=0.5))
    assert len(got) == len(expected) == 4
    for (va, ya, sa), (vb, yb, sb) in zip(expected, got):
        _close(vb, va)
        assert torch.equal(ya, yb) and sa == sb == []


def test_a_gpu_share_splits_multiview_batches_too(stores, tmp_path):
    """2 clips × 3 crops per video, half the videos decoded by the workers; then one bad video of each kind is
    dropped from evaluation and named, the others keep their places."""
    items = stores * 2
    cpu, half = _pair(items, train=False, gpu_share=0.5)
    a = collate([MultiViewDataset(cpu, 2, 3)[i] for i in range(len(items))])
    b = collate_encoded([_views(half, 2, 3)[i] for i in range(len(items))])
    assert b[0].multiview and b[0].ready.shape == (6, 6, 5, 3, 40, 40)
    _close(_decoded(b[0], 40), a[0])  # (B, V, T, 3, 40, 40)
    on = [half.decodes_on_device(i) for i in range(6)]
    bad = [on.index(True, 1), on.index(False)]  # one encoded, one decoded by a worker
    items = list(stores)
    for k in bad:  # every clip of it is broken
        items[k] = (_corrupt_frame(stores[k][0], tmp_path / f"bad{k}.jpgs", 0), stores[k][1], 1, 1)
    cpu, half = _pair(items, train=False, gpu_share=0.5)
    ((v, y, skipped),) = DeviceDecoded(
        DataLoader(_views(half, 1, 3), batch_size=6, collate_fn=collate_encoded), 40, CPU
    )
    keep = [i for i in range(6) if i not in bad]
    assert sorted(s.path for s in skipped) == sorted(items[k][0] for k in bad)
    assert y.tolist() == [cpu.labels[i] for i in keep]
    _close(v, torch.stack([cpu.views(i, 1, 3) for i in keep]))


def test_a_batch_the_workers_decoded_whole_passes_through(stores):
    """With a small share some batches hold no encoded clip at all (and ``gpu_share=0`` none ever): the device
    loader only moves them to the device."""
    cpu, _ = _pair(stores, train=True)
    for share in (0.0, 0.1):
        _, low = _pair(stores, train=True, gpu_share=share)
        expected = list(DataLoader(cpu, batch_size=1, collate_fn=collate))
        got = list(DeviceDecoded(DataLoader(low, batch_size=1, collate_fn=collate_encoded), 40, CPU))
        kinds = [isinstance(b[0], EncodedBatch) for b in DataLoader(low, batch_size=1, collate_fn=collate_encoded)]
        assert (
            kinds == [low.decodes_on_device(i) for i in range(len(stores))]
            and kinds.count(True) == {0: 0, 0.1: 2}[share]
        )
        for (va, ya, _), (vb, yb, _) in zip(expected, got):
            _close(vb, va)
            assert torch.equal(ya, yb)
    with pytest.raises(ValueError, match=r"gpu_share must be in \[0, 1\]"):
        _pair(stores, train=True, gpu_share=1.5)


def test_leaving_the_loop_early_ends_the_decoding_thread(stores):
    _, gpu = _pair(stores * 4, train=True)
    loader = DeviceDecoded(DataLoader(gpu, batch_size=2, collate_fn=collate_encoded), 40, CPU)
    batches = iter(loader)
    next(batches)

    def helpers():
        return [t for t in threading.enumerate() if t.name.startswith("minivb-device-decode")]

    assert len(helpers()) == 1  # decoding the next batch
    batches.close()  # what a `break` (a stop signal) does
    assert helpers() == []


def test_the_device_loader_names_the_current_gpu(stores, monkeypatch):
    """``"cuda"`` becomes ``cuda:<current>``: the helper thread's ``torch.cuda.set_device`` refuses a device
    without an index (torch's ``_get_device_index``), so it must be named before the thread starts."""
    from torch.cuda._utils import _get_device_index

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    _, gpu = _pair(stores, train=True)
    loader = DeviceDecoded(DataLoader(gpu, batch_size=2, collate_fn=collate_encoded), gpu.size, "cuda")
    assert loader.device == torch.device("cuda", 1) and _get_device_index(loader.device) == 1
    with pytest.raises(ValueError, match="specified index"):
        _get_device_index(torch.device("cuda"))  # what set_device would have raised in the thread


# --------------------------------------------------------------------------- bad JPEGs


def _corrupt_frame(path: str, target: Path, frame: int) -> str:
    """A copy of the store whose ``frame``-th JPEG is garbage of the same length (header and offsets intact)."""
    raw = bytearray(Path(path).read_bytes())
    n = int.from_bytes(raw[8:12], "little")
    offsets = np.frombuffer(bytes(raw[32 : 32 + 8 * (n + 1)]), "<u8")
    base = 32 + 8 * (n + 1)
    a, b = base + int(offsets[frame]), base + int(offsets[frame + 1])
    raw[a:b] = bytes(range(256)) * ((b - a) // 256) + bytes(b - a - (b - a) // 256 * 256)
    target.write_bytes(bytes(raw))
    return str(target)


CUDA = pytest.param("cuda", marks=cuda)


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("share", [1.0, 0.5])  # 0.5: clips 1 and 3 decoded by the workers, 2 is encoded clip 1
def test_a_bad_jpeg_replaces_its_clip_as_the_cpu_path_does(stores, tmp_path, caplog, device, share):
    device = torch.device(device)
    items = list(stores)
    items[2] = (_corrupt_frame(stores[2][0], tmp_path / "bad.jpgs", 0), *stores[2][1:])  # every clip of it is broken
    items[2] = (items[2][0], items[2][1], 1, 1)  # one frame: every clip shows frame 0
    cpu, gpu = _pair(items, train=True, gpu_share=share)
    expected = collate([cpu[(0, i)] for i in range(len(items))])
    assert isinstance(cpu[(0, 2)], Replaced)  # the cpu path's stand-in for it
    videos, failed = decode_batch(collate_encoded([gpu[(0, i)] for i in range(len(items))])[0], 40, device)
    assert failed == [2]  # the other clips of the batch decoded
    with caplog.at_level("WARNING", logger="minivb.data.device_decode"):
        got = list(DeviceDecoded(DataLoader(gpu, batch_size=len(items), collate_fn=collate_encoded), 40, device))
    ((v, y, skipped),) = got
    assert [s.path for s in skipped] == [items[2][0]] == [s.path for s in expected[2]]
    assert torch.equal(y.cpu(), expected[1]) and v.shape == expected[0].shape and v.device == videos.device
    _close(v.cpu(), expected[0])  # the stand-in too: made by the cpu path
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "minivb.data.device_decode"]
    assert warning.startswith("1 clip(s) of this pass were decoded on the CPU") and "(0, 2)" in warning


def test_evaluation_drops_a_clip_whose_jpeg_is_bad(stores, tmp_path):
    items = list(stores)
    items[1] = (_corrupt_frame(stores[1][0], tmp_path / "bad.jpgs", 0), stores[1][1], 1, 1)
    cpu, gpu = _pair(items, train=False)
    loader = DeviceDecoded(DataLoader(_views(gpu, 1, 3), batch_size=3, collate_fn=collate_encoded), 40, CPU)
    (v0, y0, s0), (v1, y1, s1) = list(loader)
    assert [s.path for s in s0] == [items[1][0]] and isinstance(s0[0], Skipped) and s1 == []
    assert v0.shape == (2, 3, 5, 3, 40, 40) and y0.tolist() == [cpu.labels[0], cpu.labels[2]]
    _close(v0, torch.stack([cpu.views(0, 1, 3), cpu.views(2, 1, 3)]))


def test_a_jpeg_of_another_size_than_the_header_says_is_a_bad_frame(stores, tmp_path):
    wrong = tmp_path / "wrong.jpgs"
    write_store(wrong, encode_frames(_textured(6, 48, 64, 0)), 70, 48, 1, 25.0)  # header: 70 wide, JPEGs: 64
    _, gpu = _pair([(str(wrong), CLASSES[0], 6, 1), stores[0]], train=False)
    _, failed = decode_batch(collate_encoded([gpu[0], gpu[1]])[0], 40, CPU)
    assert failed == [0]


# --------------------------------------------------------------------------- the choice


def test_resolve_decode(stores, toy):
    paths = [s[0] for s in stores]
    assert resolve_decode("auto", CPU, paths) == "cpu"  # until the gpu path is measured faster on a GPU
    assert resolve_decode("cpu", CPU, paths) == "cpu" and resolve_decode("gpu", CPU, paths) == "gpu"
    video = str(toy / "train" / "left_to_right" / "left_to_right_0000.mp4")
    with pytest.raises(ValueError, match=f"--decode gpu decodes prepared frame stores.*{video} is a video"):
        resolve_decode("gpu", CPU, [*paths, video])
    assert resolve_decode("auto", CPU, [video]) == "cpu"
    with pytest.raises(ValueError, match="--preload"):
        resolve_decode("gpu", CPU, paths, preload=True)
    with pytest.raises(ValueError, match="decode must be one of"):
        resolve_decode("nvjpeg", CPU, paths)


def test_encoded_data_sets_refuse_videos_and_preloaded_frames(stores, toy):
    video = (str(toy / "train" / "left_to_right" / "left_to_right_0000.mp4"), CLASSES[0])
    with pytest.raises(ValueError, match="frame stores"):
        EncodedClips(ClipDataset([video], CLASSES, 4, 1, train=True, size=32))
    with pytest.raises(ValueError, match="frame stores"):
        EncodedClips(MultiViewDataset(ClipDataset(stores[:2], CLASSES, 4, 1, train=False, size=32, preload=True)))


# --------------------------------------------------------------------------- the commands


def _as_stores(toy: Path, root: Path) -> Path:
    """The toy set's videos converted to frame stores, indexed as prepared data (``path,label,frames,step``)."""
    from minivb.data.framestore import convert_video

    for split in ("train", "val"):
        rows = []
        with open(toy / f"{split}.csv") as f:
            for r in csv.DictReader(f):
                target = root / Path(r["path"]).with_suffix(".jpgs")
                target.parent.mkdir(parents=True, exist_ok=True)
                _, info = convert_video(toy / r["path"], target, step=1)
                rows.append([target.relative_to(root).as_posix(), r["label"], info.frames, 1])
        with open(root / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([["path", "label", "frames", "step"], *rows])
    (root / "classes.txt").write_text((toy / "classes.txt").read_text())
    return root


@pytest.fixture(scope="module")
def prepared(toy, tmp_path_factory) -> Path:
    return _as_stores(toy, tmp_path_factory.mktemp("prepared"))


# conftest's tiny model (2 epochs of 8 batches on the toy set) with a k400-preset run's other choices made small
TINY = [*CONFTEST_TINY, "--encoder", "small", "--grid", "2", "--no-pretrained", "--workers", "0"]


def _train(args: list[str], on_step=None) -> int:
    from minivb.train import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(args, on_step=on_step)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("share", ["1", "0.5"])  # 0.5: half of each batch decoded by the workers
def test_training_with_gpu_decoding_stops_and_resumes_bit_exactly(prepared, tmp_path, share):
    common = ["--subset", "k400", "--data-root", str(prepared), "--decode", "gpu", "--gpu-share", share, *TINY]
    assert _train([*common, "--out", str(tmp_path / "whole")]) == 0

    def stop_at_5(state):  # SIGTERM between two steps: the loop saves and stops
        if state.step == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    out = tmp_path / "stopped"
    assert _train([*common, "--out", str(out)], on_step=stop_at_5) == 0
    assert read_checkpoint(out / "last.pt")["step"] == 5
    assert _train(["--resume", str(out)]) == 0
    whole, resumed = read_checkpoint(tmp_path / "whole" / "last.pt"), read_checkpoint(out / "last.pt")
    assert whole["step"] == resumed["step"] == 16 and resumed["args"]["decode"] == "gpu"
    assert resumed["args"]["gpu_share"] == float(share)
    for k in whole["model"]:
        assert torch.equal(whole["model"][k], resumed["model"][k]), k


def test_a_split_run_resumes_with_the_cpu_path(prepared, tmp_path):
    """Where the GPU cannot decode (resolve_decode says: use --decode cpu), a --gpu-share run resumes on the cpu
    path: its share applies to gpu decoding only."""
    out = tmp_path / "run"
    args = ["--subset", "k400", "--data-root", str(prepared), "--decode", "gpu", "--gpu-share", "0.5", *TINY]

    def stop_at_3(state):
        if state.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    assert _train([*args, "--out", str(out)], on_step=stop_at_3) == 0
    assert _train(["--resume", str(out), "--decode", "cpu"]) == 0
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["step"] == 16 and ckpt["args"]["decode"] == "cpu" and ckpt["args"]["gpu_share"] == 0.5


def test_the_commands_take_decode_gpu_on_frame_stores(prepared, tmp_path, capsys):
    from minivb.evaluate import main as evaluate
    from minivb.predict import main as predict

    assert _train(["--subset", "k400", "--data-root", str(prepared), "--out", str(tmp_path / "run"), *TINY]) == 0
    tops = {}
    for decode in ("cpu", "gpu"):
        out = tmp_path / f"eval-{decode}"
        args = ["--checkpoint", str(tmp_path / "run"), "--decode", decode, "--out", str(out), "--crops", "3"]
        assert evaluate(args) == 0
        tops[decode] = (out / "predictions.csv").read_text()
    assert tops["cpu"] == tops["gpu"] or _same_predictions(tops["cpu"], tops["gpu"])
    capsys.readouterr()
    stores = sorted(str(p) for p in (prepared / "val").rglob("*.jpgs"))[:3]
    probs = {}
    for decode in ("cpu", "gpu"):  # every class's probability (--topk as many as there are), not only the top one
        args = [*stores, "--checkpoint", str(tmp_path / "run"), "--decode", decode, "--topk", "400", "--json"]
        assert predict(args) == 0
        results = json.loads(capsys.readouterr().out)
        assert [r["path"] for r in results] == stores
        by_label = [{t["label"]: t["probability"] for t in r["top"]} for r in results]
        probs[decode] = torch.tensor([[p[c] for c in sorted(p)] for p in by_label])  # (videos, classes)
    assert probs["cpu"].shape == (3, 8) and (probs["cpu"] - probs["gpu"]).abs().max() < 0.01

    from minivb.engine.gallery import Gallery
    from minivb.retrieve import main as retrieve

    galleries = {}
    for decode in ("cpu", "gpu"):
        out = tmp_path / f"gallery-{decode}.pt"
        index = ["index", "--checkpoint", str(tmp_path / "run"), "--data-root", str(prepared), "--decode", decode]
        assert retrieve([*index, "--out", str(out)]) == 0
        galleries[decode] = Gallery.load(out)
    cpu, gpu = galleries["cpu"], galleries["gpu"]
    assert cpu.paths == gpu.paths and len(cpu) == len(list((prepared / "val").rglob("*.jpgs"))) > 1
    assert cpu.labels == gpu.labels
    cosine = (cpu.embeddings * gpu.embeddings).sum(1)  # unit rows
    assert cosine.min() > 0.999, float(cosine.min())
    capsys.readouterr()
    search = ["search", "--index", str(tmp_path / "gallery-cpu.pt"), *stores, "--decode", "gpu", "--k", "1"]
    assert retrieve(search) == 0  # queries decoded the gpu way against a gallery decoded the cpu way
    found = [line.split()[2] for line in capsys.readouterr().out.splitlines() if line.strip().startswith("1.")]
    assert found == stores, found  # each store's nearest gallery video is itself


def _same_predictions(a: str, b: str) -> bool:
    """predictions.csv of two evaluations: the same predicted class per video, probabilities within 0.01."""
    ra, rb = list(csv.DictReader(a.splitlines())), list(csv.DictReader(b.splitlines()))
    return len(ra) == len(rb) and all(
        x["predicted"] == y["predicted"] and abs(float(x["probability"]) - float(y["probability"])) < 0.01
        for x, y in zip(ra, rb)
    )


def test_decode_gpu_on_videos_is_a_one_line_error(toy, tmp_path, one_line_error, tiny_run):
    from minivb.evaluate import main as evaluate
    from minivb.predict import main as predict
    from minivb.retrieve import main as retrieve
    from minivb.train import main as train

    video = str(toy / "val" / "left_to_right" / "left_to_right_0000.mp4")
    one_line_error(train, ["--data-root", str(toy), "--out", str(tmp_path / "r"), "--decode", "gpu"], "is a video")
    share = ["--data-root", str(toy), "--out", str(tmp_path / "r"), "--gpu-share", "0.5", "--decode", "cpu"]
    one_line_error(train, share, "--gpu-share 0.5 goes with --decode gpu")
    one_line_error(evaluate, ["--checkpoint", str(tiny_run), "--decode", "gpu", "--out", str(tmp_path / "e")], "video")
    one_line_error(predict, [video, "--checkpoint", str(tiny_run), "--decode", "gpu"], "--decode cpu")
    index = ["index", video, "--checkpoint", str(tiny_run), "--decode", "gpu", "--out", str(tmp_path / "g.pt")]
    one_line_error(retrieve, index, "--decode cpu")


def test_decode_gpu_with_a_presets_preload_names_the_preset(prepared, tmp_path, one_line_error):
    """Issue 30, rule 6: the toy preset turns preload on; --decode gpu blamed --preload, which was never given."""
    from minivb.train import main as train

    base = ["--subset", "k400", "--data-root", str(prepared), "--out", str(tmp_path / "r"), "--decode", "gpu"]
    err = one_line_error(train, [*base, "--preset", "toy"], "the toy preset turns preload on")
    assert "pass --no-preload" in err
    err = one_line_error(train, [*base, *TINY, "--preload"], "are not preloaded, but --preload was given")
    assert "preset" not in err and "pass --no-preload" in err
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- on a GPU (skipped without one)


@cuda
def test_nvjpeg_gives_opencvs_pixels_within_a_few_grey_levels(stores):
    """What nvJPEG adds to the bound: JPEG decoders may differ in IDCT rounding and chroma upsampling."""
    for path, *_ in stores:
        _, data, lengths, which = read_store_jpegs(path, range(5))
        jpegs = list(torch.split(torch.from_numpy(data), lengths.tolist()))
        ours = torch.stack(decode_jpegs(jpegs, torch.device("cuda"))).cpu().permute(0, 2, 3, 1)
        d = (ours.int() - torch.from_numpy(read_store_frames(path, range(5))).int()).abs()
        print(f"{Path(path).name}: nvJPEG vs OpenCV max |Δ| {int(d.max())}, mean {float(d.float().mean()):.3f}")
        assert d.float().mean() < 1.0 and d.max() <= 16


@cuda
@pytest.mark.parametrize("share", [1.0, 0.5])
def test_the_device_loader_on_cuda_gives_the_cpu_paths_clips(stores, share):
    cpu, gpu = _pair(stores * 2, train=True, gpu_share=share)
    kw = dict(batch_size=4, collate_fn=collate, num_workers=2, pin_memory=True)
    expected, got = list(DataLoader(cpu, **kw)), []
    for vb, yb, sb in clip_loader(gpu.dataset, "cuda", 4, 2, decode="gpu", gpu_share=share):
        torch.cuda._sleep(50_000_000)  # a slow model step on the current stream: the next decode must not race it
        got.append((vb.clone(), yb, sb))  # cloned on the current stream, as a model would read the batch
    assert len(got) == len(expected) == 3
    for (va, ya, sa), (vb, yb, sb) in zip(expected, got):
        assert vb.is_cuda and yb.is_cuda and torch.equal(ya, yb.cpu()) and sa == sb == []
        d = (vb.cpu().int() - va.int()).abs()
        assert d.float().mean() < 1.0 and d.max() <= 16


@cuda
@pytest.mark.parametrize("share", ["1", "0.5"])
def test_training_on_cuda_with_gpu_decoding(prepared, tmp_path, share):
    out = tmp_path / "run"
    args = ["--subset", "k400", "--data-root", str(prepared), "--decode", "gpu", "--gpu-share", share, *TINY]
    assert _train([*args, "--device", "cuda", "--out", str(out)]) == 0
    assert read_checkpoint(out / "last.pt")["args"]["decode"] == "gpu"
