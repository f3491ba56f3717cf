"""minivb.data.clips (index, clips, augmentation, sampler) and minivb.engine.checkpoint."""

import logging
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import minivb
from minivb.data.clips import (
    Augmentation,
    ClipDataset,
    MultiViewDataset,
    Replaced,
    ShardedSampler,
    Skipped,
    collate,
    load_items,
    report_skipped,
)
from minivb.data.loader import clip_loader
from minivb.data.toy import CLASSES, HFLIP, VFLIP
from minivb.engine.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint, unwrap_model
from minivb.model import VideoBERT, VideoBERTConfig
from minivb.video import read_frames, sample_indices, video_info


def _dataset(root, split="train", **kw):
    items, classes = load_items(root, split)
    draws = {k: kw.pop(k) for k in ("seed", "scale", "flips", "hflip", "vflip") if k in kw}  # Augmentation's
    args = dict(num_frames=4, stride=2, size=48, train=split == "train")
    return ClipDataset(items, classes, augment=Augmentation(**(dict(seed=0, hflip=HFLIP) | draws)), **(args | kw))


# --------------------------------------------------------------------------- index


def test_load_items_csv_and_class_folders(toy, tmp_path):
    items, classes = load_items(toy, "train")
    assert classes == list(CLASSES)  # classes.txt order: twins adjacent, not sorted
    assert len(items) == 16 and all(Path(it.path).is_file() and it.frames == 8 for it in items)
    # the same videos without the CSV index and classes.txt: scanned folders, sorted class names
    copy = tmp_path / "folders"
    shutil.copytree(toy / "train", copy / "train")
    items2, classes2 = load_items(copy, "train")
    assert classes2 == sorted(CLASSES)
    assert sorted((Path(i.path).name, i.label) for i in items2) == sorted((Path(i.path).name, i.label) for i in items)
    assert all(i.frames is None for i in items2)


def test_an_empty_class_folder_is_still_a_class(tmp_path):
    for label, n in (("archery", 1), ("bowling", 0), ("cooking", 1)):
        (tmp_path / "train" / label).mkdir(parents=True)
        for k in range(n):
            (tmp_path / "train" / label / f"{k}.mp4").write_bytes(b"x")
    items, classes = load_items(tmp_path, "train")
    assert classes == ["archery", "bowling", "cooking"]  # indices do not shift when a class has no videos yet
    assert [it.label for it in items] == ["archery", "cooking"]


def test_load_items_errors_name_the_path_and_the_fix(toy, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_items(tmp_path / "nope", "train")
    with pytest.raises(FileNotFoundError, match=r"no test split .*test\.csv"):
        load_items(toy, "test")
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="split .* is empty"):
        load_items(tmp_path / "empty", "train")
    with pytest.raises(ValueError, match="not in the class list"):
        load_items(toy, "train", classes=["left_to_right"])
    (tmp_path / "folders" / "train" / "a").mkdir(parents=True)
    (tmp_path / "folders" / "train" / "a" / "a.mp4").write_bytes(b"")
    (tmp_path / "folders" / "val" / "b").mkdir(parents=True)
    (tmp_path / "folders" / "val" / "b" / "b.mp4").write_bytes(b"")
    _, classes = load_items(tmp_path / "folders", "train")
    with pytest.raises(ValueError, match="not in the class list: b; the class list is the training split's labels"):
        load_items(tmp_path / "folders", "val", classes)  # (no classes.txt to add them to)


