"""Benchmarks anyone can rerun: video decoding, data loading against the model's own speed, the model's FLOPs,
training beside a busy process, how well a toy model tells
its classes from videos it never saw, and what the joint video-and-language model learns.

    python -m minivb.bench decode                          # two generated H.264 clips (340×256, 1280×720)
    python -m minivb.bench decode --videos a.mp4 b.mp4 --repeats 5
    python -m minivb.bench loader --preset toy             # the toy set, generated in a temp folder
    python -m minivb.bench loader --preset k400 --encoder small --size 112 --batch-size 8 --steps 5
    python -m minivb.bench loader --preset k400 --data-root data/kinetics400 --device cuda --workers 8
    python -m minivb.bench decode --json runs/decode.json  # every number as strict JSON too (runs/ must exist; --force)
    python -m minivb.bench flops                           # GFLOPs per clip: the k400 model and variants
    python -m minivb.bench contention                      # toy training clips/s alone and beside a busy process
    python -m minivb.bench ood --checkpoint runs/toy-…     # out-of-distribution scores and calibration of a toy model
    python -m minivb.bench language                        # the VideoBERT paper's experiments on the toy set

``decode``: milliseconds per clip on one core for the same files and frame indices, read by
:func:`minivb.video.read_frames` (OpenCV), by PyAV (decode from the start; or seek to the
keyframe before the first wanted frame), and from a frame store (``.jpgs``) made from the file,
for training-style clips (random starts) and evaluation-style clips (evenly spaced). Every
reader's frames are checked against ``read_frames`` before anything is timed.

``loader``: clips per second of (1) the trainer's DataLoader alone, (2) the model's training
step alone on synthetic input, (3) both together, for the prepared frame stores and for the
original videos of a Kinetics-shaped folder (or the toy set).

``flops``: forward FLOPs per clip of the k400 preset's model and of variants of it (fewer or
more frames, a coarser grid, smaller frames, a bigger Transformer, a ResNet-50 trunk), split
into CNN and Transformer + head, counted by ``torch.utils.flop_counter.FlopCounterMode`` with
the fused attention kernel's matmuls added by formula.

``contention``: clips per second of the toy model's training step with the cores to itself and beside
a busy process (a Python loop; a multithreaded torch matmul loop), under libgomp's default wait
policy (long spins), under ``GOMP_SPINCOUNT=1000`` (what ``import minivb`` sets), under
``OMP_WAIT_POLICY=PASSIVE`` and on one thread.

``ood``: how well each out-of-distribution score (maximum softmax probability, max-logit, energy) tells a toy
model's 8 classes from videos it never saw (the toy ``--rotation`` pair, static videos, noise): AUROC and the
rejection rate at a threshold that keeps 95% of the validation videos, and the expected calibration error before
and after temperature scaling (:mod:`minivb.engine.calibration`).

``language``: the VideoBERT paper's experiments on the toy set: the language prior, the video-only model and the
joint model (on fractions of the training videos) pretrained by ``python -m minivb.pretrain``; zero-shot verb and
noun accuracy, text-to-video search, captions, and a fine-tune from a few labels per class over several seeds.

Machines are noisy, so speed is reported as ratios against a reference measured in the same
run, as min/median/max over ``--repeats`` repeats. Output: a header with the machine and the
command line, then Markdown tables (ready for the README), each row printed as soon as it is measured, with a
progress bar on stderr; Ctrl-C keeps the rows measured (and ``--json`` writes them, marked interrupted).

Modules: :mod:`~minivb.bench.report` (numbers, tables, the header, rows printed as measured),
:mod:`~minivb.bench.decode`, :mod:`~minivb.bench.loader`, :mod:`~minivb.bench.flops`, :mod:`~minivb.bench.contention`,
:mod:`~minivb.bench.ood`, :mod:`~minivb.bench.language`; the command line (``python -m minivb.bench``) is
``minivb/bench/__main__.py``.
"""
