"""Video retrieval: search and metrics against hand-worked answers and slow references, galleries,
python -m minivb.retrieve.

The command-line tests use a tiny model trained for 2 epochs on a tiny toy set (conftest ``toy``, ``tiny_run``).
"""

import json
import math
import shutil

import pytest
import torch

from minivb.engine.checkpoint import read_checkpoint, save_checkpoint
from minivb.engine.gallery import Gallery, embed_videos, pixel_embedding, view_embedding
from minivb.model import VideoBERT, VideoBERTConfig
from minivb.retrieval import neighbour_confusion, retrieval_metrics, search
from minivb.retrieve import main


def _unit(angles_degrees):
    """Points on the unit circle (N, 2): cosine similarity = cos(angle between them)."""
    a = torch.tensor(angles_degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([a.cos(), a.sin()], dim=1).float()


def _slow_metrics(emb, labels, ks):
    """Plain-Python leave-one-out Recall@K and mAP (queries without a relevant item left out)."""
    rows = emb.tolist()
    n = len(rows)
    hits, aps = {k: 0 for k in ks}, []
    for q in range(n):
        sim = {j: sum(a * b for a, b in zip(rows[q], rows[j])) for j in range(n) if j != q}
        ranked = sorted(sim, key=lambda j: (-sim[j], j))
        rel = [labels[j] == labels[q] for j in ranked]
        if not any(rel):
            continue
        for k in ks:
            hits[k] += any(rel[:k])
        found, precisions = 0, []
        for r, is_rel in enumerate(rel, start=1):
            if is_rel:
                found += 1
                precisions.append(found / r)
        aps.append(sum(precisions) / len(precisions))
    return {
        **{f"recall@{k}": hits[k] / len(aps) for k in ks},
        "mAP": sum(aps) / len(aps),
        "queries": len(aps),
        "without_relevant": n - len(aps),
        "gallery": n,
    }


# --------------------------------------------------------------------------- the numbers


# Six videos on the unit circle (angle, label); the angular distance orders the neighbours.
#   0: 0° A   1: 10° B   2: 30° A   3: 90° B   4: 100° B   5: 210° C (alone: left out)
# query  neighbours, nearest first              relevant ranks   AP                       hit@1 @2 @3
#   0    1B 2A 3B 4B 5C                          2                1/2                      0    1  1
#   1    0A 2A 3B 4B 5C                          3, 4             (1/3 + 2/4)/2 = 5/12     0    0  1
#   2    1B 0A 3B 4B 5C                          2                1/2                      0    1  1
#   3    4B 2A 1B 0A 5C                          1, 3             (1/1 + 2/3)/2 = 5/6      1    1  1
#   4    3B 2A 1B 0A 5C                          1, 3             5/6                      1    1  1
# recall@1 = 2/5, recall@2 = 4/5, recall@3 = 1, mAP = (1/2 + 5/12 + 1/2 + 5/6 + 5/6)/5 = 37/60.
HAND_ANGLES = [0, 10, 30, 90, 100, 210]
HAND_LABELS = ["A", "B", "A", "B", "B", "C"]


def test_metrics_on_a_hand_worked_example():
    m = retrieval_metrics(_unit(HAND_ANGLES), HAND_LABELS, ks=(1, 2, 3))
    assert m["recall@1"] == pytest.approx(2 / 5) and m["recall@2"] == pytest.approx(4 / 5) and m["recall@3"] == 1
    assert m["mAP"] == pytest.approx(37 / 60)
    assert (m["queries"], m["without_relevant"], m["gallery"]) == (5, 1, 6)
    assert m == pytest.approx(_slow_metrics(_unit(HAND_ANGLES), HAND_LABELS, (1, 2, 3)))
    # Labels as class indices give the same numbers.
    ids = torch.tensor([{"A": 0, "B": 1, "C": 2}[y] for y in HAND_LABELS])
    assert retrieval_metrics(_unit(HAND_ANGLES), ids, ks=(1, 2, 3)) == m
    # Nearest other video: 0→1, 1→0, 2→1, 3→4, 4→3, 5→4 (5 at 210° is 110° from 4, 120° from 3).
    cm = neighbour_confusion(_unit(HAND_ANGLES), ids, 3)
    assert cm.tolist() == [[0, 2, 0], [1, 2, 0], [0, 1, 0]]
    assert cm.diag().sum() / 5 == pytest.approx(m["recall@1"])  # the diagonal is recall@1's hits (C is alone)


def test_metrics_equal_a_slow_reference_on_random_data():
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(40, 8, generator=g, dtype=torch.float64), dim=1)  # no ties
    labels = torch.randint(0, 6, (40,), generator=g).tolist()
    labels[0] = 99  # one video alone in its label
    m = retrieval_metrics(emb, labels, ks=(1, 3, 5, 10, 100))
    ref = _slow_metrics(emb, labels, (1, 3, 5, 10, 100))
    assert m == pytest.approx(ref) and m["without_relevant"] == 1 and m["recall@100"] == 1.0


