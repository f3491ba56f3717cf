"""The pretraining run behind ``python -m minivb.pretrain``: clips → visual words → masked tokens → ``pretrain.pt``.

What it trains is the lesson (:mod:`minivb.pretraining` and :mod:`minivb.visual_words`, built in notebook 09); this
module reads the data set, runs the tokenizer's feature pass in batches, fits the vocabulary, trains
:class:`WordBERT` in the trainer's own loop (:func:`minivb.loop.train_one_epoch`), and writes, resumes and locks the
run's folder.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import registry
from ..data.clips import ClipDataset, Item, ShardedSampler, limit_items
from ..data.loader import clip_loader
from ..data.toy.narration import config_of
from ..encoder import build_encoder
from ..joint import video_half
from ..loop import TrainState, stop_signals, train_one_epoch, warmup_cosine
from ..plumbing import runs
from ..plumbing.checks import UsageError
from ..plumbing.device import check_batch_fits, resolve_device
from ..plumbing.files import write_json
from ..plumbing.samples import report_skipped
from ..plumbing.signals import sigterm_raises
from ..pretraining import (
    MaskedTokenLoss,
    MaskedWords,
    WordBERT,
    WordBERTConfig,
    collate,
    evaluate_masked,
    motion_features,
)
from ..visual_words import HierarchicalKMeans, flow_features
from . import joint_pretraining
from .checkpoint import PRETRAIN_FORMAT, load_file, save_checkpoint

FEATURE_BATCH = 32  # clips per batch of the tokenizer's feature pass


def clip_dataset(items: list, opts: dict, *, preload: bool | None = None) -> ClipDataset:
    """The evaluation-style clips (centre clip, centre square) of ``items`` that the tokenizer reads; ``preload``:
    decode every video into memory first (default: as the data set's preset says — the toy set's short videos are)."""
    classes = sorted({it.label for it in items})
    return ClipDataset(
        items,
        classes,
        opts["num_frames"],
        opts["stride"],
        train=False,
        size=opts["size"],
        preload=registry.get(opts["subset"]).preload if preload is None else preload,
    )


@torch.no_grad()
def _features(encoder, data: ClipDataset, opts: dict, device, flips: bool, skipped: list | None = None):
    """Yield motion features of every batch of clips (then of its two mirror images, if ``flips``): the CNN's
    ``(B, T, F)`` (:func:`motion_features`), or with ``tokenizer="flow"`` the optical flow's ``(B, T − 1, F)``
    (:func:`flow_features`). Unreadable clips are reported, or added to ``skipped`` if it is given."""
    for videos, _, bad in clip_loader(data, device, FEATURE_BATCH, opts["workers"]):
        if skipped is None:
            report_skipped(bad)
        else:
            skipped.extend(bad)
        if videos is None:
            continue
        videos = videos.to(device)  # (B, T, 3, H, W) uint8
        for v in (videos, videos.flip(-1), videos.flip(-2)) if flips else (videos,):  # mirrors: more data, no labels
            yield flow_features(v, opts["grid"]) if encoder is None else motion_features(encoder, v).cpu()


def tokenize_clips(
    encoder, vocabulary, data: ClipDataset, opts: dict, device, flips: bool = False, skipped: list | None = None
) -> torch.Tensor:
    """Every readable clip of ``data`` → its words ``(N, T)`` long; with ``flips``, each batch of 32 clips is followed
    by its left–right and then its top–bottom mirror images (3× the sentences). ``skipped``: as :func:`_features`."""
    parts = [vocabulary.assign(f) for f in _features(encoder, data, opts, device, flips, skipped)]  # (B·k, T) each
    return torch.cat(parts) if parts else torch.zeros(0, words_per_clip(opts), dtype=torch.long)


def words_per_clip(opts: dict) -> int:
    """A clip's visual words: one per frame (CNN), or one per pair of consecutive frames (flow)."""
    return opts["num_frames"] - 1 if opts["tokenizer"] == "flow" else opts["num_frames"]


