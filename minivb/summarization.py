"""Built in notebook 08, §1.
Summarization: a long video as K keyframes — sliding windows → embeddings → segments → keyframes (seed §6).

    "VideoBERT performs well in a variety of video tasks, such as video classification,
     video retrieval and video summary generation."                    — seed, §6

    python -m minivb.summarize long.mp4 --checkpoint runs/toy-20250101-120000 --k 5 --out runs/strip.png   # the command

The model was trained on short clips (``num_frames`` frames ``stride`` apart) of one scene, so a
long video is first cut into *shots* (:func:`shot_cuts`: a hard cut is a spike in the frame
difference) and each shot is read as overlapping *windows* of exactly that clip, ``hop`` frames
apart — no window spans a cut (a window across a cut is a clip the model never saw, and it
answers it with confident nonsense)::

    video (N frames, any size) ──shot cuts──▶ shots ──windows inside each shot──▶ (W, T) frame numbers
        ──stream, centre square, resize──▶ window w = (T, 3, size, size) uint8
        ──model──▶ embedding e_w (dim,) L2-normalised, [CLS] attention per frame a_w (T,)
    e (W, dim) ──kernel temporal segmentation──▶ K segments of consecutive windows
    segment ──window nearest its mean embedding──▶ that window's frame with the most [CLS] attention

Pixels find shots; the model groups the shots by *what happens* in them: one activity filmed in
three shots is one segment.

Kernel temporal segmentation (KTS; Potapov et al., "Category-specific video summarization",
ECCV 2014 — the segmentation TVSum/SumMe summarizers use) splits the sequence into K runs of
consecutive windows minimising the total within-segment scatter Σ_segments Σ_w ‖e_w − mean‖²
(a linear kernel; solved exactly by dynamic programming, O(K·W²)).

``features="pixels"`` runs the same algorithm on raw pixels (the window's frames pooled to
16×16, no model): a baseline that tells what the model adds. :func:`uniform_keyframes` is the
reference everyone beats or not: the centres of K equal parts.

Evaluation with ground truth (:func:`minivb.data.toy.concat_video`, :func:`summary_metrics`): toy clips of known
classes and unequal lengths (each segment one or several shots) are joined into one video; a
summary is good if its keyframes hit every segment once.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .model import VideoBERT
from .plumbing.checks import UsageError, check_int
from .plumbing.device import autocast, memory_bytes
from .video import VideoDecodeError, crop_boxes, frame_times, iter_frames, read_frames, sample_indices, video_info

FEATURES = ("model", "pixels")
# shot_cuts: a cut changes the 32×32 gray frame by ≥ 12/255 on average, 3× its neighbours
CUT_MIN, CUT_RATIO = 12.0, 3.0
PIXEL_GRID = 16  # features="pixels": each frame average-pooled to 16×16×3
MAX_K = 20  # summarize without k: the most segments KTS's model selection considers
MIN_SEGMENT_SECONDS = 2.0  # summarize without k: no segment shorter than 2 s (see choose_k)
KTS_BYTES_PER_CELL = 6 * 8  # kts holds about six (W+1)² float64 / int64 arrays at once (gram, lengths, costs, …)
PANEL_INCHES, DPI = 2.4, 100  # filmstrip: one keyframe per 2.4 in × 100 dpi = 240 pixels of width
ROW_INCHES, COLUMNS = 2.0, 6  # filmstrip: rows 2 in high, of at most 6 keyframes (1,440 pixels)


@dataclass(frozen=True)
class Keyframe:
    """One keyframe and the segment it stands for (frames ``[start_frame, end_frame)``).

    Times are seconds, the frames' own presentation times (:func:`~minivb.video.frame_times`; a segment ends
    where its last frame ends), ``None`` when the file gives neither timestamps nor a frame rate. ``score``:
    cosine similarity between the keyframe's window and its segment's mean embedding (1 = the
    segment is one homogeneous shot; low = a segment of mixed content).
    """

    frame: int
    time: float | None
    start_frame: int
    end_frame: int
    start_time: float | None
    end_time: float | None
    score: float


@dataclass
class Summary:
    """:func:`summarize`'s result: K keyframes sorted by time, and how they were found."""

    video: str
    fps: float  # 0.0: unknown
    frames: int  # decodable frames
    features: str  # "model" or "pixels"
    hop: int
    windows: int  # W, windows the segmentation ran over
    keyframes: list[Keyframe] = field(default_factory=list)
    shots: int = 1  # shots found by shot_cuts (1 when shots=False)
    k_chosen: bool = False  # True: KTS chose K (summarize without k)

    @property
    def k(self) -> int:
        return len(self.keyframes)

    def to_dict(self) -> dict:
        """The JSON the command line writes."""
        return {
            "video": self.video,
            "fps": self.fps,
            "frames": self.frames,
            "k": self.k,
            "k_chosen": self.k_chosen,
            "features": self.features,
            "hop": self.hop,
            "windows": self.windows,
            "shots": self.shots,
            "keyframes": [
                {
                    "frame": f.frame,
                    "time": f.time,
                    "score": round(f.score, 4),
                    "segment": {
                        "start_frame": f.start_frame,
                        "end_frame": f.end_frame,
                        "start_time": f.start_time,
                        "end_time": f.end_time,
                    },
                }
                for f in self.keyframes
            ],
        }


