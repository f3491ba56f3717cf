"""Writing files so that a reader sees the old version or the new one, never half of one.

One writer for the whole package: :func:`atomic_file` (a temporary file beside the target, then
``os.replace``, which is atomic), used by :func:`write_atomic` (small files), :func:`write_json`
(strict JSON), checkpoints (:func:`minivb.engine.checkpoint.save_checkpoint`) and frame stores. A full disk
becomes :class:`NoSpace`: one line, and the old file kept. Plain Python (no torch).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from pathlib import Path


class NoSpace(OSError):
    """The disk is full: what was being written is not (the old version of the file is kept)."""

    def __init__(self, folder: str | os.PathLike):
        super().__init__(
            errno.ENOSPC,
            f"no space left on {folder}; the files written before are kept, nothing "
            f"half-written is left; free some space and run again",
        )


def is_disk_full(e: BaseException) -> bool:
    """Is ``e`` a full disk? (``OSError`` ENOSPC, or torch.save's "unexpected pos" when its zip writer runs out.)"""
    return (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or (
        isinstance(e, RuntimeError) and ("unexpected pos" in str(e) or "file write failed" in str(e))
    )


class FolderInUse(Exception):
    """Another process holds the folder (``.holder``: its process id as it wrote it, or ``"?"``)."""

    def __init__(self, folder: Path, holder: str):
        super().__init__(f"{folder} is in use by another process ({holder})")
        self.folder, self.holder = folder, holder


def lock_folder(folder: str | os.PathLike, name: str = ".lock") -> int:
    """Hold ``folder`` (an exclusive ``flock`` on ``folder/<name>``, holding this process's id) → the lock's file
    descriptor for :func:`unlock_folder`. Held by another process → :class:`FolderInUse`. A killed holder's lock
    is released by the system, so a lock never outlives its process. One long run per folder (``name``: one
    command per output file, ``.<file>.lock``)."""
    import fcntl

    folder = Path(folder)
    fd = os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise FolderInUse(folder, holder) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def unlock_folder(folder: str | os.PathLike, fd: int, name: str = ".lock") -> None:
    """Let go of a folder held by :func:`lock_folder` (its lock file is removed)."""
    (Path(folder) / name).unlink(missing_ok=True)
    os.close(fd)


def read_text(path: str | os.PathLike) -> str:
    """A text file the user gave (an index, an annotation CSV, a class list) as UTF-8 text (a byte-order mark is
    dropped); bytes that are not UTF-8 → one-line ``ValueError`` naming the file, where, and the fix."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as UTF-8"
        ) from None


def unsafe_name(name: str) -> str | None:
    """Why ``name`` — a label, an id, a part name that came from data (a CSV, a mirror's list) — cannot be used as
    one file or folder name inside a folder, or None if it can. Names from data are never paths: one with a
    separator, ``..`` or an absolute start would write outside the folder it is joined to; one with a control
    character (a newline, a tab) would break the one-name-a-line lists (``classes.txt``) it is written to."""
    if not isinstance(name, str) or name.strip() in ("", ".", ".."):
        return "empty, '.' or '..': it would be written outside its folder"
    if "/" in name or "\\" in name or "\0" in name:
        return "it holds a path separator: it would be written outside its folder"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "it holds a control character (a newline, a tab, …)"
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, durable: bool = True):
    """``with atomic_file(path) as f: f.write(...)`` → ``path`` appears whole when the block ends, or not at all.

    The bytes go to ``.<name>.<random>.tmp`` beside ``path`` (:func:`minivb.plumbing.runs.claim` sweeps leftovers),
    then ``os.replace``. ``durable``: also ``fsync`` the file and its folder (checkpoints, small records;
    a frame store, rewritten if lost, skips it). An error removes the temporary file; a full disk raises
    :class:`NoSpace`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600; the file gets the user's usual permissions
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(e):  # the old file stays; no half-written file is left behind
            raise NoSpace(path.parent) from None
        raise
    if durable:
        try:  # make the rename itself durable (best effort: not every file system allows it)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write a small file (text as UTF-8) through :func:`atomic_file`."""
    with atomic_file(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def _finite(obj):
    """A copy of ``obj`` that strict JSON accepts: NaN / ±inf → ``None``, NumPy scalars → Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():  # a NumPy scalar or 0-d tensor
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj) -> None:
    """``obj`` as strict JSON (non-finite numbers → ``null``), indented, written atomically."""
    write_atomic(path, json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n")
