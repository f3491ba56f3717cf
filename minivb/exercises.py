"""Used by every notebook's exercises: ``check("03.1", my_function)`` runs your answer and says whether it is right.

Most exercises are a function for you to write in the notebook. ``check`` computes an independent reference on
inputs of its own first — PyTorch's own function where one exists, else the formula written out, or the finished
``minivb`` code — then calls your function on copies of those inputs (changing them in place is fine). It prints
one line and returns ``True`` only when the answer is right:

    03.1 correct
    03.1 not yet: <a hint: what is wrong, never the answer>
    03.1 not attempted yet                          (the function still raises NotImplementedError)

Every exercise knows the mistakes learners make (``minivb/exercise_bank/``, one module per notebook): a wrong answer
that returns what a known mistake returns gets that mistake's own hint; any other wrong answer gets a general hint
saying what differs. A call the exercise asks you to write yourself ("without F.cross_entropy") raises while your
function runs, and says so. A number must be finite: NaN or inf is never right.

From notebook 04 on, one exercise is a prediction: write a number or a choice, then run the cell, which judges it
— ``check("04.3", 3)`` prints *correct* or *not yet*, with the reason — and then runs the experiment.
``notebooks/solutions/`` holds one worked answer to each exercise.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from . import exercise_bank
from .exercise_bank.judging import Exercise, NotAttempted, Prediction

BANKS = [  # exercise_bank.notebook01 … notebook10: one module per notebook, found by name
    importlib.import_module(f"{exercise_bank.__name__}.{m.name}")
    for m in sorted(pkgutil.iter_modules(exercise_bank.__path__), key=lambda m: m.name)
    if m.name.startswith("notebook")
]
EXERCISES: dict[str, Exercise | Prediction] = {e.id: e for module in BANKS for e in module.EXERCISES}


def check(exercise: str, answer: Any) -> bool:
    """Judge ``answer`` — your function, or your prediction — for exercise ``"NN.k"``: print one line (correct, a
    hint or the reason, or not attempted) → whether it is right."""
    if exercise not in EXERCISES:
        raise ValueError(f"no exercise {exercise!r}; there are {', '.join(EXERCISES)}")
    task = EXERCISES[exercise]
    try:
        if isinstance(task, Prediction):
            right, reason = task.judge(answer)
            print(f"{exercise} {'correct' if right else 'not yet'}: {reason}")
            return right
        hint = task.judge(answer)
    except NotAttempted:
        print(f"{exercise} not attempted yet")
        return False
    print(f"{exercise} correct" if hint is None else f"{exercise} not yet: {hint}")
    return hint is None