# --------------------------------------------------------------------------- windows


def default_hop(prep) -> int:
    """Half a window's span ``(num_frames − 1)·stride + 1`` of ``prep`` (a checkpoint's
    :class:`~minivb.engine.checkpoint.Preprocessing`), at least 1."""
    return max(1, ((prep.num_frames - 1) * prep.stride + 1) // 2)


def window_indices(total_frames: int, num_frames: int, stride: int, hop: int) -> np.ndarray:
    """Frames of each sliding window → ``(W, num_frames)``: starts 0, hop, 2·hop, …, plus one window
    that ends at the last frame if the hops do not reach it. A video shorter than one window's
    span gives one window, its frames spread evenly (as :func:`~minivb.video.sample_indices`)."""
    total_frames, num_frames, stride, hop = (
        check_int(n, v)
        for n, v in (("total_frames", total_frames), ("num_frames", num_frames), ("stride", stride), ("hop", hop))
    )
    span = (num_frames - 1) * stride + 1
    if span >= total_frames:
        return sample_indices(total_frames, num_frames, stride)[None]  # (1, T)
    starts = list(range(0, total_frames - span + 1, hop))
    if starts[-1] != total_frames - span:
        starts.append(total_frames - span)
    return np.asarray(starts)[:, None] + np.arange(num_frames) * stride  # (W, T)


def shot_cuts(path: str | os.PathLike) -> tuple[int, list[int]]:
    """Hard cuts between shots, in one decoding pass → ``(frames, cuts)``; a cut ``c`` starts a new shot at frame ``c``.

    ``d_t`` = mean |gray_t − gray_{t−1}| of the frames shrunk to 32×32 (0–255). A cut is a spike: ``d_t ≥``
    :data:`CUT_MIN` and at least :data:`CUT_RATIO` × every ``d`` within two frames of it — so a moving camera
    (large ``d`` frame after frame) is no cut, and a change of scene (one large ``d``) is.
    """
    import cv2

    d, prev, frames = [], None, 0
    for _, frame in iter_frames(path):
        gray = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA).astype(
            np.float32
        )
        if prev is not None:
            d.append(float(np.abs(gray - prev).mean()))
        prev, frames = gray, frames + 1
    d = np.asarray(d)  # (frames − 1,): d[i] is the change from frame i to frame i + 1
    padded = np.pad(d, 2)
    around = np.max([padded[i : i + len(d)] for i in (0, 1, 3, 4)], axis=0) if len(d) else d  # the largest d within ±2
    return frames, (np.nonzero((d >= CUT_MIN) & (d >= CUT_RATIO * around))[0] + 1).tolist()


def shot_windows(frames: int, cuts: Sequence[int], num_frames: int, stride: int, hop: int) -> np.ndarray:
    """:func:`window_indices` inside every shot (between cuts) → ``(W, num_frames)``: no window spans a cut."""
    bounds = [0, *cuts, frames]
    return np.concatenate([a + window_indices(b - a, num_frames, stride, hop) for a, b in zip(bounds, bounds[1:])])