def check_options(opts: dict, device: torch.device) -> None:
    """Refuse, before any work, options that would fail or exhaust memory later: a Transformer whose sizes do
    not fit together, more words than the frames k-means is fitted on, a feature batch larger than memory."""
    words = opts["clusters"] ** opts["levels"]
    if words > opts["kmeans_frames"]:
        raise UsageError(
            f"--clusters {opts['clusters']} ** --levels {opts['levels']} = {words:,} words, more than the "
            f"{opts['kmeans_frames']:,} frames k-means is fitted on (--kmeans-frames); lower them"
        )
    if opts["tokenizer"] == "flow" and opts["num_frames"] < 2:
        raise UsageError("--tokenizer flow needs --num-frames ≥ 2 (a word per pair of consecutive frames)")
    if opts["max_stride"] > 1 and opts["language"] != "joint":
        raise UsageError("--max-stride subsamples the visual sentence of a narrated pair: it needs --language joint")
    if opts["max_stride"] > words_per_clip(opts):
        raise UsageError(f"--max-stride {opts['max_stride']} is more than a clip's {words_per_clip(opts)} visual words")
    try:
        WordBERTConfig(words, words_per_clip(opts), opts["dim"], opts["depth"], opts["heads"])
    except ValueError as e:
        raise UsageError(f"model options: {e}") from None
    t, size = opts["num_frames"], opts["size"]
    check_batch_fits(device, FEATURE_BATCH, t, size, f"{FEATURE_BATCH} clips × --num-frames {t} × 3 × --size {size}²")


def _tokenizer(opts: dict, device: torch.device) -> nn.Module | None:
    """The frozen CNN that turns frames into features (random weights for the toy set: no labels anywhere); None
    for the optical-flow tokenizer."""
    if opts["tokenizer"] == "flow":
        return None
    torch.manual_seed(opts["seed"])
    try:
        encoder = build_encoder(opts["encoder"], opts["grid"], opts["pretrained"]).to(device).eval()
    except RuntimeError as e:  # ImageNet weights neither cached nor downloadable
        raise UsageError(" ".join(str(e).split()).replace("pass pretrained=False", "pass --no-pretrained")) from None
    try:  # one frame through the CNN checks --size against --grid before the feature pass
        with torch.no_grad():
            encoder(torch.zeros(1, 1, 3, opts["size"], opts["size"], device=device))
    except ValueError as e:
        raise UsageError(f"--size {opts['size']}: {e}") from None
    return encoder


def load_tokenizer(ckpt: dict) -> tuple[nn.Module | None, HierarchicalKMeans, dict]:
    """A finished run's ``pretrain.pt`` (read) → (its tokenizer CNN, or None for optical flow; its vocabulary; its
    options, with no DataLoader workers): what turns any clip into that run's words (:func:`tokenize_clips`)."""
    opts = dict(ckpt["args"]) | {"workers": 0}
    opts.setdefault("tokenizer", "flow" if ckpt["tokenizer"]["encoder"] == "flow" else "cnn")
    encoder = _tokenizer(opts | {"pretrained": False}, torch.device("cpu"))  # (its weights are in the checkpoint)
    if encoder is not None:
        encoder.load_state_dict(ckpt["tokenizer"]["state"])
    return encoder, HierarchicalKMeans.from_state_dict(ckpt["vocabulary"]), opts


