"""Built in notebook 09, §1.
Visual words: one discrete token per video frame, from frozen CNN features and hierarchical k-means.

VideoBERT (Sun et al., ICCV 2019) turns video into *visual words* before its BERT sees it: S3D
features of 1.5 s clips, clustered by hierarchical k-means — 4 levels of 12 clusters, so
12⁴ = 20,736 words, a word being a path from the root of the tree to a leaf. Here, scaled down:

    video (B, T, 3, H, W) ──frozen CNN──▶ (B, T, R, D_enc) ──concatenate regions──▶ (B, T, F), F = R·D_enc
        ──HierarchicalKMeans.assign──▶ words (B, T) in 0 … clusters**levels − 1      (one word per frame)

:func:`kmeans` (Lloyd's algorithm with greedy k-means++ seeding, deterministic from a seed) builds each
node of the tree; :class:`HierarchicalKMeans` (alias :data:`Vocabulary`) fits, assigns and
stores it (plain tensors: it lives inside a ``weights_only`` checkpoint). :mod:`minivb.pretrain`
pretrains a BERT on the words.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .plumbing.checks import check_int
from .plumbing.samples import sample_seed

_NODE_STREAM = 12  # domain tag for sample_seed (minivb.data.clips uses 1…3, minivb.pretraining 11)


# --------------------------------------------------------------------------- features


@torch.no_grad()
def frame_features(encoder: nn.Module, videos: torch.Tensor) -> torch.Tensor:
    """One feature vector per frame from a frozen encoder: ``(B, T, 3, H, W)`` → ``(B, T, R·D_enc)`` float.

    The frame's region features concatenated in region order (row-major tiles), so the vector
    keeps the coarse layout. Runs in eval mode (BatchNorm uses its running statistics) and
    puts the encoder back into the mode it was in. The videos go to the encoder's device.
    """
    if videos.ndim != 5:
        raise ValueError(f"videos must be shaped (B, T, 3, H, W), got {tuple(videos.shape)}")
    was_training = encoder.training
    encoder.eval()
    try:
        param = next(encoder.parameters(), None)
        if param is not None:
            videos = videos.to(param.device)
        regions = encoder(videos)  # (B, T, R, D_enc)
    finally:
        encoder.train(was_training)
    return regions.flatten(2).float()  # (B, T, R·D_enc)


FLOW_FLOOR = 0.05  # flow_features: a region moving less than 0.05 pixels per step is not stretched to length 1


@torch.no_grad()
def flow_features(videos: torch.Tensor, grid: int = 2) -> torch.Tensor:
    """Built in notebook 10, §2. Motion features: ``(B, T, 3, H, W)`` uint8 → ``(B, T − 1, 2·grid²)`` float.

    VideoBERT's words come from S3D, a network that sees motion; a random CNN's single frames
    (:func:`frame_features`) hardly do. Optical flow sees motion by construction: for each pair of consecutive
    frames, OpenCV's Farnebäck flow (where each pixel moved, ``(H, W, 2)`` in pixels), averaged over
    ``grid × grid`` regions, scaled to unit length (a region moving under :data:`FLOW_FLOOR` pixels stays short, as a
    still frame stays near 0): the direction of the motion in each region, whatever the object's colour or shape.
    ``python -m minivb.bench language`` measures what each kind of word allows (its "ceiling" line).
    """
    import cv2  # (OpenCV: the course's video library, notebook 01)

    if videos.ndim != 5 or videos.shape[2] != 3 or videos.dtype != torch.uint8:
        raise ValueError(f"videos must be uint8 shaped (B, T, 3, H, W), got {videos.dtype} {tuple(videos.shape)}")
    grid = check_int("grid", grid)
    B, T = videos.shape[:2]
    out = torch.zeros(B, max(T - 1, 0), 2, grid, grid)
    for b, clip in enumerate(videos.permute(0, 1, 3, 4, 2).cpu().numpy()):  # (T, H, W, 3) RGB
        grey = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in clip]
        for t in range(T - 1):
            flow = cv2.calcOpticalFlowFarneback(grey[t], grey[t + 1], None, 0.5, 2, 9, 3, 5, 1.1, 0)  # (H, W, 2)
            region = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(flow).permute(2, 0, 1), grid)
            out[b, t] = region  # (2, grid, grid)
    flat = out.flatten(2)  # (B, T − 1, 2·grid²)
    return flat / flat.norm(dim=-1, keepdim=True).clamp(min=FLOW_FLOOR)


# --------------------------------------------------------------------------- k-means


def _nearest(x: torch.Tensor, centroids: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Index of the nearest centroid ``(N,)`` for x ``(N, F)``, centroids ``(k, F)``; ties → lowest index.

    ``valid`` ``(k,)`` bool: only those centroids can be chosen.
    """
    # ‖x - c‖² = ‖x‖² - 2 x·c + ‖c‖²; the ‖x‖² term is the same for every c, so argmin needs only the rest
    d = (centroids * centroids).sum(1) - 2 * x @ centroids.T  # (N, k)
    if valid is not None:
        d = d.masked_fill(~valid, float("inf"))
    return d.argmin(1)


