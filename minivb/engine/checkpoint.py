"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A training checkpoint is a plain dict of tensors, Python numbers, strings, lists and
dicts (nothing that needs unpickling code, so ``weights_only=True`` can load it safely)::

    model        state dict of the bare model (unwrapped from DDP / torch.compile)
    config       VideoBERTConfig as a dict          classes     class names, index order
    optimizer    optimizer.state_dict()             scheduler   scheduler.state_dict()
    step         optimizer steps done               epoch       current epoch (0-based)
    step_in_epoch  batches of ``epoch`` already done (resume continues after them)
    rng          torch CPU (and CUDA) generator states
    args         the training options               best_val_top1, history, …
    preprocessing  how a video becomes the model's input (:class:`Preprocessing`, as a dict)

:func:`save_checkpoint` writes to a temporary file in the same folder, flushes it to disk
and renames it over the target (``os.replace`` is atomic), so a run killed at any moment
leaves either the old checkpoint or the new one — never half a file.

The checkpoint carries its own preprocessing (as torchvision's weights carry ``transforms()``):
evaluation, prediction, retrieval and summarization read :class:`Preprocessing`, never the trainer's
options. A pretraining checkpoint (``python -m minivb.pretrain``, ``format`` = :data:`PRETRAIN_FORMAT`)
initialises a classifier's Transformer: :func:`init_from_pretrained`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..data import registry
from ..model import VideoBERT, VideoBERTConfig
from ..plumbing.checks import check_int
from ..plumbing.files import atomic_file
from .confidence import Confidence

CLIP_KEYS = ("num_frames", "stride", "size")  # what a preprocessing record (or the trainer's options) must hold


@dataclass(frozen=True)
class Preprocessing:
    """How a video becomes model input: ``clips × crops`` views of ``num_frames`` frames ``stride``
    apart, each a square of the shorter side resized to ``size × size`` — the training clip, sampled as
    evaluation does. Pixels go in as uint8 RGB 0…255 (``pixels``); the model scales them to [0, 1] and
    ImageNet-normalises them itself. Anything else → ``ValueError`` naming the field."""

    num_frames: int
    stride: int
    size: int
    clips: int = 1  # temporal clips per video, evenly spaced
    crops: int = 1  # square crops per clip: 1 (centre) or 3 (along the long side)
    pixels: str = "uint8 RGB"

    def __post_init__(self):
        for name in ("num_frames", "stride", "size", "clips"):
            object.__setattr__(self, name, check_int(name, getattr(self, name)))  # NumPy integers → int
        if self.crops not in (1, 3) or isinstance(self.crops, bool):
            raise ValueError(f"crops must be 1 or 3, got {self.crops!r}")
        object.__setattr__(self, "crops", int(self.crops))
        if self.pixels != "uint8 RGB":
            raise ValueError(f"pixels must be 'uint8 RGB' (the only input the model takes), got {self.pixels!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_checkpoint(cls, ckpt: dict, clips: int | None = None, crops: int | None = None) -> "Preprocessing":
        """The checkpoint's record (``ckpt["preprocessing"]``), views overridden by ``clips`` / ``crops``.

        Checkpoints written before the record existed hold only the trainer's options (``ckpt["args"]``):
        the record is rebuilt from them, with the views of their data set in :mod:`minivb.data.registry`.
        A record that is not a dict, lacks a key or holds an unknown one → ``ValueError`` naming it.
        """
        record = ckpt.get("preprocessing")
        if isinstance(record, dict):
            odd = [k for k in record if k not in cls.__dataclass_fields__] or [k for k in CLIP_KEYS if k not in record]
            if odd:
                what = "an unknown key" if odd[0] in record else "no key"
                raise ValueError(f"the preprocessing record has {what} {odd[0]!r}")
            prep = cls(**record)
        elif record is not None:
            raise ValueError(f"the preprocessing record is a {type(record).__name__}, not a dict")
        else:
            args = ckpt.get("args")
            if not isinstance(args, dict) or not set(CLIP_KEYS) <= args.keys():
                raise ValueError(
                    "the checkpoint has no training options (args) and no preprocessing record; it was "
                    "not written by python -m minivb.train"
                )
            dataset = registry.DATASETS.get(args.get("subset", registry.DEFAULT))
            views = dataset.views if dataset is not None else (1, 1)
            prep = cls(*(args[k] for k in CLIP_KEYS), *views)
        return replace(prep, clips=prep.clips if clips is None else clips, crops=prep.crops if crops is None else crops)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare module inside DistributedDataParallel and/or ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def weights_fingerprint(model: nn.Module) -> str:
    """A short sha256 of a model's weights (every tensor's name, dtype, shape and bytes): two models share it
    only if they compute the same function. Results made with a model (a retrieval gallery) store it, so they
    are never used with another model of the same size."""
    digest = hashlib.sha256()
    for name, t in unwrap_model(model).state_dict().items():
        t = t.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # bytes of any dtype (bf16 included)
    return digest.hexdigest()[:16]


def save_checkpoint(path: str | os.PathLike, obj: dict) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (:func:`minivb.plumbing.files.atomic_file`: temporary file, fsync,
    ``os.replace``); a full disk keeps the old checkpoint and raises :class:`~minivb.plumbing.files.NoSpace`."""
    path = Path(path)
    with atomic_file(path) as f:
        torch.save(obj, f)
    return path


def load_file(path: str | os.PathLike, what: str, hint: str, map_location="cpu"):
    """``torch.load(path, weights_only=True)`` with one-line errors: a missing file → ``FileNotFoundError``, a file
    that cannot be read (another format, truncated, a foreign pickle) → ``ValueError``; both name ``what`` and end
    with ``hint`` (what to pass instead)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist; {hint}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, unsupported globals, …
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise ValueError(f"{path} is not a readable {what} ({reason}); {hint}") from None


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """The checkpoint dict at ``path``, loaded with ``weights_only=True`` and checked (:func:`check_checkpoint`).

    A missing file → ``FileNotFoundError``; a file that is not a minivb checkpoint
    (another format, truncated, foreign pickle), or one that cannot be used → one-line ``ValueError`` naming it.
    """
    hint = "pass a .pt file written by python -m minivb.train"
    ckpt = load_file(path, "minivb checkpoint", hint, map_location)
    if not isinstance(ckpt, dict) or not {"model", "config", "classes"} <= ckpt.keys():
        raise ValueError(f"{path} is not a minivb checkpoint (no model/config/classes entries); {hint}")
    check_checkpoint(ckpt, path)
    return ckpt


def check_checkpoint(ckpt: dict, path: str | os.PathLike) -> None:
    """What every command loads, checked before it is used → one-line ``ValueError`` naming ``path`` and the fault:
    weights that are NaN or infinite (the first such tensor), a class list that does not fit the output layer, a
    damaged confidence record, and a preprocessing record (or the older trainer's options) that is damaged,
    impossible or made for another model (its ``num_frames`` is not the time embedding's). A bare model without
    either is left to the code that needs its clip.
    """
    weights = ckpt["model"] if isinstance(ckpt["model"], dict) else {}
    config = ckpt["config"] if isinstance(ckpt["config"], dict) else {}
    bad = next((n for n, t in weights.items() if torch.is_tensor(t) and not _finite(t)), None)
    if bad is not None:
        raise ValueError(f"{path}: the weights {bad} hold NaN or infinite values (a diverged run?); use another one")
    classes, outputs = ckpt["classes"], config.get("num_classes")
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{path}: the class list is a {type(classes).__name__}, not a list of names")
    if isinstance(outputs, int) and len(classes) != outputs:
        raise ValueError(f"{path}: {len(classes)} class names for an output layer of {outputs} classes")
    try:
        Confidence.from_checkpoint(ckpt)
    except ValueError as e:
        raise ValueError(f"{path}: its confidence record cannot be used: {e}") from None
    args = ckpt.get("args")
    if ckpt.get("preprocessing") is None and not (isinstance(args, dict) and set(CLIP_KEYS) <= args.keys()):
        return
    try:
        prep = Preprocessing.from_checkpoint(ckpt)
    except ValueError as e:
        raise ValueError(f"{path}: its preprocessing cannot be used: {e}") from None
    frames = config.get("num_frames", VideoBERTConfig.num_frames)
    if prep.num_frames != frames:
        raise ValueError(
            f"{path}: its preprocessing samples num_frames={prep.num_frames} frames, but its model's time embedding "
            f"has {frames} (config num_frames): the record was made for another model"
        )


def _finite(t: torch.Tensor) -> bool:
    """No NaN or infinity in ``t`` (integer tensors always pass)."""
    return not (t.is_floating_point() or t.is_complex()) or bool(torch.isfinite(t).all())


def model_from_checkpoint(ckpt: dict, where: str | os.PathLike = "checkpoint") -> VideoBERT:
    """The model in a checkpoint dict already read (:func:`read_checkpoint`), on the CPU, in eval mode.

    Rebuilds ``VideoBERT(VideoBERTConfig(**ckpt["config"]))`` (never downloading ImageNet
    weights: the checkpoint holds every weight) and loads the state dict strictly.
    """
    try:
        config = VideoBERTConfig(**{**ckpt["config"], "pretrained": False})
        model = VideoBERT(config)
        model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, RuntimeError) as e:
        reason = " ".join(str(e).split())[:200]
        raise ValueError(f"{where}: model weights do not match the stored config ({reason})") from None
    config.pretrained = bool(ckpt["config"].get("pretrained", False))
    return model.eval()


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> tuple[VideoBERT, list[str]]:
    """A trained model and its class names from a checkpoint file → ``(model in eval mode, classes)``."""
    ckpt = read_checkpoint(path, map_location)
    model = model_from_checkpoint(ckpt, path)
    return model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu"), list(ckpt["classes"])


# --------------------------------------------------------------------------- a pretraining checkpoint → a classifier

PRETRAIN_FORMAT = "minivb.pretrain"  # a pretraining checkpoint's "format" entry
GALLERY_FORMAT = "minivb.gallery"  # a retrieval gallery's (minivb.engine.gallery.Gallery)


def read_pretrained(path: str | os.PathLike) -> dict:
    """A checkpoint written by ``python -m minivb.pretrain`` (``weights_only``); anything else → one-line
    ``ValueError``."""
    ckpt = load_file(
        path, "pretraining checkpoint", "pass pretrain.pt (or its run folder) written by python -m minivb.pretrain"
    )
    if not isinstance(ckpt, dict) or ckpt.get("format") != PRETRAIN_FORMAT:
        what = "not a pretraining checkpoint"
        if isinstance(ckpt, dict) and ckpt.get("format") == GALLERY_FORMAT:
            what = "a retrieval gallery (python -m minivb.retrieve index)"
        elif isinstance(ckpt, dict) and {"model", "config", "classes"} <= ckpt.keys():
            what = "a training checkpoint (python -m minivb.train)"
        raise ValueError(f"{path} is {what}; pass pretrain.pt written by python -m minivb.pretrain")
    return ckpt


def init_from_pretrained(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Copy a pretrained WordBERT's ``transformer.*``, ``time_embed`` and ``cls_token`` into a VideoBERT
    → the names copied.

    The CNN, the projection, the region embedding and the output layer keep their fresh initialisation. A
    Transformer of another width, depth, number of heads or MLP size (or a time embedding of another length)
    → one-line ``ValueError`` naming both sizes.
    """
    path = Path(path) / "pretrain.pt" if Path(path).is_dir() else Path(path)
    ckpt = read_pretrained(path)
    language = ckpt.get("args", {}).get("language", "none")
    if language != "none" or ckpt.get("tokenizer", {}).get("encoder") == "flow":
        raise ValueError(
            f"{path} is a --language {language} run on {ckpt['tokenizer']['encoder']} words; the classifier reads "
            f"frames, so --init-from takes a run of python -m minivb.pretrain without --language or --tokenizer flow"
        )
    source = ckpt["model"]
    target = model.state_dict()
    names = [n for n in target if n.startswith("transformer.") or n in ("time_embed", "cls_token")]
    for n in names:
        if n not in source or source[n].shape != target[n].shape:
            theirs = tuple(source[n].shape) if n in source else "missing"
            raise ValueError(
                f"{path} does not fit this model: {n} is {theirs} there, {tuple(target[n].shape)} here; pretrain "
                f"with the same --dim, --depth, --heads and --num-frames as the model"
            )
    model.load_state_dict({n: source[n] for n in names}, strict=False)
    return names