def _square(frame: np.ndarray, size: int) -> torch.Tensor:
    """uint8 RGB ``(H, W, 3)`` → its centre square resized to ``(3, size, size)`` uint8 (as evaluation crops)."""
    from torchvision.transforms import v2

    x = torch.from_numpy(frame).permute(2, 0, 1)  # (3, H, W)
    side = min(x.shape[-2:])
    top, left = crop_boxes(x.shape[-2], x.shape[-1], side, 1)[0]
    return v2.functional.resized_crop(x, top, left, side, side, [size, size], antialias=True)


@torch.no_grad()
def window_features(
    model: VideoBERT | None, clips: torch.Tensor, features: str = "model"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows ``(B, T, 3, size, size)`` uint8 → ``(embeddings (B, D) L2-normalised, frame scores (B, T))``.

    ``"model"``: the [CLS] state and the last layer's [CLS] attention summed over each frame's
    regions (``cls_attention(attns[-1]).sum(-1)``). ``"pixels"``: every frame pooled to 16×16×3 in
    [0, 1], concatenated; the frame score prefers the window's middle frame (no model to ask).
    """
    B, T = clips.shape[:2]
    if features == "model":
        h, attns = model.hidden_states(clips, need_weights=True)  # (B, L, dim), [(B, heads, L, L)] * depth
        emb = h[:, 0].float()  # (B, dim)
        scores = model.cls_attention(attns[-1]).sum(-1).float()  # (B, T, R) → (B, T)
    elif features == "pixels":
        x = clips.flatten(0, 1).float() / 255  # (B·T, 3, size, size)
        emb = F.adaptive_avg_pool2d(x, PIXEL_GRID).reshape(B, -1)  # (B, T·3·16·16)
        middle = (T - 1) / 2
        scores = -(torch.arange(T, device=clips.device) - middle).abs().float().expand(B, T)  # (B, T)
    else:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    return F.normalize(emb, dim=-1), scores


def _stream_windows(path, windows: np.ndarray, size: int, batch_size: int):
    """Yield ``(first window number, clips (b, T, 3, size, size) uint8)`` in order, decoding the file once.

    Only frames some window uses are kept (resized to size²), and only until the last window that
    uses them has been yielded: memory is O(window span × size²), whatever the video's length.
    """
    needed = np.unique(windows)
    step = int(np.gcd.reduce(needed)) or 1  # decode every frame, colour-convert only every step-th
    wanted, lasts = set(needed.tolist()), windows.max(axis=1)  # (W,)
    cache: dict[int, torch.Tensor] = {}
    done = ready = 0  # windows [done, ready) are complete but not yet yielded

    def flush(upto: int):
        nonlocal done
        clips = torch.stack([torch.stack([cache[i] for i in windows[w].tolist()]) for w in range(done, upto)])
        first, done = done, upto
        keep = windows[done:].min() if done < len(windows) else math.inf
        for i in [i for i in cache if i < keep]:
            del cache[i]
        return first, clips  # (b, T, 3, size, size)

    frames = iter_frames(path, step)
    try:
        for i, frame in frames:
            if i in wanted:
                cache[i] = _square(frame, size)
            while ready < len(windows) and lasts[ready] <= i:
                ready += 1
            if ready - done >= batch_size:
                yield flush(ready)
            if ready == len(windows):
                break
    finally:
        frames.close()
    if ready < len(windows):
        raise VideoDecodeError(path, f"frame {int(lasts[ready])} needed, but the video ended before it")
    if done < ready:
        yield flush(ready)


# --------------------------------------------------------------------------- segmentation


def _scatter_dp(x: np.ndarray | torch.Tensor, k: int, at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """KTS's dynamic programme for 1…k segments → ``(back (k + 1, W + 1), least (k + 1,))``.

    ``least[j]``: the least total within-segment scatter of ``x``'s W rows cut into ``j`` segments (``inf``: no
    such cut); ``back[j, b]``: where the last of ``j`` segments over rows ``:b`` starts. See :func:`kts`.
    """
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x must be shaped (W, D) with W >= 1, got {x.shape}")
    W, k = len(x), check_int("k", k)
    if k > W:
        raise ValueError(f"cannot cut {W} windows into k={k} segments; k must be at most {W}")
    s1 = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, 0)])  # (W+1, D)
    s2 = np.concatenate([[0.0], np.cumsum((x * x).sum(1))])  # (W+1,)
    gram = s1 @ s1.T  # (W+1, W+1): ‖S1[b] − S1[a]‖² = G[b,b] + G[a,a] − 2 G[a,b]
    sq = np.diag(gram)
    length = np.arange(W + 1)[None, :] - np.arange(W + 1)[:, None]  # (a, b) → b − a
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = s2[None, :] - s2[:, None] - (sq[None, :] + sq[:, None] - 2 * gram) / length  # (a, b)
    cost = np.where(length > 0, np.maximum(cost, 0.0), np.inf)  # a segment is not empty; rounding stays ≥ 0
    if at is not None:  # rows a:b last at[b] − at[a] seconds: none shorter than 2 s (or than the whole video)
        shortest = min(MIN_SEGMENT_SECONDS, at[-1] - at[0]) - 1e-6
        cost[at[None, :] - at[:, None] < shortest] = np.inf
    best = np.full(W + 1, np.inf)
    best[0] = 0.0  # zero segments cover zero rows
    back = np.zeros((k + 1, W + 1), np.int64)
    least = np.full(k + 1, np.inf)
    for j in range(1, k + 1):
        total = best[:, None] + cost  # (a, b): j−1 segments over rows :a, then one over a:b
        back[j] = total.argmin(0)
        best = total.min(0)  # (W+1,)
        least[j] = best[W]
    return back, least


def kts(x: np.ndarray | torch.Tensor, k: int, at: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Kernel temporal segmentation with a linear kernel: ``x (W, D)`` → ``(bounds (k + 1,), cost)``.

    Segment ``j`` is rows ``bounds[j]:bounds[j + 1]`` (``bounds[0] = 0``, ``bounds[k] = W``), chosen
    to minimise the total within-segment scatter ``Σ_j Σ_{w in j} ‖x_w − mean_j‖²`` — exactly, by
    dynamic programming. With prefix sums ``S1[b] = Σ_{w<b} x_w`` and ``S2[b] = Σ_{w<b} ‖x_w‖²``,
    the scatter of rows ``a:b`` is ``S2[b] − S2[a] − ‖S1[b] − S1[a]‖² / (b − a)``, and
    ``best[j][b] = min_{a<b} best[j−1][a] + scatter(a, b)``: O(W²·D) for the costs, O(k·W²) for the DP.
    Memory is O(W²) (the cost matrix): fine for a few thousand windows; for longer videos raise ``hop``.
    ``at (W + 1,)``: when a boundary before row ``b`` would fall, in seconds (:func:`_boundaries`); with it,
    no segment is shorter than :data:`MIN_SEGMENT_SECONDS` (``ValueError`` if ``k`` such segments do not fit).
    """
    back, least = _scatter_dp(x, k, at)
    if not np.isfinite(least[k]):
        raise ValueError(f"{k} segments of at least {MIN_SEGMENT_SECONDS:g} s do not fit in {at[-1] - at[0]:.2f} s")
    bounds = [back.shape[1] - 1]  # W
    for j in range(k, 0, -1):
        bounds.append(int(back[j, bounds[-1]]))
    return np.asarray(bounds[::-1]), float(least[k])