def test_perfect_embedding_scores_one_and_random_is_near_chance():
    labels = torch.arange(4).repeat_interleave(100)  # 4 classes × 100 videos
    perfect = torch.eye(4)[labels]  # every video = its class's one-hot vector
    m = retrieval_metrics(perfect, labels)
    assert (m["recall@1"], m["recall@5"], m["recall@10"], m["mAP"]) == (1.0, 1.0, 1.0, 1.0)
    assert neighbour_confusion(perfect, labels, 4).tolist() == (100 * torch.eye(4, dtype=torch.long)).tolist()
    g = torch.Generator().manual_seed(1)
    m = retrieval_metrics(torch.nn.functional.normalize(torch.randn(400, 64, generator=g), dim=1), labels)
    chance = 99 / 399  # the nearest other video is of the query's class
    assert abs(m["recall@1"] - chance) < 0.07 and abs(m["mAP"] - chance) < 0.05
    assert m["recall@5"] == pytest.approx(1 - (1 - chance) ** 5, abs=0.08)  # 5 draws, nearly independent
    none = retrieval_metrics(perfect[:4], labels[::100][:4])  # every label alone: nothing to find
    assert none["queries"] == 0 and none["mAP"] is None and none["recall@1"] is None


def test_search_equals_brute_force_and_breaks_ties_by_index():
    g = torch.Generator().manual_seed(2)
    gallery = torch.nn.functional.normalize(torch.randn(50, 16, generator=g), dim=1)
    queries = torch.nn.functional.normalize(torch.randn(7, 16, generator=g), dim=1)
    scores, indices = search(gallery, queries, 5)
    assert scores.shape == indices.shape == (7, 5)
    for q in range(7):
        sim = [sum(a * b for a, b in zip(queries[q].tolist(), gallery[j].tolist())) for j in range(50)]
        best = sorted(range(50), key=lambda j: (-sim[j], j))[:5]
        assert indices[q].tolist() == best
        assert scores[q].tolist() == pytest.approx([sim[j] for j in best], abs=1e-5)
    # Equal scores come in gallery order; k is capped at the number of candidates.
    twins = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    _, idx = search(twins, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 10)
    assert idx.tolist() == [[1, 3, 0, 2, 4], [0, 2, 4, 1, 3]]
    # exclude_self: the gallery queries itself and never finds itself.
    _, idx = search(twins, twins, 10, exclude_self=True)
    assert idx.tolist() == [[2, 4, 1, 3], [3, 0, 2, 4], [0, 4, 1, 3], [1, 0, 2, 4], [0, 2, 1, 3]]
    with pytest.raises(ValueError, match="share D"):
        search(gallery, queries[:, :8], 1)


