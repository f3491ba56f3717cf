"""Resumable downloads and safe tar extraction (standard library + tqdm only).

``python -m minivb.data.kinetics download`` fetches Kinetics-400 from the CVDF mirror:
about 450 GB in about 300 tarballs. A download that size gets interrupted sooner or later
(dropped connections, a full disk, Ctrl-C), so every step here can be stopped and simply
run again:

* :func:`fetch` writes ``<dest>.part`` and renames it to ``dest`` only once it is complete
  (its size checked against the server's Content-Length), so a file at ``dest`` is always
  whole and is skipped next time. A ``.part`` left behind is resumed with an HTTP
  ``Range`` request. Dropped connections, timeouts, HTTP 5xx / 408 / 429 are retried with
  exponential backoff; what is left raises :class:`DownloadError` (one line).
* :func:`fetch_many` runs :func:`fetch` over many parts in a thread pool and returns the
  failures instead of raising them, so one bad part does not stop the other 299.
* :func:`read_url_list` reads a list of URLs (one per line) from a URL or a local file.
* :func:`check_free_space` refuses early, with a clear message, rather than at 90 %.
* :func:`extract_tar` unpacks an archive with Python's ``"data"`` extraction filter: no
  member is written outside ``dest`` (``..``, absolute paths, links pointing out, device
  files are rejected one by one and reported), and a marker file under
  ``dest/.extracted/`` makes re-running skip archives already unpacked.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import select
import shutil
import tarfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TypeVar
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from ...plumbing.files import write_atomic

CHUNK = 1 << 20  # the most bytes read (and written) at a time; a read returns whatever has arrived
STALL_SECONDS, STALL_BYTES = 60.0, 64 << 10  # fewer bytes than this over that long: the server stalls (retried)
POLL_SECONDS = 0.5  # the longest a read waits for bytes before it looks at Ctrl-C and the stall rule again
USER_AGENT = "minivb"
RETRY_STATUS = (408, 429)  # client errors worth retrying; all 5xx are retried too

T = TypeVar("T")


# --------------------------------------------------------------------------- errors


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class _NamedError(RuntimeError):
    """An error about one thing (a URL, a file); ``str()`` is ``"<what>: <reason>"`` on one line."""

    def __init__(self, what: str, reason: str):
        self.what = str(what)
        self.reason = _one_line(reason)
        super().__init__(f"{self.what}: {self.reason}")

    def __reduce__(self):  # picklable with its two arguments (errors cross thread and process pools)
        return type(self), (self.what, self.reason)


class DownloadError(_NamedError):
    """A URL that could not be fetched (after retries); ``str()`` is ``"<url>: <reason>"``."""

    @property
    def url(self) -> str:
        return self.what


class ArchiveError(_NamedError):
    """An archive that could not be read (truncated, corrupt); ``str()`` is ``"<archive>: <reason>"``."""

    @property
    def archive(self) -> str:
        return self.what


class NotEnoughSpace(OSError):
    """Not enough free disk space for what is about to be written."""


class _Transient(Exception):
    """One attempt failed in a way worth retrying (e.g. the body ended early)."""


class _Stopped(Exception):
    """A download was asked to stop (Ctrl-C in :func:`fetch_many`); its ``.part`` stays."""


# --------------------------------------------------------------------------- HTTP helpers


def _urlopen(url: str, timeout: float, offset: int = 0, method: str = "GET"):
    """Open ``url``; for HTTP(S) with ``offset > 0`` ask for the bytes from ``offset`` on."""
    headers = {"User-Agent": USER_AGENT}
    if offset > 0 and url.lower().startswith(("http://", "https://")):
        headers["Range"] = f"bytes={offset}-"
    return urlopen(Request(url, headers=headers, method=method), timeout=timeout)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """``"bytes 100-199/200"`` → ``(100, 200)``; ``"bytes */200"`` → ``(None, 200)``."""
    if not header or not header.strip().startswith("bytes "):
        return None, None
    span, _, total = header.strip()[6:].partition("/")
    first = span.partition("-")[0]
    return _int_or_none(first if span != "*" else None), _int_or_none(total if total != "*" else None)


def _remote_size(url: str, timeout: float) -> int | None:
    """Content-Length from a HEAD request, or None when unknown."""
    try:
        with _urlopen(url, timeout, method="HEAD") as resp:
            return _int_or_none(resp.headers.get("Content-Length"))
    except (URLError, http.client.HTTPException, OSError):
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, URLError):
        return str(exc.reason)
    if isinstance(exc, _Transient):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, HTTPError):
        return exc.code >= 500 or exc.code in RETRY_STATUS
    if isinstance(exc, URLError):  # no such local file: retrying will not help
        return not isinstance(exc.reason, FileNotFoundError)
    return True


_NETWORK_ERRORS = (URLError, http.client.HTTPException, ConnectionError, TimeoutError, _Transient)


def _retrying(url: str, attempt: Callable[[], T], *, retries: int, backoff: float) -> T:
    """Call ``attempt()`` up to ``retries + 1`` times; raise :class:`DownloadError` at the end."""
    retries = max(retries, 0)
    for i in range(retries + 1):
        try:
            return attempt()
        except _NETWORK_ERRORS as e:
            if isinstance(e, HTTPError):
                e.close()  # it holds the response's socket
            reason = _describe(e)
            if not _retryable(e):
                raise DownloadError(url, reason) from None
        if i < retries:
            time.sleep(backoff * 2**i)
    raise DownloadError(url, f"{reason} (after {retries + 1} attempts)")


# --------------------------------------------------------------------------- fetch


def _open_from(url: str, offset: int, timeout: float):
    """GET ``url`` from byte ``offset`` on; None when a 416 answer shows ``.part`` is complete."""
    try:
        return _urlopen(url, timeout, offset)
    except HTTPError as e:
        if e.code != 416 or offset == 0:
            raise
        total = _content_range(e.headers.get("Content-Range"))[1]
        e.close()
    if total is None:
        total = _remote_size(url, timeout)
    if total == offset:
        return None
    return _urlopen(url, timeout, 0)  # .part is longer than the file, or of unknown size


def _body_span(resp, offset: int) -> tuple[int, int | None]:
    """Where the body starts in the file and the file's total size (None when unknown)."""
    if getattr(resp, "status", None) != 206:  # 200, or file:// (no status): the whole file
        return 0, _int_or_none(resp.headers.get("Content-Length"))
    start, total = _content_range(resp.headers.get("Content-Range"))
    if start != offset:
        raise _Transient(f"asked for bytes from {offset}, the server sent them from {start}")
    return start, total