def choose_k(x: np.ndarray | torch.Tensor, max_k: int = MAX_K, at: np.ndarray | None = None) -> tuple[int, np.ndarray]:
    """How many segments, by KTS's own model selection → ``(k, criterion (max_k,))`` for k = 1 … max_k.

    More segments always lower the scatter, so KTS (Potapov et al. 2014, their ``cpd_auto``) adds a penalty
    that grows with the number of change points ``m = k − 1`` and picks the least of

        scatter(k) / W + v · m / (2W) · (log(W / m) + 1)      (0 for m = 0)

    with ``v`` = 1, the largest value of the kernel ⟨x, x⟩ for unit rows (our window embeddings). ``max_k``
    is capped at W. On real clips the embeddings are noisy, and KTS fits the noise with short segments (a 10-second
    clip of one activity got 17, some 0.25 s long); ``at`` (as :func:`kts`'s) allows no segment shorter than
    :data:`MIN_SEGMENT_SECONDS`, so a video gets at most one segment per 2 s, and noise no segments of its own.
    """
    W = len(x)
    max_k = min(check_int("max_k", max_k), W)
    _, least = _scatter_dp(x, max_k, at)  # (max_k + 1,)
    m = np.arange(max_k)  # change points of k = 1 … max_k segments
    with np.errstate(divide="ignore", invalid="ignore"):
        penalty = np.where(m > 0, m / (2 * W) * (np.log(W / np.maximum(m, 1)) + 1), 0.0)
    criterion = least[1:] / W + penalty  # (max_k,)
    return int(criterion.argmin()) + 1, criterion