def _sq_dist_to(x: torch.Tensor, centroids: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """Squared distance ``(N,)`` of every point to its own centroid."""
    return (x - centroids[assignment]).pow(2).sum(1)


def _kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding → ``(k, F)``: the first centroid uniformly; for each next one, ``2 + ⌊ln k⌋``
    candidates drawn with probability ∝ D², keeping the one that lowers Σ D² most.

    D = distance to the nearest centroid chosen so far. Plain k-means++ (Arthur & Vassilvitskii, 2007) draws one
    candidate; trying a few and keeping the best (their "greedy" variant, scikit-learn's default) avoids most
    unlucky starts. When every point coincides with a chosen centroid (fewer than k distinct points) the
    candidates are drawn uniformly (duplicates).
    """
    N, trials = len(x), 2 + int(math.log(k))
    first = int(torch.randint(N, (), generator=generator))
    idx, d2 = [first], (x - x[first]).pow(2).sum(1)  # (N,)
    for _ in range(1, k):
        total = d2.sum()
        if total > 0:
            candidates = torch.multinomial((d2 / total).double().cpu(), trials, replacement=True, generator=generator)
        else:
            candidates = torch.randint(N, (trials,), generator=generator)
        candidates = candidates.to(x.device)
        exact = "donot_use_mm_for_euclid_dist"  # differences, not the matmul identity: a duplicate is at exactly 0
        d2_with = torch.minimum(d2, torch.cdist(x[candidates], x, compute_mode=exact).pow(2))  # (trials, N)
        best = int(d2_with.sum(1).argmin())
        idx.append(int(candidates[best]))
        d2 = d2_with[best]
    return x[idx].clone()


def kmeans(x: torch.Tensor, k: int, *, seed: int, iters: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's algorithm: x ``(N, F)`` → ``(centroids (k, F), assignment (N,) long)``.

    Greedy k-means++ seeding from a ``torch.Generator`` seeded with ``seed`` (CPU), so the result is a
    function of ``(x, k, seed)``. Alternates "assign each point to its nearest centroid" and
    "move each centroid to the mean of its points" until the assignment stops changing or
    after ``iters`` rounds. A cluster left empty is re-seeded with the point farthest from its
    own centroid (the next empty one with the next farthest, …): deterministic.

    ``k > N`` raises ValueError. With fewer than ``k`` *distinct* points some centroids are
    duplicates and their clusters stay empty (ties go to the lowest index); check
    ``assignment.bincount(minlength=k)`` if that matters. The returned assignment is always the
    nearest-centroid assignment for the returned centroids.
    """
    k, iters = check_int("k", k), check_int("iters", iters)
    if x.ndim != 2:
        raise ValueError(f"x must be shaped (N, F), got {tuple(x.shape)}")
    if k > len(x):
        raise ValueError(f"k-means with k={k} clusters needs at least k points, got {len(x)}")
    x = x.float()
    generator = torch.Generator().manual_seed(int(seed))
    centroids = _kmeans_pp(x, k, generator).to(x.device)  # (k, F)
    assignment = None
    for _ in range(iters):
        new = _nearest(x, centroids)  # (N,)
        if assignment is not None and torch.equal(new, assignment):
            break  # converged: the centroids are already the means of these clusters
        assignment = new
        counts = torch.bincount(assignment, minlength=k)  # (k,)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, x)  # (k, F)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids)
        empty = (counts == 0).nonzero().flatten().tolist()
        if empty:  # re-seed with the points worst served by their centroid
            far = _sq_dist_to(x, centroids, assignment).argsort(descending=True, stable=True)
            for c, j in zip(empty, far.tolist()):
                centroids[c] = x[j]
    return centroids, _nearest(x, centroids)


# --------------------------------------------------------------------------- hierarchical vocabulary


class HierarchicalKMeans:
    """A vocabulary of visual words: a tree of k-means, ``levels`` deep, ``clusters`` children per node.

    Word id = the path through the tree in mixed radix, most significant digit first:
    ``word = ((d₀·C + d₁)·C + d₂)·C + …`` with ``dₗ`` the child chosen at level ``l`` and
    ``C = clusters``; so ``vocab_size = clusters**levels`` and ``word // C**(levels-1-l) % C`` is
    digit ``l``. The prefix of length ``l + 1`` (``word // C**(levels-1-l)``) names a node of level
    ``l + 1``; ``centroids[l]`` ``(C**(l+1), F)`` holds, at row ``prefix``, the centroid of that node.

    Small nodes: a node with ``n < C`` points is clustered into ``n`` clusters; more generally
    only the children that receive points (k-means with fewer distinct points than clusters
    leaves some empty) are *used* (``used[l]`` ``(C**(l+1),)`` bool). An unused child keeps the
    parent's centroid, is never chosen by :meth:`assign` and so never gets a word (its words
    are valid ids with count 0). Every node reached by a point has at least one used child, so
    every point gets a word, and two frames share a word only if they shared every cluster.

    ``counts`` ``(vocab_size,)``: how often each word occurs in the fitting data;
    :attr:`majority_word`: the most frequent one (a "predict the commonest word" baseline).
    Everything is plain tensors and ints (:meth:`state_dict`), so a vocabulary can live inside
    a checkpoint loaded with ``torch.load(weights_only=True)``. Memory: about
    ``vocab_size · 1.09 · F`` floats (12⁴ words of 2048 features: 185 MB).
    """

    def __init__(
        self, levels: int, clusters: int, centroids: list[torch.Tensor], used: list[torch.Tensor], counts: torch.Tensor
    ):
        self.levels, self.clusters = check_int("levels", levels), check_int("clusters", clusters)
        if clusters < 2:
            raise ValueError(f"clusters must be at least 2, got {clusters}")
        if len(centroids) != levels or len(used) != levels:
            raise ValueError(f"need {levels} levels of centroids and used flags, got {len(centroids)} and {len(used)}")
        for level, (c, u) in enumerate(zip(centroids, used)):
            n = clusters ** (level + 1)
            if c.ndim != 2 or len(c) != n or u.shape != (n,) or u.dtype != torch.bool:
                raise ValueError(
                    f"level {level}: need centroids ({n}, F) and bool used ({n},), "
                    f"got {tuple(c.shape)} and {tuple(u.shape)} {u.dtype}"
                )
        if counts.shape != (clusters**levels,):
            raise ValueError(f"counts must be shaped ({clusters**levels},), got {tuple(counts.shape)}")
        self.centroids, self.used, self.counts = list(centroids), list(used), counts.long()

    @property
    def vocab_size(self) -> int:
        return self.clusters**self.levels

    @property
    def dim(self) -> int:
        """F, the feature size the vocabulary was fitted on."""
        return self.centroids[0].shape[1]

    @property
    def majority_word(self) -> int:
        """The most frequent word in the fitting data (lowest id on ties)."""
        return int(self.counts.argmax())

    @classmethod
    def fit(
        cls, x: torch.Tensor, levels: int = 2, clusters: int = 12, seed: int = 0, *, iters: int = 50
    ) -> "HierarchicalKMeans":
        """Cluster x ``(N, F)`` into ``clusters``, each cluster again into ``clusters``, … ``levels`` deep.

        Node ``prefix`` of level ``l`` runs :func:`kmeans` with seed ``sample_seed(·, seed, l, prefix)``:
        the vocabulary is a function of ``(x, levels, clusters, seed, iters)``.
        """
        levels, clusters = check_int("levels", levels), check_int("clusters", clusters)
        if clusters < 2:
            raise ValueError(f"clusters must be at least 2, got {clusters}")
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"x must be shaped (N, F) with N ≥ 1, got {tuple(x.shape)}")
        x = x.float()
        C, parent = clusters, x.mean(0, keepdim=True)  # parent centroids (C**l, F); level 0: the root
        prefix = torch.zeros(len(x), dtype=torch.long, device=x.device)  # (N,) node of every point
        centroids, used = [], []
        for level in range(levels):
            cent = parent.repeat_interleave(C, dim=0)  # (C**(l+1), F): unused children keep the parent's centroid
            use = torch.zeros(len(cent), dtype=torch.bool, device=x.device)
            for node, idx in _groups(prefix):
                points = x[idx]  # (n, F)
                c, a = kmeans(
                    points, min(C, len(points)), seed=sample_seed(_NODE_STREAM, seed, level, node), iters=iters
                )
                nonempty = torch.bincount(a, minlength=len(c)) > 0
                cent[node * C : node * C + len(c)] = c
                use[node * C : node * C + len(c)] = nonempty
            if (
                used
            ):  # a used node that got no points (float rounding between kmeans and routing): one child, its centroid
                lone = used[-1] & ~use.view(-1, C).any(1)  # (C**l,)
                use.view(-1, C)[lone, 0] = True
            centroids.append(cent)
            used.append(use)
            prefix = _descend(x, prefix, cent, use, C)  # the same routing as assign(): fit and assign agree
            parent = cent
        counts = torch.bincount(prefix, minlength=C**levels).cpu()
        return cls(levels, clusters, [c.cpu() for c in centroids], [u.cpu() for u in used], counts)

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(..., F)`` → words ``(...)`` long: descend the tree, nearest used child at each level."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"features have {x.shape[-1]} values, the vocabulary was fitted on {self.dim}")
        flat = x.reshape(-1, self.dim).float()  # (N, F)
        prefix = torch.zeros(len(flat), dtype=torch.long, device=flat.device)
        for cent, use in zip(self.centroids, self.used):
            prefix = _descend(flat, prefix, cent.to(flat.device), use.to(flat.device), self.clusters)
        return prefix.reshape(x.shape[:-1])

    def path(self, words: torch.Tensor) -> torch.Tensor:
        """Words ``(...)`` → their digits ``(..., levels)``: the child chosen at each level."""
        powers = self.clusters ** torch.arange(self.levels - 1, -1, -1, device=words.device)
        return words[..., None] // powers % self.clusters

    def state_dict(self) -> dict:
        return dict(
            levels=self.levels,
            clusters=self.clusters,
            centroids=list(self.centroids),
            used=list(self.used),
            counts=self.counts,
        )

    @classmethod
    def from_state_dict(cls, state: dict) -> "HierarchicalKMeans":
        return cls(state["levels"], state["clusters"], state["centroids"], state["used"], state["counts"])


Vocabulary = HierarchicalKMeans


def _groups(prefix: torch.Tensor):
    """``(node, indices)`` for every distinct value of prefix ``(N,)``, ascending; indices in original order."""
    order = prefix.argsort(stable=True)
    nodes, sizes = torch.unique_consecutive(prefix[order], return_counts=True)
    return zip(nodes.tolist(), order.split(sizes.tolist()))


def _descend(x: torch.Tensor, prefix: torch.Tensor, cent: torch.Tensor, use: torch.Tensor, C: int) -> torch.Tensor:
    """One level down: prefix ``(N,)`` → ``prefix·C + nearest used child`` ``(N,)``."""
    out = torch.empty_like(prefix)
    for node, idx in _groups(prefix):
        rows = slice(node * C, node * C + C)
        out[idx] = node * C + _nearest(x[idx], cent[rows], use[rows])
    return out


def tokenize(encoder: nn.Module, vocabulary: HierarchicalKMeans, videos: torch.Tensor) -> torch.Tensor:
    """Videos ``(B, T, 3, H, W)`` → visual words ``(B, T)`` long (one per frame), on the encoder's device."""
    return vocabulary.assign(frame_features(encoder, videos))
