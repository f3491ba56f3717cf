"""minivb — a VideoBERT-style video Transformer, built one notebook at a time.

Rooms, lowest first (a lower room never imports a higher one):
``video`` (files → frames → regions) → ``data`` (toy set, data sets) → … the model.

``minivb.load_checkpoint(path)`` → ``(model, class names)`` from a checkpoint written by
``python -m minivb.train``.
"""

__version__ = "0.1.0"

from .checkpoint import load_checkpoint  # noqa: E402

__all__ = ["load_checkpoint", "__version__"]