def uniform_keyframes(total_frames: int, k: int) -> list[int]:
    """The baseline: the centre frames of ``k`` equal parts of the video, ``⌊(2i + 1)·N / 2k⌋``."""
    total_frames, k = check_int("total_frames", total_frames), check_int("k", k)
    return [(2 * i + 1) * total_frames // (2 * k) for i in range(k)]


# --------------------------------------------------------------------------- summarizing


@torch.no_grad()
def summarize(
    model: VideoBERT | None,
    path: str | os.PathLike,
    prep,
    k: int | None = None,
    *,
    max_k: int = MAX_K,
    hop: int | None = None,
    features: str = "model",
    shots: bool = True,
    batch_size: int = 16,
    device: torch.device | str | None = None,
) -> Summary:
    """``k`` keyframes of the video at ``path`` (see the module docstring) → :class:`Summary`.

    ``prep``: the checkpoint's clip (:func:`~minivb.engine.inference.load_model`); ``hop``: frames between
    window starts (default: half a window's span). ``features="pixels"`` needs no model (pass
    ``None``). ``k=None``: KTS chooses how many segments (:func:`choose_k`, at most ``max_k``, none shorter than
    :data:`MIN_SEGMENT_SECONDS` when the file gives times). ``k`` larger
    than the number of windows → ``ValueError`` saying how many there are; an unreadable file →
    :class:`~minivb.video.VideoDecodeError`.
    """
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    if features == "model" and model is None:
        raise ValueError('features="model" needs a model')
    k = None if k is None else check_int("k", k)
    max_k, batch_size = check_int("max_k", max_k), check_int("batch_size", batch_size)
    hop = default_hop(prep) if hop is None else check_int("hop", hop)
    info = video_info(path, exact=False)  # fps
    times = frame_times(path)  # (frames,) seconds, or None; one cached decoding pass that also counts the frames
    total, shot_starts = shot_cuts(path) if shots else (video_info(path).frames, [])
    windows = shot_windows(total, shot_starts, prep.num_frames, prep.stride, hop)  # (W, T)
    if k is not None and k > len(windows):
        raise ValueError(
            f"k={k} keyframes asked, but the video ({total} frames) gives only {len(windows)} "
            f"windows of {prep.num_frames} frames {prep.stride} apart, hop {hop}"
        )
    need, have = KTS_BYTES_PER_CELL * (len(windows) + 1) ** 2, memory_bytes(torch.device("cpu"))
    if need > have / 4:  # before any window is embedded: the segmentation's memory grows with windows²
        raise UsageError(
            f"the video ({total:,} frames) gives {len(windows):,} windows at hop {hop}; segmenting them needs "
            f"about {need / 1e9:,.1f} GB (it grows with the square of the windows), this machine has "
            f"{have / 1e9:,.1f} GB; raise --hop"
        )
    if device is None:
        device = next(model.parameters()).device if model is not None else torch.device("cpu")
    emb, scores = _embed_windows(model, path, windows, prep.size, features, batch_size, torch.device(device))
    chosen, edges = k is None, _segment_times(times, info.fps)  # edges: (total + 1,) seconds, or None
    cuts = _boundaries(windows, shot_starts, total)  # (W + 1,) frames
    at = edges[cuts] if chosen and edges is not None else None  # (W + 1,) seconds: no segment under 2 s
    if chosen:
        k, _ = choose_k(emb, max_k, at)
    bounds, _ = kts(emb, k, at)  # (k + 1,) window numbers
    keyframes = _keyframes(emb, scores, windows, bounds, cuts[bounds], edges)
    n_shots = len(shot_starts) + 1
    return Summary(str(path), info.fps, total, features, hop, len(windows), keyframes, n_shots, chosen)


@torch.no_grad()
def _embed_windows(
    model: VideoBERT | None, path, windows: np.ndarray, size: int, features: str, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window, streamed from the file → ``(embeddings (W, D) unit rows, frame scores (W, T))`` on the CPU."""
    if model is not None:
        model.eval()
    emb, scores = [], []
    with autocast(device):
        for _, clips in _stream_windows(path, windows, size, batch_size):
            e, s = window_features(model, clips.to(device), features)  # (b, D), (b, T)
            emb.append(e.float().cpu())
            scores.append(s.float().cpu())
    return torch.cat(emb), torch.cat(scores)  # (W, D), (W, T)


def _boundaries(windows: np.ndarray, shot_starts: Sequence[int], total: int) -> np.ndarray:
    """Where a segment boundary before window ``b`` falls → frames ``(W + 1,)``, from 0 to ``total``: at the shot
    cut when windows ``b − 1`` and ``b`` lie in two shots, else halfway between their centres."""
    centres = windows.mean(axis=1)  # (W,) each window's centre frame (float)
    shot_of = np.searchsorted(shot_starts, windows[:, 0], side="right")  # (W,) the shot each window lies in
    halfway = np.floor((centres[:-1] + centres[1:]) / 2).astype(np.int64) + 1  # (W − 1,)
    return np.concatenate([[0], np.where(shot_of[1:] != shot_of[:-1], windows[1:, 0], halfway), [total]])


def _keyframes(
    emb: torch.Tensor,
    scores: torch.Tensor,
    windows: np.ndarray,
    bounds: np.ndarray,
    cuts: np.ndarray,
    edges: np.ndarray | None,
) -> list[Keyframe]:
    """K segments of windows (``bounds``) → one :class:`Keyframe` each, sorted by time.

    A segment's frames run from its boundary to the next (``cuts (K + 1,)``, :func:`_boundaries`). Its keyframe:
    in the window nearest the segment's mean embedding, the frame (inside the segment) with the highest score.
    ``edges`` (:func:`_segment_times`): when each frame starts, and when the last one ends, in seconds.
    """
    cuts = cuts.tolist()
    seconds = (lambda f: round(float(edges[f]), 3)) if edges is not None else (lambda f: None)
    keyframes = []
    for j in range(len(bounds) - 1):
        a, b = bounds[j], bounds[j + 1]
        mean = emb[a:b].mean(0)  # (D,)
        w = a + int((emb[a:b] - mean).norm(dim=1).argmin())  # the window nearest the segment's mean
        inside = torch.from_numpy((windows[w] >= cuts[j]) & (windows[w] < cuts[j + 1]))  # (T,) frames in the segment
        s = scores[w].masked_fill(~inside, -math.inf) if inside.any() else scores[w]
        frame = int(windows[w][int(s.argmax())])
        score = float(F.cosine_similarity(emb[w], mean, dim=0)) if mean.norm() > 0 else 0.0
        keyframes.append(
            Keyframe(frame, seconds(frame), cuts[j], cuts[j + 1], seconds(cuts[j]), seconds(cuts[j + 1]), score)
        )
    return sorted(keyframes, key=lambda f: f.frame)


# --------------------------------------------------------------------------- picture


def _segment_times(times: np.ndarray | None, fps: float) -> np.ndarray | None:
    """Frame times ``(N,)`` → ``(N + 1,)``: when each frame starts, then when the last one ends (one frame later)."""
    if times is None:
        return None
    step = 1 / fps if fps > 0 else (times[-1] - times[-2] if len(times) > 1 else 0.0)
    return np.append(times, times[-1] + step)


def format_time(seconds: float | None, frame: int) -> str:
    """A time into the video (``12.3 s``), or ``frame N`` when the file gives no times."""
    return f"{seconds:.1f} s" if seconds is not None else f"frame {frame}"


def filmstrip(video_path: str | os.PathLike, summary: Summary):
    """The keyframes in rows, each titled with its time and segment, over a timeline of the segments → a
    matplotlib ``Figure`` (Agg canvas, no pyplot). At most :data:`COLUMNS` keyframes a row (K = 15: 3 rows of 5),
    each ``PANEL_INCHES`` wide (240 px at 100 dpi); one row and the timeline are 2.7 inches high."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kf = summary.keyframes
    if not kf:
        raise ValueError("the summary has no keyframes")
    images = read_frames(video_path, [f.frame for f in kf])  # (K, H, W, 3): K frames only, at full size
    pixel_aspect = video_info(video_path, exact=False).pixel_aspect  # ≠ 1: the file's pixels are not square
    K, timed = len(kf), kf[0].time is not None
    rows = math.ceil(K / COLUMNS)
    columns = math.ceil(K / rows)
    height = 0.7 + ROW_INCHES * rows  # inches: the timeline 0.7, each row 1.55 of picture and 0.45 of titles
    fig = Figure(figsize=(PANEL_INCHES * columns, height), dpi=DPI)
    FigureCanvasAgg(fig)
    box = dict(left=0.01, right=0.99, top=1 - 0.38 / height, bottom=0.77 / height)  # the pictures' part of the figure
    grid = fig.add_gridspec(rows, columns, **box, hspace=0.45 / 1.55, wspace=0.05)  # hspace: in picture heights
    tab20 = matplotlib.colormaps["tab20"]  # matplotlib's 10 colours (C0 … C9), then a light shade of each
    colours = [tab20(2 * (j % 10) + (j // 10) % 2) for j in range(K)]  # 20 colours; neighbours always differ
    for j, (f, image) in enumerate(zip(kf, images)):
        ax = fig.add_subplot(grid[j // columns, j % columns])
        ax.imshow(image, aspect=1 / pixel_aspect)  # aspect: a pixel's height / width as drawn
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set(color=colours[j], linewidth=3)
        ax.set_title(
            f"{format_time(f.time, f.frame)}\nsegment {format_time(f.start_time, f.start_frame)} – "
            f"{format_time(f.end_time, f.end_frame - 1)}",
            fontsize=8,
        )
    bar = fig.add_axes((0.01, 0.4 / height, 0.98, 0.12 / height))  # the timeline, in seconds (frames if no times)
    for j, f in enumerate(kf):
        start, end, at = (f.start_time, f.end_time, f.time) if timed else (f.start_frame, f.end_frame, f.frame)
        bar.axvspan(start, end, color=colours[j], alpha=0.45, linewidth=0)
        bar.axvline(at, color="black", linewidth=1.5)
    bar.set(xlim=(kf[0].start_time, kf[-1].end_time) if timed else (0, summary.frames), ylim=(0, 1), yticks=[])
    bar.tick_params(axis="x", labelsize=8)
    bar.set_xlabel("seconds" if timed else "frame", fontsize=8, labelpad=1)
    return fig


# --------------------------------------------------------------------------- evaluation


def summary_metrics(keyframe_frames: Sequence[int], segments: Sequence[tuple[str, int, int]]) -> dict:
    """How well keyframes cover ground-truth segments ``[(label, start, end)]`` (end exclusive).

    TVSum/SumMe score a summary by precision/recall of its overlap with the reference; for keyframes
    the overlap is a one-to-one matching: a keyframe matches the segment it falls in, each segment is
    matched at most once (a second keyframe in the same segment, or one outside every segment, is
    unmatched). ``precision`` = matched / keyframes (no redundant keyframes), ``recall`` = matched /
    segments, ``f1`` their harmonic mean; ``coverage`` = fraction of segments holding ≥ 1 keyframe
    (equal to recall under this matching, kept under its own name). ``matched``: the count.
    """
    hit = set()
    for f in keyframe_frames:
        for s, (_, start, end) in enumerate(segments):
            if start <= f < end:
                hit.add(s)
                break
    matched = len(hit)
    precision = matched / len(keyframe_frames) if len(keyframe_frames) else 0.0
    recall = matched / len(segments) if len(segments) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"coverage": recall, "precision": precision, "recall": recall, "f1": f1, "matched": matched}