def _sentences(
    encoder: nn.Module, train_items: list, val_items: list, opts: dict, device: torch.device, log
) -> tuple[HierarchicalKMeans, torch.Tensor, torch.Tensor]:
    """Fit the vocabulary on a sample of training frames, then every clip → a sentence: ``(vocabulary, train (N, T),
    val (M, T))``."""
    start = time.perf_counter()
    train_clips, val_clips = clip_dataset(train_items, opts), clip_dataset(val_items, opts)
    sample = limit_items(train_items, max(1, opts["kmeans_frames"] // opts["num_frames"]), opts["seed"])
    sample_clips = train_clips if len(sample) == len(train_items) else clip_dataset(sample, opts)
    feats = torch.cat(list(_features(encoder, sample_clips, opts, device, opts["flips"])))  # (N, T, F)
    vocabulary = HierarchicalKMeans.fit(feats.flatten(0, 1), opts["levels"], opts["clusters"], opts["seed"])
    log(
        f"minivb.pretrain: {vocabulary.vocab_size} visual words ({opts['levels']} level{'s' * (opts['levels'] != 1)} × "
        f"{opts['clusters']} clusters; {int((vocabulary.counts > 0).sum())} used) from "
        f"{feats.shape[0] * feats.shape[1]} {'frame pairs' if encoder is None else 'frames'} of "
        f"{'optical flow' if encoder is None else opts['encoder']} "
        f"features ({vocabulary.dim}-d), {time.perf_counter() - start:.0f} s"
    )
    train_ids = (
        vocabulary.assign(feats)
        if sample_clips is train_clips  # the sample was every clip: its features are here
        else tokenize_clips(encoder, vocabulary, train_clips, opts, device, opts["flips"])
    )
    return vocabulary, train_ids, tokenize_clips(encoder, vocabulary, val_clips, opts, device)


def _masked_modeling(
    model: nn.Module,
    train_set,
    val_set,
    criterion: nn.Module,
    end_epoch: Callable,
    opts: dict,
    device: torch.device,
    log,
    out: Path,
    options: dict,
) -> list[dict]:
    """Masked modeling in the trainer's own loop (``train_one_epoch``) → one history row per epoch, from
    ``end_epoch(model, val_loader, train_loss, epoch)``. ``train_set`` yields ``(inputs, targets)`` for
    ``criterion(model(inputs), targets)``: masked visual words (:class:`MaskedWords`) or the joint model's pairs
    (:class:`~minivb.joint.JointExamples`).

    After every epoch the model, optimizer, schedule and history go to ``out/progress.pt``, and a run that
    finds one there continues after its last epoch (bit-identical on a CPU: the masking and the order are
    functions of (seed, epoch, index)). SIGTERM or Ctrl-C stop at the next step → :class:`Stopped`.
    """
    sampler = ShardedSampler(len(train_set), shuffle=True, seed=opts["seed"], with_epoch=True)
    loader = DataLoader(train_set, batch_size=opts["batch_size"], sampler=sampler, collate_fn=collate)
    val_loader = DataLoader(val_set, batch_size=256, collate_fn=collate)
    optimizer = model.configure_optimizers(opts["lr"], opts["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(len(loader), opts["epochs"] * len(loader)))
    state, history = TrainState(), []
    first = 0
    if (out / "progress.pt").is_file():  # a stopped run: continue after its last finished epoch
        saved = _read_progress(out)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        history, first, state.step = list(saved["history"]), int(saved["epoch"]), int(saved["step"])
        log(f"minivb.pretrain: continuing after epoch {first} of {opts['epochs']}")
    with stop_signals() as stopped:
        for epoch in range(first, opts["epochs"]):
            sampler.set_epoch(epoch)
            if not train_one_epoch(
                model, loader, optimizer, scheduler, criterion, state, device, stop=lambda: stopped() is not None
            ):
                raise Stopped(stopped(), epoch)  # progress.pt holds the epochs before this one
            history.append(end_epoch(model, val_loader, state.loss_sum / max(state.loss_count, 1), epoch))
            state.loss_sum, state.loss_count = 0.0, 0
            save_checkpoint(
                out / "progress.pt",
                dict(
                    model=model.state_dict(),
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    history=history,
                    epoch=epoch + 1,
                    step=state.step,
                    args=options,
                ),
            )
            if stopped() is not None and epoch + 1 < opts["epochs"]:
                raise Stopped(stopped(), epoch + 1)
    return history


def _read_progress(out: Path) -> dict:
    """A stopped run's ``progress.pt`` (one-line :class:`UsageError` if it cannot be read)."""
    try:
        return load_file(out / "progress.pt", "pretraining progress", "delete it to start the epochs again")
    except ValueError as e:
        raise UsageError(str(e)) from None


def _masked_words_row(model, val_loader, device, train_loss: float, epoch: int, opts: dict, majority, log) -> dict:
    """A visual-word epoch's history row (training loss, validation loss, masked-token accuracy) and its log line."""
    val = evaluate_masked(model, val_loader, device)
    row = dict(epoch=epoch + 1, train_loss=train_loss, val_loss=val["loss"], masked_top1=val["accuracy"])
    log(
        f"epoch {epoch + 1:>3}/{opts['epochs']}  loss {row['train_loss']:.4f}  val loss {val['loss']:.4f}  "
        f"masked top-1 {100 * val['accuracy']:5.1f}%  (majority word {100 * majority:.1f}%)"
    )
    return row


class Stopped(Exception):
    """SIGTERM or Ctrl-C stopped pretraining (``.signal``); ``words.pt`` and ``progress.pt`` in the run's folder
    keep what is finished, and ``--resume`` continues from them."""

    def __init__(self, signal_name: str | None, epochs_done: int, out: Path | None = None):
        super().__init__(f"stopped by {signal_name} after {epochs_done} finished epoch(s)")
        self.signal, self.epochs_done, self.out = signal_name, epochs_done, out


def pretrain(given: dict, log: Callable[..., None] | None = print) -> dict:
    """``python -m minivb.pretrain``'s work → its summary (the dict written to summary.json).

    ``log`` takes the run's lines (``None`` silences them; ``summary["history"]`` has every epoch's numbers).

    Three steps: the tokenizer CNN (:func:`_tokenizer`) → the vocabulary and every clip as a sentence of
    words (:func:`_sentences`) → masked visual-token modeling of a :class:`WordBERT` (:func:`_masked_modeling`).
    """
    log = log or (lambda *args: None)  # a log that says nothing
    if given.get("resume"):
        return _resume(given, log)
    dataset, opts = pretrain_options(given)
    subset = dataset.name
    start = time.perf_counter()
    device = resolve_device(opts["device"])
    check_options(opts, device)  # every option before any work (the tokenizer and k-means take minutes at scale)
    dataset.prepare(opts["data_root"])  # the toy set is made if missing
    train_items, val_items, _ = dataset.load(opts["data_root"])
    train_items = limit_items(train_items, opts["limit"], opts["seed"])
    out = Path(opts["out"]) if opts["out"] else runs.new_run_folder(f"pretrain-{subset}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; choose a folder")
    lock = runs.claim(out)  # the folder is this run's until it ends (a second run into it is refused)
    try:
        if (out / "words.pt").exists() and not (out / "pretrain.pt").exists():
            raise UsageError(f"--out {out} holds a stopped pretraining run; continue it with --resume {out}")
        held = [f for f in ("pretrain.pt", *runs.RUN_FILES) if (out / f).exists()]
        if held:  # a finished pretraining run, or a training run: never written over
            raise UsageError(f"--out {out} already holds a run ({', '.join(held)}); choose another --out")
        return _pretrain_into(out, opts, device, train_items, val_items, start, log)
    finally:
        runs.release(out, lock)


def pretrain_options(given: dict) -> tuple[registry.DataSet, dict]:
    """The data set and every option of a run: the defaults, the data set's preset (and its ``--language`` preset),
    then ``given``."""
    dataset = registry.get(given.get("subset"))
    opts = (
        dict(subset=dataset.name, data_root=dataset.root, out=None, seed=0, device="auto", limit=None)
        | dict(language="none", tokenizer=None, max_stride=1)
        | dataset.pretrain_preset
        | ((dataset.language_preset or {}) if given.get("language", "none") != "none" else {})
        | given
    )
    if opts["workers"] is None:
        opts["workers"] = max(1, (os.cpu_count() or 2) - 1)
    if opts["tokenizer"] is None:  # motion words for the joint model: the CNN's single-frame words carry too little
        opts["tokenizer"] = "cnn" if opts["language"] == "none" else "flow"
    if opts["language"] != "none":
        if not dataset.narrated:
            raise UsageError(
                f"--language {opts['language']} needs narrations; the {dataset.name} set has none (toy has)"
            )
        opts["flips"] = False  # a mirror image would contradict its narration ("to the left")
    return dataset, opts


def pretrain_once(given: dict, log: Callable[..., None] | None = print) -> dict:
    """:func:`pretrain` with ``given``, unless ``given["out"]`` already holds that run, finished: then its summary.

    "That run" means the same options (all but :data:`RESUME_OPTIONS`, which do not change the result; the data
    folder by its resolved path) and the same code (:func:`~minivb.plumbing.runs.code_version`; a run of other code
    is set aside, not deleted). Pretraining is deterministic on a CPU, so the summary is the one pretraining would
    return (but for its ``seconds``): notebook 10 pretrains this way, once.
    """
    out = Path(given["out"])
    wanted = {k: v for k, v in pretrain_options(given)[1].items() if k not in (*RESUME_OPTIONS, "out")}
    try:
        summary = json.loads((out / "summary.json").read_text())
        had = EARLIER | summary["args"]
    except (OSError, ValueError, KeyError, TypeError):  # no finished run there (yet): pretrain
        return pretrain(given, log=log)

    if summary.get("command") != "minivb.pretrain" or not runs.same_options(had, wanted):
        return pretrain(given, log=log)  # not the same run: pretrain() refuses to overwrite it, with the reason
    if runs.set_aside_if_stale(out, summary, log):  # made by other code: kept under another name, made again
        return pretrain(given, log=log)
    if log is not None:
        log(f"reusing {out}: a finished pretraining run with these options")
    return summary


RESUME_OPTIONS = ("device", "workers")  # what may differ when continuing a stopped run
EARLIER = dict(language="none", tokenizer="cnn", max_stride=1)  # what a run made before these options existed did
WORDS_KEYS = {"vocabulary", "train_ids", "val_ids", "tokenizer", "args", "seconds"}  # what words.pt holds


def _resume(given: dict, log) -> dict:
    """Continue the stopped run in folder ``given["resume"]``: its words and finished epochs, its options."""
    out = Path(given["resume"])
    if not out.is_dir():
        what = "is a file, not a folder" if out.exists() else "does not exist"
        raise UsageError(f"--resume {out} {what}; pass the folder of a stopped python -m minivb.pretrain run")
    if not (out / "words.pt").is_file():
        what = "a finished run (pretrain.pt)" if (out / "pretrain.pt").is_file() else "no stopped pretraining run"
        raise UsageError(f"--resume {out}: it holds {what} (words.pt is written once the vocabulary is built)")
    try:
        words = load_file(out / "words.pt", "pretraining words", "delete the folder and pretrain again")
    except ValueError as e:
        raise UsageError(str(e)) from None
    missing = sorted(WORDS_KEYS - set(words) if isinstance(words, dict) else WORDS_KEYS)
    if missing or not isinstance(words["args"], dict):
        raise UsageError(
            f"{out / 'words.pt'} is not the words of a stopped pretraining run (no {', '.join(missing) or 'args'} "
            f"entries); resume a folder written by python -m minivb.pretrain"
        )
    other = {k: v for k, v in given.items() if k not in (*RESUME_OPTIONS, "resume") and words["args"].get(k) != v}
    if other:
        flag = "--" + next(iter(other)).replace("_", "-")
        raise UsageError(f"--resume {out}: {flag} differs from the stopped run's; drop it to continue that run")
    opts = EARLIER | dict(words["args"]) | {k: given[k] for k in RESUME_OPTIONS if k in given}
    if opts["language"] != "none":  # the measurements at the end read the toy set: check it is there before epochs
        try:
            config_of(Path(opts["data_root"]))
        except ValueError:
            raise UsageError(
                f"--resume {out}: the run's data root {opts['data_root']} holds no toy set seen from here; resume "
                "from the folder the run was started in"
            ) from None
    device = resolve_device(opts["device"])
    lock = runs.claim(out)
    try:
        return _pretrain_into(out, opts, device, None, None, time.perf_counter() - words["seconds"], log)
    finally:
        runs.release(out, lock)


def _pretrain_into(
    out: Path, opts: dict, device: torch.device, train_items: list, val_items: list, start: float, log
) -> dict:
    """The three steps of :func:`pretrain`, writing ``pretrain.pt`` and ``summary.json`` into ``out`` (held).

    The vocabulary and the sentences go to ``out/words.pt`` once made (a resumed run starts from them: the
    tokenizer and k-means are not run again); both working files are removed when the run is done.
    """
    try:
        return _pretrain_steps(out, opts, device, train_items, val_items, start, log)
    except KeyboardInterrupt:  # a second Ctrl-C, or one during the feature pass and k-means
        raise Stopped("SIGINT", 0, out) from None
    except Stopped as e:
        e.out = out
        raise


def _words(
    out: Path, opts: dict, options: dict, device, train_items: list | None, val_items: list | None, start: float, log
) -> tuple[nn.Module | None, HierarchicalKMeans, torch.Tensor, torch.Tensor, dict | None]:
    """Tokenizer → vocabulary and sentences (and, with ``--language``, the narrations), kept in ``words.pt`` (or
    read from it, resuming) → (tokenizer, vocabulary, train sentences, val sentences, narrations)."""
    resuming = (out / "words.pt").is_file()
    encoder = _tokenizer(opts | ({"pretrained": False} if resuming else {}), device)  # (its weights are saved)
    if resuming:
        words = load_file(out / "words.pt", "pretraining words", "delete the folder and pretrain again")
        if encoder is not None:
            encoder.load_state_dict(words["tokenizer"])
        vocabulary = HierarchicalKMeans.from_state_dict(words["vocabulary"])
        return encoder, vocabulary, words["train_ids"], words["val_ids"], words.get("narrations")
    narrations = None
    if opts["language"] != "none":  # read before the feature pass: a missing narration is a usage error
        narrations = dict(
            train=joint_pretraining.narrations_of(opts["data_root"], train_items),
            val=joint_pretraining.narrations_of(opts["data_root"], val_items),
            val_items=[[it.path, it.label] for it in val_items],
        )
    with sigterm_raises(lambda: Stopped("SIGTERM", 0)):  # (nothing of this phase is kept)
        vocabulary, train_ids, val_ids = _sentences(encoder, train_items, val_items, opts, device, log)
    seconds = time.perf_counter() - start
    save_checkpoint(
        out / "words.pt",
        dict(
            vocabulary=vocabulary.state_dict(),
            train_ids=train_ids,
            val_ids=val_ids,
            tokenizer=None if encoder is None else encoder.state_dict(),
            args=options,
            seconds=seconds,
        )
        | ({} if narrations is None else dict(narrations=narrations)),
    )
    return encoder, vocabulary, train_ids, val_ids, narrations


def _pretrain_steps(
    out: Path, opts: dict, device: torch.device, train_items: list | None, val_items: list | None, start: float, log
) -> dict:
    """Tokenizer → vocabulary and sentences (or those of ``words.pt``, resuming) → masked modeling → pretrain.pt."""
    options = {k: v for k, v in opts.items() if k not in ("out", "resume")} | {"out": str(out)}
    encoder, vocabulary, train_ids, val_ids, narrations = _words(
        out, opts, options, device, train_items, val_items, start, log
    )
    if narrations is not None:
        return _joint_steps(out, opts, options, device, encoder, vocabulary, train_ids, val_ids, narrations, start, log)
    majority = float((val_ids == vocabulary.majority_word).float().mean()) if val_ids.numel() else 0.0
    torch.manual_seed(opts["seed"])
    config = WordBERTConfig(vocabulary.vocab_size, words_per_clip(opts), opts["dim"], opts["depth"], opts["heads"])
    model = WordBERT(config).to(device)
    V = config.vocab_size
    train_set = MaskedWords(train_ids, V, seed=opts["seed"])
    val_set = MaskedWords(val_ids, V, seed=opts["seed"], train=False)

    def end_epoch(model, val_loader, train_loss: float, epoch: int) -> dict:
        return _masked_words_row(model, val_loader, device, train_loss, epoch, opts, majority, log)

    history = _masked_modeling(model, train_set, val_set, MaskedTokenLoss(), end_epoch, opts, device, log, out, options)
    summary = dict(
        command="minivb.pretrain",
        code=runs.code_version(),  # which minivb made it: pretrain_once reuses only a run of this code
        masked_top1=history[-1]["masked_top1"],
        majority_top1=majority,
        **_vocabulary_facts(vocabulary, train_ids, val_ids, opts, start),
        history=history,
    )
    _write_run(
        out, dict(model=model.state_dict(), config=config.to_dict()), summary, encoder, vocabulary, opts, options
    )
    log(
        f"done: masked top-1 {100 * summary['masked_top1']:.1f}% (majority word {100 * majority:.1f}%), "
        f"{summary['seconds']:.0f} s → {out}"
    )
    return summary


def _joint_steps(
    out: Path, opts: dict, options: dict, device, encoder, vocabulary, train_ids, val_ids, narrations: dict, start, log
) -> dict:
    """``--language prior|joint``: the joint model (:mod:`minivb.joint`) over the narrations and the visual words,
    trained with its three objectives (the text cloze alone for the prior), then the paper's measurements."""
    voc, model, train_set, val_set, criterion = joint_pretraining.build(
        vocabulary.vocab_size, narrations["train"], narrations["val"], train_ids, val_ids, opts
    )
    model = model.to(device)

    def end_epoch(model, val_loader, train_loss: float, epoch: int) -> dict:
        return joint_pretraining.epoch_row(model, val_loader, device, train_loss, epoch, opts["epochs"], log)

    history = _masked_modeling(model, train_set, val_set, criterion, end_epoch, opts, device, log, out, options)
    log("minivb.pretrain: measuring zero-shot classification" + ", search and captions" * (opts["language"] == "joint"))
    val_items = [Item(path, label, None) for path, label in narrations["val_items"]]
    measured = joint_pretraining.assess(
        model, voc, opts, narrations["train"], train_ids, val_items, narrations["val"], val_ids
    )
    summary = dict(
        command="minivb.pretrain",
        code=runs.code_version(),  # which minivb made it: pretrain_once reuses only a run of this code
        language=opts["language"],
        **measured,
        text_words=len(voc.words),
        **_vocabulary_facts(vocabulary, train_ids, val_ids, opts, start),
        history=history,
    )
    half = None if opts["language"] == "prior" else video_half(model.cpu(), voc)  # the video side, as a WordBERT
    weights = dict(
        model=None if half is None else half.state_dict(),
        config=None if half is None else half.config.to_dict(),
        joint=dict(model=model.state_dict(), config=model.config.to_dict(), words=list(voc.words)),
    )
    _write_run(out, weights, summary, encoder, vocabulary, opts, options)
    verb, noun = measured["zero_shot_verb"], measured["zero_shot_noun"]
    log(
        f"done: zero-shot verb top-1 {100 * verb['top1']:.1f}% (top-5 {100 * verb['top5']:.1f}%), noun top-1 "
        f"{100 * noun['top1']:.1f}%, {summary['seconds']:.0f} s → {out}"
    )
    return summary


def _vocabulary_facts(vocabulary: HierarchicalKMeans, train_ids, val_ids, opts: dict, start: float) -> dict:
    return dict(
        vocab_size=vocabulary.vocab_size,
        words_used=int((vocabulary.counts > 0).sum()),
        train_sequences=len(train_ids),
        val_sequences=len(val_ids),
        epochs=opts["epochs"],
        seconds=round(time.perf_counter() - start, 1),
    )


def _write_run(out: Path, weights: dict, summary: dict, encoder, vocabulary, opts: dict, options: dict) -> None:
    """``pretrain.pt`` (the weights, the vocabulary, the tokenizer, the options, the summary) and ``summary.json``;
    then the working files go."""
    tokenizer = dict(encoder="flow" if encoder is None else opts["encoder"], grid=opts["grid"])
    save_checkpoint(
        out / "pretrain.pt",
        dict(
            format=PRETRAIN_FORMAT,
            version=1,
            **weights,
            vocabulary=vocabulary.state_dict(),
            tokenizer=tokenizer | dict(state=None if encoder is None else encoder.state_dict()),
            args=options,
            summary=summary,
        ),
    )
    write_json(out / "summary.json", summary | {"args": options})
    for working in ("words.pt", "progress.pt"):  # pretrain.pt holds all of it now
        (out / working).unlink(missing_ok=True)