def test_view_embedding_is_the_normalised_mean_over_views_and_pixels_ignore_time():
    torch.manual_seed(0)
    model = VideoBERT(VideoBERTConfig(num_classes=3, num_frames=3, grid=2, dim=32, depth=1, num_heads=2)).eval()
    views = torch.randint(0, 256, (2, 3, 3, 3, 32, 32), dtype=torch.uint8)  # (B, V, T, 3, H, W)
    with torch.no_grad():
        e = view_embedding(model, views)
        by_hand = torch.stack(
            [torch.stack([model.embed(v[None])[0] for v in b]).mean(0) for b in views]
        )  # one view at a time
    torch.testing.assert_close(e, by_hand / by_hand.norm(dim=1, keepdim=True), atol=1e-5, rtol=1e-4)
    assert e.shape == (2, 32)

    p = pixel_embedding(views)
    assert p.shape == (2, 192) and torch.allclose(p.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(pixel_embedding(views.flip(2)), p)  # a video played backwards: the same vector
    flat = torch.zeros(1, 1, 4, 3, 16, 16, dtype=torch.uint8)
    flat[..., 0, :, :], flat[..., 2, :, :] = 255, 51  # constant colour (1, 0, 0.2)
    expected = torch.tensor([1.0] * 64 + [0.0] * 64 + [0.2] * 64)
    torch.testing.assert_close(pixel_embedding(flat)[0], expected / expected.norm())


def test_gallery_round_trip_and_foreign_files(tmp_path, tiny_run):
    g = Gallery(
        _unit(HAND_ANGLES),
        [f"v{i}.mp4" for i in range(6)],
        HAND_LABELS,
        ["A", "B", "C"],
        "/x/last.pt",
        {"num_frames": 4, "stride": 1, "size": 32, "clips": 3, "crops": 1},
    )
    g.save(tmp_path / "g.pt")
    raw = torch.load(tmp_path / "g.pt", weights_only=True)  # plain tensors, strings and lists only
    assert raw["format"] == "minivb.gallery"
    back = Gallery.load(tmp_path / "g.pt")
    assert torch.equal(back.embeddings, g.embeddings) and back.label_ids().tolist() == [0, 1, 0, 1, 1, 2]
    assert (back.paths, back.labels, back.classes, back.checkpoint, back.preprocessing) == (
        g.paths,
        g.labels,
        g.classes,
        g.checkpoint,
        g.preprocessing,
    )
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Gallery.load(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="training checkpoint, not a gallery"):
        Gallery.load(tiny_run / "last.pt")
    (tmp_path / "junk.pt").write_text("not a gallery")
    with pytest.raises(ValueError, match="not a readable minivb gallery"):
        Gallery.load(tmp_path / "junk.pt")
    save_checkpoint(tmp_path / "dict.pt", {"a": 1})
    with pytest.raises(ValueError, match="not a minivb gallery"):
        Gallery.load(tmp_path / "dict.pt")
    save_checkpoint(tmp_path / "bad.pt", {"format": "minivb.gallery", "embeddings": torch.zeros(3, 2), "paths": ["a"]})
    with pytest.raises(ValueError, match="damaged"):
        Gallery.load(tmp_path / "bad.pt")
    for err in (ValueError, FileNotFoundError):  # one line each
        try:
            Gallery.load(tmp_path / ("missing.pt" if err is FileNotFoundError else "junk.pt"))
        except err as e:
            assert "\n" not in str(e)


# --------------------------------------------------------------------------- the command line


def _cli(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def gallery_file(tiny_run, toy, tmp_path_factory):
    """The train split of ``toy`` (16 videos, 2 per class) indexed with ``tiny_run``."""
    out = tmp_path_factory.mktemp("gallery") / "train.pt"
    assert (
        main(["index", "--checkpoint", str(tiny_run), "--data-root", str(toy), "--split", "train", "--out", str(out)])
        == 0
    )
    return out


def test_index_evaluate_and_search_a_labelled_split(gallery_file, tiny_run, toy, capsys, tmp_path):
    from minivb.data.toy import CLASSES

    g = Gallery.load(gallery_file)
    assert len(g) == 16 and g.classes == list(CLASSES) and sorted(g.labels) == sorted(list(CLASSES) * 2)
    assert g.embeddings.shape == (16, 32) and torch.allclose(g.embeddings.norm(dim=1), torch.ones(16))
    assert g.checkpoint == str((tiny_run / "last.pt").resolve())
    assert g.preprocessing == {
        "num_frames": 4,
        "stride": 1,
        "size": 32,
        "clips": 3,
        "crops": 1,  # toy default views
        "pixels": "uint8 RGB",
    }

    code, out, err = _cli(
        capsys, ["evaluate", "--index", str(gallery_file), "--json", "--confusion", str(tmp_path / "nn.png")]
    )
    assert code == 0, err
    report = json.loads(out)
    expected = retrieval_metrics(g.embeddings, g.label_ids())
    assert {k: report[k] for k in expected} == pytest.approx(expected)
    assert report["queries"] == 16 and 0 <= report["recall@1"] <= report["recall@5"] <= report["recall@10"] <= 1
    cm = torch.tensor(report["neighbour_confusion"])
    assert cm.shape == (8, 8) and cm.sum() == 16 and cm.diag().sum() / 16 == pytest.approx(report["recall@1"])
    assert (tmp_path / "nn.png").read_bytes()[:4] == b"\x89PNG"
    picture = ["evaluate", "--index", str(gallery_file), "--confusion"]
    before = (tmp_path / "nn.png").read_bytes()
    code, _, err = _cli(capsys, [*picture, str(tmp_path / "nn.png")])  # an earlier picture: kept, one line
    assert code == 2 and err.count("\n") == 1 and "already exists; pass --force" in err
    assert (tmp_path / "nn.png").read_bytes() == before
    code, _, err = _cli(capsys, [*picture, str(gallery_file), "--force"])  # its own --index: never
    assert code == 2 and "is one of this command's inputs" in err and Gallery.load(gallery_file).labels == g.labels
    assert _cli(capsys, [*picture, str(tmp_path / "nn.png"), "--force"])[0] == 0  # its own earlier picture
    assert (tmp_path / "nn.png").read_bytes()[:4] == b"\x89PNG"  # drawn again
    (tmp_path / "nn.png").write_bytes(b"a picture of the user's")  # not one retrieve drew: kept, even with --force
    code, _, err = _cli(capsys, [*picture, str(tmp_path / "nn.png"), "--force"])
    assert code == 2 and "--force replaces only minivb.retrieve's own earlier output" in err
    assert (tmp_path / "nn.png").read_bytes() == b"a picture of the user's"
    code, out, _ = _cli(capsys, ["evaluate", "--index", str(gallery_file)])
    assert code == 0 and f"recall@1 {100 * expected['recall@1']:.1f}%" in out and f"mAP {expected['mAP']:.3f}" in out

    query = g.paths[5]  # a gallery video as the query: it finds itself first
    code, out, err = _cli(capsys, ["search", "--index", str(gallery_file), query, g.paths[0], "--k", "3", "--json"])
    assert code == 0, err
    first, second = json.loads(out)
    assert first["path"] == query and len(first["neighbours"]) == 3
    top = first["neighbours"][0]
    assert top["path"] == query and top["similarity"] == pytest.approx(1, abs=1e-3) and top["label"] == g.labels[5]
    sims = [n["similarity"] for n in first["neighbours"]]
    assert sims == sorted(sims, reverse=True)
    expected_sims = (g.embeddings @ g.embeddings[0]).sort(descending=True).values[:3]
    assert [n["similarity"] for n in second["neighbours"]] == pytest.approx(expected_sims.tolist(), abs=1e-3)
    code, out, _ = _cli(capsys, ["search", "--index", str(gallery_file), query, "--k", "2"])
    assert code == 0 and out.splitlines()[0] == f"{query}:" and len(out.splitlines()) == 3
    assert f"({g.labels[5]})" in out.splitlines()[1] and query in out.splitlines()[1]


def test_a_broken_file_is_reported_and_the_others_indexed(tiny_run, toy, tmp_path, capsys, one_line_error):
    folder = tmp_path / "mine"
    folder.mkdir()
    videos = sorted((toy / "val").rglob("*.mp4"))[:3]
    for v in videos:
        shutil.copy(v, folder / v.name)
    broken = folder / "broken.mp4"
    broken.write_bytes(videos[0].read_bytes()[:200])  # truncated
    (folder / "notes.txt").write_text("not a video")  # not picked up from a folder
    out = tmp_path / "mine.pt"
    code, stdout, err = _cli(
        capsys, ["index", "--checkpoint", str(tiny_run), str(folder), "--out", str(out), "--batch-size", "2"]
    )
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"minivb.retrieve: cannot embed {broken}: "), err
    g = Gallery.load(out)
    assert g.paths == [str(folder / v.name) for v in videos] and g.labels is None and "indexed 3 videos" in stdout

    # Searching with the broken file too: one line for it, the other query still answered.
    code, stdout, err = _cli(capsys, ["search", "--index", str(out), str(broken), g.paths[1], "--json"])
    assert code == 1 and len(err.strip().splitlines()) == 1 and str(broken) in err
    results = json.loads(stdout)
    assert results[0]["path"] == str(broken) and "error" in results[0]
    assert results[1]["neighbours"][0]["path"] == g.paths[1] and "label" not in results[1]["neighbours"][0]
    one_line_error(main, ["evaluate", "--index", str(out)], "has no labels")

    # The library: a broken file is dropped, with its label.
    from minivb.engine.inference import load_model

    model, _, prep = load_model(tiny_run)
    lib, skipped = embed_videos(model, [broken, *videos], prep, labels=["x", "a", "b", "c"])
    assert lib.labels == ["a", "b", "c"] and [s.path for s in skipped] == [str(broken)]
    torch.testing.assert_close(lib.embeddings, g.embeddings, atol=1e-5, rtol=1e-4)


def test_a_gallery_is_searched_only_with_the_weights_that_made_it(tiny_run, toy, tmp_path, capsys, one_line_error):
    """The gallery stores a fingerprint of the model's weights; another model of the same size and views — or the
    same path after its run trained on (a resume moves last.pt on) — is refused instead of giving neighbours from
    another embedding space."""
    from minivb.engine.checkpoint import weights_fingerprint
    from minivb.engine.inference import load_model

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    videos = sorted(str(p) for p in (toy / "val").rglob("*.mp4"))[:4]
    out = tmp_path / "g.pt"
    assert main(["index", "--checkpoint", str(run), *videos, "--out", str(out)]) == 0
    capsys.readouterr()
    g = Gallery.load(out)
    assert g.fingerprint == weights_fingerprint(load_model(run)[0])
    code, stdout, _ = _cli(capsys, ["search", "--index", str(out), videos[0], "--json"])
    assert code == 0 and json.loads(stdout)[0]["neighbours"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)

    ckpt = read_checkpoint(run / "last.pt")  # the run trains on: same size, same views, other weights
    ckpt["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    save_checkpoint(tmp_path / "other.pt", ckpt)
    one_line_error(
        main,
        ["search", "--index", str(out), videos[0], "--checkpoint", str(tmp_path / "other.pt")],
        "its weights differ",
    )
    save_checkpoint(run / "last.pt", ckpt)  # the gallery's own checkpoint path now holds other weights
    one_line_error(main, ["search", "--index", str(out), videos[0]], "its weights differ")

    old = tmp_path / "old.pt"  # a gallery made before fingerprints were stored is still searched
    Gallery(g.embeddings, g.paths, checkpoint=str(tmp_path / "other.pt"), preprocessing=g.preprocessing).save(old)
    assert Gallery.load(old).fingerprint is None
    assert main(["search", "--index", str(old), videos[0]]) == 0


def test_a_gallery_that_cannot_be_scored_is_refused_when_loaded(tmp_path, one_line_error):
    paths = ["a.mp4", "b.mp4", "c.mp4"]
    with pytest.raises(ValueError, match="1 of 3 embeddings are not finite"):
        Gallery(torch.tensor([[1.0, 0.0], [float("nan"), 0.0], [0.0, 1.0]]), paths)
    with pytest.raises(ValueError, match="labels outside the class list: 'z'"):
        Gallery(torch.eye(3, 2), paths, labels=["x", "y", "z"], classes=["x", "y"])
    save_checkpoint(
        tmp_path / "nan.pt",
        {"format": "minivb.gallery", "embeddings": torch.full((2, 2), float("nan")), "paths": paths[:2]},
    )
    with pytest.raises(ValueError, match="damaged minivb gallery.*not finite"):
        Gallery.load(tmp_path / "nan.pt")
    empty = Gallery(torch.zeros(0, 2), [], labels=[], classes=["x"])
    metrics = retrieval_metrics(empty.embeddings, empty.label_ids())  # no video: nothing to score, no traceback
    assert metrics["queries"] == 0 and metrics["mAP"] is None and metrics["recall@1"] is None
    empty.save(tmp_path / "empty.pt")
    one_line_error(main, ["evaluate", "--index", str(tmp_path / "empty.pt")], "holds 0 video(s)")


def test_usage_errors_are_one_line_exit_2(tiny_run, toy, gallery_file, tmp_path, one_line_error):
    def error(argv, match):
        one_line_error(main, argv, match)

    run, out = str(tiny_run), str(tmp_path / "g.pt")
    video = str(sorted((toy / "val").rglob("*.mp4"))[0])
    error([], "the following arguments are required")
    error(["index", "--checkpoint", run, "--out", out], "nothing to index")
    error(["index", "--checkpoint", run, video, "--data-root", str(toy), "--out", out], "not both")
    error(["index", "--checkpoint", str(tmp_path / "none.pt"), video, "--out", out], "no such checkpoint")
    error(["index", "--checkpoint", run, "--data-root", str(tmp_path / "nowhere"), "--out", out], "does not exist")
    error(["index", "--checkpoint", run, "--data-root", str(toy), "--split", "test", "--out", out], "no test split")
    error(["index", "--checkpoint", run, video, "--out", out, "--crops", "2"], "--crops: invalid choice")
    error(["index", "--checkpoint", run, video, "--out", out, "--batch-size", "0"], "--batch-size: must be > 0")
    error(["index", "--checkpoint", run, video, "--out", str(gallery_file)], "already exists; pass --force")
    error(["index", "--checkpoint", run, video, "--out", str(tmp_path)], "is a folder")
    error(["index", "--checkpoint", run, video, "--out", "/proc/minivb-retrieve/g.pt"], "cannot write there")
    error(["index", "--checkpoint", run, video, "--out", out, "--clips", "100000"], "100000 clips")
    assert not (tmp_path / "g.pt").exists()
    error(["search", "--index", str(tmp_path / "none.pt"), video], "does not exist")
    error(["search", "--index", str(tiny_run / "last.pt"), video], "training checkpoint, not a gallery")
    error(["search", "--index", str(gallery_file), video, "--k", "0"], "--k: must be > 0")
    error(["search", "--index", str(gallery_file)], "the following arguments are required: QUERY")
    error(["evaluate"], "the following arguments are required: --index")
    # The checkpoint stored in the index has moved: say to pass --checkpoint; another model is refused.
    g = Gallery.load(gallery_file)
    g.checkpoint = str(tmp_path / "moved" / "last.pt")
    g.save(tmp_path / "moved.pt")
    error(["search", "--index", str(tmp_path / "moved.pt"), video], "pass --checkpoint")
    other = read_checkpoint(tiny_run / "last.pt")
    other["preprocessing"] = {**other["preprocessing"], "stride": 2}  # the record the checkpoint carries
    save_checkpoint(tmp_path / "other.pt", other)
    error(
        ["search", "--index", str(gallery_file), video, "--checkpoint", str(tmp_path / "other.pt")],
        "is not the model that made",
    )
    # Every label alone (the toy val split has one video per class): leave-one-out has nothing to find.
    Gallery(g.embeddings[:3], g.paths[:3], ["a", "b", "c"]).save(tmp_path / "alone.pt")
    error(["evaluate", "--index", str(tmp_path / "alone.pt")], "no label has two videos")


def test_a_recall_that_is_full_by_construction_is_said(gallery_file, tmp_path, capsys):
    """On a gallery of N videos every other video is within the N-1 nearest: recall@k for k >= N-1 is 100%
    whatever the model; the report says so instead of presenting it as a result."""
    g = Gallery.load(gallery_file)
    keep = [i for i, y in enumerate(g.labels) if y in ("growing", "shrinking")]  # 4 videos, 2 per label
    Gallery(g.embeddings[keep], [g.paths[i] for i in keep], [g.labels[i] for i in keep]).save(tmp_path / "small.pt")
    code, out, _ = _cli(capsys, ["evaluate", "--index", str(tmp_path / "small.pt")])
    assert code == 0 and "recall@5 100.0%" in out and "recall@10 100.0%" in out
    assert "note: recall@5 and recall@10 count(s) every other video of this 4-video gallery" in out
    code, out, _ = _cli(capsys, ["evaluate", "--index", str(gallery_file)])  # 16 videos: nothing trivial
    assert code == 0 and "note:" not in out


def test_help_for_every_subcommand(capsys, run_module):
    for command, options in (
        ("index", ("--checkpoint", "--data-root", "--split", "--out", "--force", "--clips", "--crops")),
        ("search", ("--index", "--k", "--json", "--checkpoint", "--device")),
        ("evaluate", ("--index", "--json", "--confusion", "--force")),
    ):
        with pytest.raises(SystemExit) as e:
            main([command, "--help"])
        text = capsys.readouterr().out
        assert e.value.code == 0 and f"python -m minivb.retrieve {command}" in text
        for option in options:
            assert option in text, (command, option)
    proc = run_module("minivb.retrieve", "--help")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert all(c in proc.stdout for c in ("index", "search", "evaluate", "cosine similarity"))
