"""Used by every notebook's exercises: what ``minivb.exercises.check`` knows about each exercise.

One module per notebook (``notebook01`` … ``notebook10``; :mod:`minivb.exercises` finds them by name) holds its
exercises: the inputs a check tries, an independent reference, the forbidden calls, and the bank of mistakes learners
make, each a small function that computes what that mistake would return, with its own hint. ``judging`` is the
machinery they share.
"""