def test_an_index_that_is_not_utf8_or_has_a_short_row_is_one_line_naming_the_file(toy, tmp_path, one_line_error):
    """D15 / D24 / D18 of the hardening issue: a train.csv in Latin-1 was a UnicodeDecodeError traceback, a row
    with only a path a TypeError. Each is one line that names the file, the line and the fix."""
    from minivb.train import main as train_main

    latin = tmp_path / "latin"
    latin.mkdir()
    (latin / "train.csv").write_bytes(b"path,label\nclip.mp4,caf\xe9\n")
    with pytest.raises(ValueError, match=r"latin/train.csv, line 2: not UTF-8 text \(byte 0xe9\); save"):
        load_items(latin, "train")
    err = one_line_error(train_main, ["--subset", "k400", "--data-root", str(latin)], "not UTF-8 text")
    assert "train.csv, line 2" in err
    short = tmp_path / "short"
    short.mkdir()
    (short / "train.csv").write_text("path,label\na.mp4,x\nb.mp4\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"short/train.csv, line 3: a row needs a path and a label"):
        load_items(short, "train")
    bom = tmp_path / "bom"  # a byte-order mark (Excel's "CSV UTF-8") is fine
    bom.mkdir()
    (bom / "train.csv").write_bytes("path,label\na.mp4,café\n".encode("utf-8-sig"))
    assert [it.label for it in load_items(bom, "train")[0]] == ["café"]
    (bom / "classes.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(ValueError, match="classes.txt, line 1: not UTF-8"):
        load_items(bom, "train")


# --------------------------------------------------------------------------- samples


def test_eval_sample_is_the_centre_clip_resized(toy):
    ds = _dataset(toy, "val", size=64, num_frames=4, stride=2)
    video, label = ds[3]
    assert video.shape == (4, 3, 64, 64) and video.dtype == torch.uint8  # the model scales uint8 itself
    assert label == CLASSES.index(ds.items[3].label)
    frames = read_frames(ds.items[3].path, [0, 2, 4, 6])  # 8 frames, span 7: start (8 - 7) // 2 = 0
    torch.testing.assert_close(video, torch.from_numpy(frames).permute(0, 3, 1, 2))


def test_training_sample_is_a_function_of_seed_epoch_and_index(toy):
    a, b = _dataset(toy), _dataset(toy)
    for ds in (a, b):
        ds.set_epoch(3)
    torch.manual_seed(123)
    x, y = a[5]
    torch.manual_seed(456)  # the global generator does not matter …
    state = torch.get_rng_state()
    x2, y2 = b[5]
    assert torch.equal(torch.get_rng_state(), state)  # … and is left untouched
    assert x.shape == (4, 3, 48, 48) and torch.equal(x, x2) and y == y2
    b.set_epoch(4)
    assert not torch.equal(b[5][0], x)  # another epoch, another crop
    assert not torch.equal(_dataset(toy, seed=1).__getitem__(5)[0], b[5][0])


def test_samples_are_the_same_in_dataloader_workers(toy):
    ds = _dataset(toy)
    ds.set_epoch(2)
    sampler = ShardedSampler(len(ds), shuffle=True, seed=0)
    sampler.set_epoch(2)
    batches = [list(DataLoader(ds, batch_size=4, sampler=sampler, num_workers=w, collate_fn=collate)) for w in (0, 2)]
    for (v0, l0, s0), (v2, l2, s2) in zip(*batches):
        assert torch.equal(v0, v2) and torch.equal(l0, l2) and s0 == s2 == []


def test_persistent_workers_learn_the_epoch_from_the_sampler(toy):
    """The trainer keeps its workers across epochs (``clip_loader(persistent=True)``); ``with_epoch`` carries the
    epoch to their copies of the data set, and the loader seeds them from its own generator: the global RNG (the
    model's dropout) is left as it was."""
    ds = _dataset(toy)
    sampler = ShardedSampler(len(ds), shuffle=True, seed=0, with_epoch=True)
    loader = clip_loader(ds, torch.device("cpu"), 4, 2, sampler=sampler, persistent=True)
    assert loader.persistent_workers and loader.prefetch_factor == 4 and loader.collate_fn is collate
    for epoch in (0, 3):
        sampler.set_epoch(epoch, skip=4)  # resume-style: the epoch's first batch already done
        ds.set_epoch(epoch)  # only the main process's copy sees this
        expected = [ds[i] for i in sampler.shard()[4:]]
        rng = torch.get_rng_state()
        got = [sample for videos, labels, _ in loader for sample in zip(videos, labels.tolist())]
        assert torch.equal(torch.get_rng_state(), rng)
        assert len(got) == len(expected) and all(torch.equal(v, e[0]) and y == e[1] for (v, y), e in zip(got, expected))
    assert not torch.equal(ds[(0, 1)][0], ds[(3, 1)][0])  # the epochs really draw differently


def test_horizontal_flip_remaps_the_label(toy):
    """With a full-frame crop, a training sample is the eval clip — or its mirror with the mirrored label."""
    train = _dataset(toy, size=64, num_frames=8, stride=1, scale=(1.0, 1.0))  # 8 of 8 frames: no temporal choice
    val = _dataset(toy, "train", size=64, num_frames=8, stride=1, train=False)
    i = next(k for k, it in enumerate(train.items) if it.label == "left_to_right")
    plain, _ = val[i]
    seen = set()
    for epoch in range(12):
        train.set_epoch(epoch)
        video, label = train[i]
        if torch.equal(video, plain):
            assert CLASSES[label] == "left_to_right"
        else:
            torch.testing.assert_close(video, plain.flip(-1), rtol=0, atol=1e-6)
            assert CLASSES[label] == "right_to_left"
        seen.add(CLASSES[label])
    assert seen == {"left_to_right", "right_to_left"}
    # hflip=None (e.g. Kinetics): a mirror keeps the label
    keep = _dataset(toy, size=64, num_frames=8, stride=1, scale=(1.0, 1.0), hflip=None)
    labels = set()
    for epoch in range(12):
        keep.set_epoch(epoch)
        labels.add(keep[i][1])
    assert labels == {CLASSES.index("left_to_right")}


def test_no_flips_leaves_every_other_draw_alone(toy):
    """flips=False: each training sample is the flipping data set's before its mirrors, with its own label — the same
    time window and crop, whatever the flips drew."""
    flipping = _dataset(toy, vflip=VFLIP)
    plain = _dataset(toy, vflip=VFLIP, flips=False)
    mirrored = 0
    for epoch in range(3):
        for i in range(len(plain)):
            (video, label), (kept, own) = flipping[(epoch, i)], plain[(epoch, i)]
            assert own == plain.labels[i]
            ways = []  # the mirrors (horizontal, vertical) that turn the plain sample into the flipping one
            for h in (False, True):
                for v in (False, True):
                    x = kept.flip(-1) if h else kept
                    x = x.flip(-2) if v else x
                    mapped = flipping.hflip[own] if h else own
                    mapped = flipping.vflip[mapped] if v else mapped
                    if torch.equal(video, x) and label == mapped:
                        ways.append((h, v))
            assert ways, (epoch, i)
            mirrored += (False, False) not in ways
    assert mirrored > 10  # of 48 samples: the flips were really drawn


def test_a_flip_table_that_names_no_class_is_refused(toy):
    items, classes = load_items(toy, "train")
    with pytest.raises(ValueError, match=r"^hflip maps to label\(s\) sideways that are not classes$"):
        _dataset(toy, hflip={classes[0]: "sideways"})
    with pytest.raises(ValueError, match=r"^vflip maps to label\(s\) upside that are not classes$"):
        _dataset(toy, vflip={classes[1]: "upside", "not_a_class": "ignored"})  # absent classes' entries are ignored
    ds = _dataset(toy, hflip={"not_a_class": "ignored"}, vflip={})
    assert ds.hflip == list(range(len(classes))) and ds.vflip == list(range(len(classes)))


def test_vertical_flip_only_when_asked_and_remaps_the_label(toy):
    """With vflip=toy.VFLIP, a top_to_bottom sample is sometimes the clip upside down, labelled bottom_to_top."""
    val = _dataset(toy, "train", size=64, num_frames=8, stride=1, train=False)
    i = next(k for k, it in enumerate(val.items) if it.label == "top_to_bottom")
    plain, _ = val[i]
    both = _dataset(toy, size=64, num_frames=8, stride=1, scale=(1.0, 1.0), vflip=VFLIP)
    seen = set()
    for epoch in range(16):
        both.set_epoch(epoch)
        video, label = both[i]
        for h in (False, True):
            for v in (False, True):
                expected = plain.flip(-1) if h else plain
                expected = expected.flip(-2) if v else expected
                if torch.equal(video, expected):
                    assert CLASSES[label] == ("bottom_to_top" if v else "top_to_bottom")  # hflip keeps vertical motion
                    seen.add((h, v))
    assert seen == {(False, False), (False, True), (True, False), (True, True)}
    never = _dataset(toy, size=64, num_frames=8, stride=1, scale=(1.0, 1.0))  # no vflip table: never upside down
    for epoch in range(16):
        never.set_epoch(epoch)
        video, label = never[i]
        assert CLASSES[label] == "top_to_bottom" and (torch.equal(video, plain) or torch.equal(video, plain.flip(-1)))


def test_views_uniform_clips_times_crops(toy):
    ds = _dataset(toy, "val", size=32, num_frames=2, stride=1)
    v = ds.views(0, num_clips=3, num_crops=3)
    assert v.shape == (9, 2, 3, 32, 32)
    frames = torch.from_numpy(read_frames(ds.items[0].path, range(8))).permute(0, 3, 1, 2).float()
    small = torch.nn.functional.interpolate(frames, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    assert v.dtype == torch.uint8  # resized in uint8: within rounding of the float reference
    torch.testing.assert_close(
        v[0].float(), small[0:2], atol=1.0, rtol=0
    )  # clip 0 = frames 0-1 (square video: 3 equal crops)
    torch.testing.assert_close(v[8].float(), small[6:8], atol=1.0, rtol=0)  # last clip = frames 6-7
    assert ds.views(0, 1, 1).shape == (1, 2, 3, 32, 32)
    mv = MultiViewDataset(ds, num_clips=2, num_crops=1)
    videos, labels, skipped = collate([mv[0], mv[1]])
    assert videos.shape == (2, 2, 2, 3, 32, 32) and labels.tolist() == ds.labels[:2] and skipped == []
    with pytest.raises(ValueError, match="num_crops"):
        ds.views(0, 2, 2)


def test_three_crops_run_along_the_long_side(tmp_path):
    from videos import stamped_frames, write_opencv

    path = write_opencv(tmp_path / "wide.mp4", stamped_frames(6, height=48, width=96))
    ds = ClipDataset([(str(path), "a", None)], ["a"], 3, 2, train=False, size=32)
    v = ds.views(0, num_clips=1, num_crops=3)  # frames 0, 2, 4 resized to 32×64; crops at x = 0, 16, 32
    frames = torch.from_numpy(read_frames(path, [0, 2, 4])).permute(0, 3, 1, 2).float()
    small = torch.nn.functional.interpolate(frames, size=(32, 64), mode="bilinear", antialias=True, align_corners=False)
    for k, left in enumerate((0, 16, 32)):  # crop-then-resize equals resize-then-crop (interior pixels; uint8 rounding)
        torch.testing.assert_close(v[k][..., 1:-1].float(), small[..., left + 1 : left + 31], atol=1.0, rtol=0)
    torch.testing.assert_close(ds[0][0], v[1])  # the evaluation sample is the centre view


@pytest.mark.parametrize("preload", [False, True])
def test_broken_file_is_logged_once_replaced_in_training_and_skipped_in_evaluation(toy, tmp_path, caplog, preload):
    items, classes = load_items(toy, "train")
    bad = tmp_path / f"broken_{preload}.mp4"
    bad.write_bytes(Path(items[0].path).read_bytes()[:300])  # truncated
    items = [items[0]._replace(path=str(bad), frames=None)] + items[1:4]
    with caplog.at_level(logging.WARNING, logger="minivb.data.clips"):
        ds = ClipDataset(items, classes, 4, 2, train=True, size=32, preload=preload)
        batches = list(DataLoader(ds, batch_size=4, collate_fn=collate))
        report_skipped(batches[0][2])
        report_skipped(collate([ds[0]])[2])  # drawn again: no second warning
    videos, labels, skipped = batches[0]
    # training: the broken clip's place is taken by another clip, the same one every time (seed, epoch, index)
    assert videos.shape == (4, 4, 3, 32, 32) and labels[1:].tolist() == ds.labels[1:4]
    assert [s.path for s in skipped] == [str(bad)]  # (with preload, found at decode time and marked)
    stand_in = ds[0]
    assert isinstance(stand_in, Replaced) and stand_in.skipped.path == str(bad)
    j = next(j for j in range(1, 4) if torch.equal(ds[j][0], stand_in.video))  # a real sample of another clip
    assert stand_in.label == ds.labels[j] and torch.equal(videos[0], stand_in.video)
    warnings = [r.getMessage() for r in caplog.records if str(bad) in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"skipping {bad}: ")
    # evaluation: never a stand-in (it would change the metrics), the clip is left out and named
    val = ClipDataset(items, classes, 4, 2, train=False, size=32, preload=preload)
    videos, labels, skipped = collate([val[i] for i in range(4)])
    assert (
        videos.shape == (3, 4, 3, 32, 32)
        and labels.tolist() == ds.labels[1:4]
        and [s.path for s in skipped] == [str(bad)]
    )
    assert collate([Skipped("x", "y")])[:2] == (None, None)


# --------------------------------------------------------------------------- sampler


@pytest.mark.parametrize("n, world", [(10, 3), (16, 2), (7, 1)])
def test_sharded_sampler_covers_every_index_once(n, world):
    shards = []
    for rank in range(world):
        s = ShardedSampler(n, shuffle=True, seed=5, rank=rank, world_size=world, drop_last=False)
        s.set_epoch(2)
        shards.append(list(s))
        assert len(s) == len(shards[-1])
    assert sorted(sum(shards, [])) == list(range(n))
    dropped = [
        list(ShardedSampler(n, shuffle=True, seed=5, rank=r, world_size=world, drop_last=True)) for r in range(world)
    ]
    assert len({len(d) for d in dropped}) == 1 and len(sum(dropped, [])) == n // world * world
    assert len(set(sum(dropped, []))) == n // world * world


def test_sampler_order_is_a_function_of_seed_and_epoch_and_can_skip():
    s = ShardedSampler(50, shuffle=True, seed=1)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert sorted(e0) == sorted(e1) == list(range(50)) and e0 != e1
    t = ShardedSampler(50, shuffle=True, seed=1)
    t.set_epoch(1)
    assert list(t) == e1
    t.set_epoch(1, skip=3 * 8)  # resume after 3 batches of 8
    assert list(t) == e1[24:] and len(t) == 26
    assert list(ShardedSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------- checkpoints


def _model(**kw):
    torch.manual_seed(0)
    return VideoBERT(VideoBERTConfig(**(dict(num_classes=3, num_frames=4, grid=2, dim=16, depth=1, num_heads=2) | kw)))


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.rand(2, 4, 3, 32, 32)).sum().backward()
    opt.step()
    path = save_checkpoint(
        tmp_path / "run" / "last.pt",
        {
            "model": model.state_dict(),
            "config": model.config.to_dict(),
            "classes": ["a", "b", "c"],
            "optimizer": opt.state_dict(),
            "step": 1,
            "rng": {"cpu": torch.get_rng_state()},
            "args": {"lr": 1e-3, "out": None},
        },
    )
    assert sorted(os.listdir(path.parent)) == ["last.pt"]  # no temporary file left behind
    torch.load(path, weights_only=True)  # nothing that needs unpickling code
    loaded, classes = minivb.load_checkpoint(path)
    assert classes == ["a", "b", "c"] and not loaded.training
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    model.eval()
    x = torch.rand(1, 4, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))
    assert read_checkpoint(path)["optimizer"]["state"][0]["step"] == 1
    assert unwrap_model(torch.compile(model)) is model


def test_failed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", {"step": 1})
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["last.pt"]


def test_not_a_checkpoint_is_a_one_line_error(tmp_path):
    model = _model()
    good = save_checkpoint(
        tmp_path / "good.pt",
        {"model": model.state_dict(), "config": model.config.to_dict(), "classes": ["a", "b", "c"]},
    )
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(pickle.dumps(Path("x"), protocol=2))
    plain = save_checkpoint(tmp_path / "plain.pt", {"weights": torch.zeros(1)})
    for bad in (truncated, text, foreign, plain):
        with pytest.raises(ValueError, match="is not a (readable )?minivb checkpoint") as e:
            load_checkpoint(bad)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    wrong = save_checkpoint(
        tmp_path / "wrong.pt",
        {"model": model.state_dict(), "classes": ["a", "b", "c"], "config": _model(dim=32).config.to_dict()},
    )
    with pytest.raises(ValueError, match="do not match the stored config"):
        load_checkpoint(wrong)


def test_a_header_that_under_reports_its_frames_does_not_shrink_the_clips(tmp_path):
    """An AVI of 60 frame-stamped frames whose header says 3: clips must span all 60 frames, not repeat 0–2."""
    import struct

    from videos import read_stamp, stamped_frames, write_opencv

    path = write_opencv(tmp_path / "liar.avi", stamped_frames(60))
    data = bytearray(path.read_bytes())
    for chunk, offset in ((b"avih", 16), (b"strh", 32)):  # dwTotalFrames; the video stream's dwLength
        at = data.find(chunk)
        struct.pack_into("<I", data, at + 8 + offset, 3)
    path.write_bytes(bytes(data))
    assert video_info(path, exact=False).frames == 3  # what the container claims
    ds = ClipDataset([(str(path), "a")], ["a"], num_frames=8, stride=4, train=False, size=32)
    stamps = [read_stamp(f) for f in ds._clip(0, "center")]
    assert stamps == sample_indices(60, 8, 4, "center").tolist() == list(range(15, 44, 4))  # the centre of all 60
    train = ClipDataset([(str(path), "a")], ["a"], num_frames=8, stride=4, train=True, size=32)
    for epoch in range(5):
        clip = [read_stamp(f) for f in train._clip(0, "random", seed=epoch)]
        assert clip == list(range(clip[0], clip[0] + 29, 4)) and clip[-1] < 60