def _download_once(
    url: str, part: Path, *, timeout: float, progress: bool, desc: str, stop: threading.Event | None
) -> None:
    """One request: append to (or restart) ``part``; :class:`_Transient` if the body is short."""
    offset = part.stat().st_size if part.exists() else 0
    resp = _open_from(url, offset, timeout)
    if resp is None:
        return
    with resp:
        try:
            start, total = _body_span(resp, offset)
        except _Transient:
            part.unlink(missing_ok=True)  # start again from byte 0 next attempt
            raise
        bar = tqdm(
            total=total,
            initial=start,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=None if progress else True,
            leave=False,
        )
        arrived = select.poll()  # a read waits for bytes at most POLL_SECONDS, then looks at stop (Ctrl-C):
        arrived.register(resp, select.POLLIN)  # neither a trickle nor a silent server can hold it for long
        with open(part, "ab" if start else "wb") as f, bar:
            window_start, window_bytes = time.monotonic(), 0
            while True:
                if stop is not None and stop.is_set():
                    raise _Stopped(url)
                if arrived.poll(POLL_SECONDS * 1000):  # bytes (or the end) have arrived: read1 returns them
                    if not (chunk := resp.read1(CHUNK)):
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
                    window_bytes += len(chunk)
                if time.monotonic() - window_start >= STALL_SECONDS:  # a minimum throughput, window by window
                    if window_bytes < STALL_BYTES:
                        raise _Transient(
                            f"the server sent {window_bytes:,} bytes in {STALL_SECONDS:g} s (stalled; "
                            f"at least {STALL_BYTES:,} expected)"
                        )
                    window_start, window_bytes = time.monotonic(), 0
    size = part.stat().st_size
    if total is not None and size != total:
        if size > total:
            part.unlink()
        raise _Transient(f"connection closed after {size} of {total} bytes")


