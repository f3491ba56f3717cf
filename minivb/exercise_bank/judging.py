"""Used by every notebook's exercises: how a check judges an answer, recognises a known mistake, refuses a call.

An :class:`Exercise` asks for a function. Its check computes the reference on its own inputs first, then calls the
learner's function on copies of them, with the calls the exercise forbids switched off (:class:`Forbidden`: they
raise :class:`Refused` while the learner's function runs, and are restored afterwards, even on an error). A wrong
answer is compared with what every :class:`Mistake` of the exercise's bank returns on the same inputs: the first
mistake that returns exactly what the learner's function returned gives its own hint; an unknown wrong answer gets
the exercise's general hint, which says what differs (type, shape, values) and how a right answer works.

A :class:`Prediction` asks for a number or a choice, written before an experiment runs: each kind of answer
(:class:`Answer`) has its reason, said whether the prediction is right or not.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch


class NotAttempted(Exception):
    """The learner's function still raises ``NotImplementedError``, or the prediction is still ``None``."""


class Refused(Exception):
    """A call the exercise asks the learner to write themselves, made while the learner's function ran."""


# --------------------------------------------------------------------------- values


def as_tensor(x: Any) -> torch.Tensor | None:
    """``x`` as a float64 tensor (a tensor, an array, a number, a list of numbers), one element as a 0-d tensor; else
    None."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu()
        elif isinstance(x, (list, tuple)):
            rows = [v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v for v in x]
            t = torch.from_numpy(np.asarray(rows, dtype=np.float64))
        else:
            t = torch.as_tensor(np.array(x))  # a copy: a view with negative strides (``a[::-1]``) is read too
        t = t.double()
    except (TypeError, ValueError, RuntimeError, AttributeError):
        return None
    return t.reshape(()) if t.numel() == 1 else t


def same_output(a: Any, b: Any, args: tuple = ()) -> bool:
    """Whether two answers are the same value: equal shapes and numbers (NaN equal to NaN), or equal otherwise."""
    ta, tb = as_tensor(a), as_tensor(b)
    if ta is None or tb is None:
        try:
            return type(a) is type(b) and bool(a == b)
        except Exception:
            return False
    return ta.shape == tb.shape and bool(torch.allclose(ta, tb, rtol=1e-4, atol=1e-6, equal_nan=True))


def kind(x: Any) -> str:
    """The type of ``x`` for a hint: ``NoneType``, ``Tensor shaped (50,)``."""
    shape = f" shaped {tuple(x.shape)}" if isinstance(x, (torch.Tensor, np.ndarray)) else ""
    return type(x).__name__ + shape


def tensor_hint(got: Any, want: torch.Tensor, what: str, atol: float = 1e-5) -> str | None:
    """None if ``got`` is a tensor (or array) equal to ``want``; else what differs: type, shape, NaN or values."""
    if isinstance(got, np.ndarray):
        got = torch.from_numpy(got.copy())  # a copy: a view with negative strides (``a[::-1]``) is read too
    elif isinstance(got, (list, tuple)) and as_tensor(got) is not None:
        got = as_tensor(got).reshape(len(got), *as_tensor(got).shape[1:]) if len(got) == 1 else as_tensor(got)
    if not isinstance(got, torch.Tensor):
        return f"{what} should be a tensor, got {type(got).__name__}"
    if tuple(got.shape) != tuple(want.shape):
        return f"{what} should be shaped {tuple(want.shape)}, got {tuple(got.shape)}"
    if got.is_floating_point() and not torch.isfinite(got).all():
        return f"{what} holds NaN or inf"
    if not torch.allclose(got.double(), want.double(), atol=atol, rtol=1e-4):
        return f"{what} has the right shape but not the right values"
    return None


def number_hint(got: Any, want: float, what: str, how: str) -> str | None:
    """None if ``got`` is one finite number (a one-element tensor or array too) equal to ``want`` up to float32's
    rounding (1e-6 + 1e-5 · |want|); else a hint: the type if it is not one number, ``what`` gave … and ``how`` a
    right answer works if it is wrong."""
    value = as_tensor(got)
    if value is None or value.ndim != 0:
        return f"your function returned {kind(got)}, expected one number"
    value = value.item()
    if not math.isfinite(value):
        return f"{what} gave {value}, not a finite number (a division by zero?): {how}"
    if abs(value - want) > 1e-6 + 1e-5 * abs(want):
        return f"{what} gave {value:.6g}: {how}"
    return None


# --------------------------------------------------------------------------- forbidden calls


@dataclass(frozen=True)
class Forbidden:
    """A function the learner is asked to write themselves: ``owner.name`` raises while their function runs.

    ``shown``: how the exercise names it. ``when``: refuse only the calls for which it is true (given the call's
    arguments), e.g. ``F.scaled_dot_product_attention(…, enable_gqa=True)``; None refuses every call."""

    owner: Any
    name: str
    shown: str
    when: Callable[..., bool] | None = None


@contextlib.contextmanager
def refusing(
    forbidden: tuple[Forbidden, ...], exercise: str, write: str, namespaces: tuple[dict, ...] = ()
) -> Iterator[None]:
    """While the block runs, every forbidden call raises :class:`Refused` saying what ``exercise`` asks to write —
    under its own name, and under every name in ``namespaces`` (the learner's globals) bound to it, as ``from
    torch.nn.functional import cross_entropy`` binds one."""
    saved = [(f, getattr(f.owner, f.name), f.name in vars(f.owner)) for f in forbidden]
    aliases: list[tuple[dict, str, Any]] = []  # (namespace, name, the original): put back afterwards
    try:
        for f, original, _ in saved:
            refuser = _refuser(f, original, exercise, write)
            setattr(f.owner, f.name, refuser)
            for space in namespaces:
                for name, value in list(space.items()):
                    if value is original:
                        aliases.append((space, name, value))
                        space[name] = refuser
        yield
    finally:
        for space, name, value in reversed(aliases):
            space[name] = value
        for f, original, own in reversed(saved):
            if own:
                setattr(f.owner, f.name, original)
            else:  # it was inherited: uncover the base class's again
                delattr(f.owner, f.name)


def _refuser(f: Forbidden, original: Callable, exercise: str, write: str) -> Callable:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        if f.when is not None and not f.when(*args, **kwargs):
            return original(*args, **kwargs)
        raise Refused(f"{exercise} asks you to write {write} yourself: {f.shown} is off while your function runs")

    return refuse


# --------------------------------------------------------------------------- exercises that ask for a function


@dataclass(frozen=True)
class Mistake:
    """A wrong answer learners write: ``answer`` computes what it returns (same arguments as the exercise's
    function), ``hint`` is what check says to it — what is wrong, never the answer."""

    hint: str
    answer: Callable


@dataclass(frozen=True)
class Exercise:
    """An exercise that asks for a function, and how to judge it.

    ``task``: ``"name(arguments) → what it returns"``. ``cases()``: the argument tuples the check tries.
    ``reference(*args)``: the right result. ``compare(got, want, args)``: None if right, else the general hint.
    ``mistakes``: the bank of known mistakes, tried in order. ``forbidden`` and ``write``: the calls refused while
    the learner's function runs, and what the exercise asks to write instead. ``same(got, theirs, args)``: whether
    an answer returned what a mistake returns (by default: the same value; an exercise that ignores part of the
    output, such as padded rows, ignores it here too)."""

    id: str
    task: str
    cases: Callable[[], list[tuple]]
    reference: Callable
    compare: Callable[[Any, Any, tuple], str | None]
    mistakes: tuple[Mistake, ...]
    forbidden: tuple[Forbidden, ...] = ()
    write: str = ""
    same: Callable[[Any, Any, tuple], bool] = same_output

    @property
    def returns(self) -> str:
        """What the function should return, as the task says it."""
        return self.task.partition(" → ")[2]

    def judge(self, answer: Callable) -> str | None:
        """None if ``answer`` is right, else one line: the known mistake's hint, or the general one. Raises
        :class:`NotAttempted` while it raises ``NotImplementedError``."""
        if not callable(answer):
            return f"check expects your function here, got {kind(answer)}"
        cases = self.cases()
        wants = [self.reference(*copy.deepcopy(args)) for args in cases]  # the reference first, from the originals
        outputs, hints = [], []
        for args, want in zip(cases, wants):
            got, failed = self._run(answer, args)
            if failed:
                return failed
            if got is None:
                return f"your function returned None, expected {self.returns}: does it end with `return …`?"
            outputs.append(got)
            try:
                hints.append(self.compare(got, want, args))
            except Exception:  # the check could not read what the function returned
                hints.append(f"your function returned {kind(got)}, expected {self.returns}")
        wrong = [i for i, hint in enumerate(hints) if hint]
        if not wrong:
            return None
        for mistake in self.mistakes:
            if all(self._made(mistake, outputs[i], cases[i]) for i in wrong):
                return mistake.hint
        return hints[wrong[0]]

    def _run(self, answer: Callable, args: tuple) -> tuple[Any, str | None]:
        """→ (what the learner's function returned on a copy of ``args``, None) or (None, why it failed)."""
        try:
            namespaces = (answer.__globals__,) if isinstance(getattr(answer, "__globals__", None), dict) else ()
            with refusing(self.forbidden, self.id, self.write, namespaces):
                return answer(*copy.deepcopy(args)), None  # it may change its inputs in place: the check's stay intact
        except NotImplementedError:
            raise NotAttempted from None
        except Refused as e:
            return None, str(e)
        except Exception as e:  # the learner's code failed: say how, in one line
            return None, f"your function raised {type(e).__name__}: {e}".splitlines()[0]

    def _made(self, mistake: Mistake, got: Any, args: tuple) -> bool:
        """Whether ``got`` is what ``mistake`` returns on ``args``."""
        try:
            theirs = mistake.answer(*copy.deepcopy(args))
        except Exception:
            return False
        return self.same(got, theirs, args)


# --------------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class Answer:
    """One kind of prediction: ``matches(value)`` says whether a prediction is of this kind, ``reason`` is what check
    says to it, ``example`` is one such prediction (for the tests), ``right`` whether it is the right one."""

    matches: Callable[[Any], bool]
    reason: str
    example: Any
    right: bool = False


@dataclass(frozen=True)
class Prediction:
    """An exercise that asks for a prediction — a number or a choice — written before an experiment runs.

    ``task``: what to predict, as check names it when the prediction is not of the expected kind. ``valid(value)``:
    whether it is of that kind. ``answers``: every kind of prediction and its reason, tried in order."""

    id: str
    task: str
    valid: Callable[[Any], bool]
    answers: tuple[Answer, ...]

    def judge(self, value: Any) -> tuple[bool, str]:
        """→ (right, the reason); :class:`NotAttempted` while the prediction is None."""
        if value is None:
            raise NotAttempted
        value = _as_number(value)
        if not self.valid(value):
            return False, f"expected {self.task}, got {value!r}"
        for answer in self.answers:
            if answer.matches(value):
                return answer.right, answer.reason
        return False, f"expected {self.task}, got {value!r}"


def _as_number(x: Any) -> Any:
    """A prediction written as text, ``"3"`` or ``"0.9"``, as the number it says; anything else unchanged."""
    if not isinstance(x, str):
        return x
    try:
        number = float(x.strip())
    except ValueError:
        return x
    return int(number) if number.is_integer() else number


def is_number(x: Any) -> bool:
    """Whether ``x`` is one real number (not a bool): a prediction of a number."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


def between(low: float, high: float) -> Callable[[Any], bool]:
    """A test for predictions ``low ≤ value ≤ high``."""
    return lambda x: low <= x <= high
