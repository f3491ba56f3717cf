"""minivb — a VideoBERT-style video Transformer, built one notebook at a time.

Rooms, lowest first (a lower room never imports a higher one):
``video`` (files → frames → regions) → ``data`` (toy set, data sets) → … the model.
"""

__version__ = "0.1.0"