def _fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    retries: int,
    timeout: float,
    backoff: float,
    progress: bool,
    desc: str | None,
    stop: threading.Event | None = None,
) -> Path:
    dest = Path(dest)
    if dest.exists():
        return dest
    try:
        Request(url)
    except ValueError as e:  # not a URL at all
        raise DownloadError(url, str(e)) from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    def attempt() -> None:
        _download_once(url, part, timeout=timeout, progress=progress, desc=desc or dest.name, stop=stop)

    _retrying(url, attempt, retries=retries, backoff=backoff)
    os.replace(part, dest)
    return dest


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
    progress: bool = True,
    desc: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (resumable, atomic) and return ``dest``.

    An existing ``dest`` is returned untouched. Bytes go to ``<dest>.part``, resumed with an
    HTTP Range request if it exists (restarted if the server ignores Range); the complete
    file is renamed to ``dest``. Dropped connections, timeouts and HTTP 5xx / 408 / 429 are
    retried ``retries`` more times, waiting ``backoff * 2**attempt`` seconds; then (or at once
    for other HTTP errors) :class:`DownloadError` is raised and the ``.part`` is kept.
    ``file://`` URLs are copied.
    """
    return _fetch(url, dest, retries=retries, timeout=timeout, backoff=backoff, progress=progress, desc=desc)


def fetch_many(
    jobs: Sequence[tuple[str, Path]],
    *,
    workers: int = 4,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
    progress: bool = True,
    desc: str = "parts",
) -> list[DownloadError]:
    """:func:`fetch` every ``(url, dest)`` with ``workers`` threads; return the failures.

    Parts already downloaded are skipped. A bar counts parts; per-file byte bars are shown
    only with one worker. Failed parts are returned (in job order), never raised. On Ctrl-C
    the running downloads stop at their next chunk, keeping their ``.part`` files.
    """
    jobs = list(jobs)
    errors: dict[int, DownloadError] = {}
    stop = threading.Event()
    kwargs = dict(
        retries=retries, timeout=timeout, backoff=backoff, progress=progress and workers <= 1, desc=None, stop=stop
    )
    with (
        tqdm(total=len(jobs), desc=desc, unit="part", disable=None if progress else True) as bar,
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
    ):
        futures = {pool.submit(_fetch, url, dest, **kwargs): i for i, (url, dest) in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                try:
                    future.result()
                except DownloadError as e:
                    errors[futures[future]] = e
                    bar.set_postfix(failed=len(errors))
                bar.update()
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [errors[i] for i in sorted(errors)]


def _read_text(url: str, timeout: float) -> str:
    with _urlopen(url, timeout) as resp:
        data = resp.read()
        total = _int_or_none(resp.headers.get("Content-Length"))
    if total is not None and len(data) != total:
        raise _Transient(f"connection closed after {len(data)} of {total} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DownloadError(url, "not UTF-8 text") from None


def read_url_list(url_or_path: str, *, timeout: float = 60.0, retries: int = 3) -> list[str]:
    """The non-blank lines, stripped, of a small text file at a URL or a local path."""
    if "://" in url_or_path:
        text = _retrying(url_or_path, lambda: _read_text(url_or_path, timeout), retries=retries, backoff=1.0)
    else:
        try:
            text = Path(url_or_path).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise DownloadError(url_or_path, getattr(e, "strerror", None) or str(e)) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------- disk space


def free_bytes(path: str | os.PathLike) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing ancestor)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def check_free_space(path: str | os.PathLike, need_bytes: int, what: str) -> None:
    """Raise :class:`NotEnoughSpace` unless ``need_bytes`` are free where ``path`` lives."""
    free = free_bytes(path)
    if free < need_bytes:
        raise NotEnoughSpace(
            f"{what} needs about {need_bytes / 1e9:.1f} GB free on {path}, only {free / 1e9:.1f} GB "
            "are free; free some space or choose another --root"
        )


# --------------------------------------------------------------------------- extraction


@dataclass
class ExtractResult:
    """What :func:`extract_tar` did: regular files written, and members refused (name, reason)."""

    extracted: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)


_CORRUPT = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def _marker(archive: Path, dest: Path) -> Path:
    return dest / ".extracted" / f"{archive.name}.done"


def is_extracted(archive: str | os.PathLike, dest: str | os.PathLike) -> bool:
    """Whether :func:`extract_tar` already finished unpacking ``archive`` into ``dest``."""
    return _marker(Path(archive), Path(dest)).is_file()


def _read_marker(marker: Path) -> ExtractResult | None:
    try:
        data = json.loads(marker.read_text())
        return ExtractResult(int(data["extracted"]), [(str(n), str(r)) for n, r in data["rejected"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable marker: extract again


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> str | None:
    """Extract one member through the ``"data"`` filter; return why it was refused, or None."""
    if member.name.startswith(("/", "\\")) or os.path.isabs(member.name):
        return "absolute path"  # the data filter would strip the "/"; refuse it outright
    try:
        tar.extract(member, dest, filter="data")
    except (tarfile.FilterError, tarfile.ExtractError) as e:
        return _one_line(e)
    return None


def _extract_all(archive: Path, dest: Path, progress: bool) -> ExtractResult:
    result = ExtractResult()
    bar = tqdm(
        desc=archive.name, unit="B", unit_scale=True, unit_divisor=1024, disable=None if progress else True, leave=False
    )
    with tarfile.open(archive, "r:*") as tar, bar:
        tar.errorlevel = 2  # raise ExtractError too, so it is reported per member
        for member in tar:
            reason = _extract_member(tar, member, dest)
            if reason is not None:
                result.rejected.append((member.name, reason))
            elif member.isreg():
                result.extracted += 1
            bar.update(member.size)
    return result


def extract_tar(archive: str | os.PathLike, dest: str | os.PathLike, *, progress: bool = False) -> ExtractResult:
    """Safely unpack a .tar / .tar.gz / .tgz into ``dest``, once.

    Members that would land outside ``dest`` (``..``, absolute paths, links pointing out)
    and special files are not written but listed in ``rejected``; the rest are extracted.
    After a complete run a marker ``dest/.extracted/<archive name>.done`` is written and
    later calls return its result at once. A truncated or corrupt archive raises
    :class:`ArchiveError` (members before the damage stay; running again redoes them).
    """
    if not hasattr(tarfile, "data_filter"):
        raise RuntimeError("safe tar extraction needs Python >= 3.11.4 (tarfile extraction filters)")
    archive, dest = Path(archive), Path(dest)
    marker = _marker(archive, dest)
    if marker.is_file() and (done := _read_marker(marker)) is not None:
        return done
    dest.mkdir(parents=True, exist_ok=True)
    try:
        result = _extract_all(archive, dest, progress)
    except _CORRUPT as e:
        raise ArchiveError(str(archive), f"archive is truncated or corrupt ({_describe(e)})") from None
    write_atomic(marker, json.dumps(asdict(result), indent=1))
    return result
