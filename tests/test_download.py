"""minivb.data.kinetics.downloads against a local HTTP server (127.0.0.1 only) and hostile tarballs."""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

import pytest

from minivb.data.kinetics.downloads import (
    ArchiveError,
    DownloadError,
    ExtractResult,
    NotEnoughSpace,
    check_free_space,
    extract_tar,
    fetch,
    fetch_many,
    free_bytes,
    is_extracted,
    read_url_list,
)

KB = 1024


@pytest.fixture
def blob():
    return os.urandom(300 * KB)


def fast(**kwargs):
    return dict(dict(retries=3, backoff=0, timeout=5, progress=False), **kwargs)


def range_start(headers: dict) -> int | None:
    rng = headers.get("Range")
    return None if rng is None else int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))


# --------------------------------------------------------------------------- fetch


def test_fetch_downloads_exactly_and_skips_finished_file(server, tmp_path, blob):
    url = server.put("a.bin", blob)
    dest = tmp_path / "out" / "sub" / "a.bin"
    assert fetch(url, dest, **fast()) == dest
    assert dest.read_bytes() == blob
    assert not dest.with_name("a.bin.part").exists()
    assert len(server.gets("a.bin")) == 1
    assert server.gets("a.bin")[0]["User-Agent"] == "minivb"
    assert fetch(url, dest, **fast()) == dest
    assert len(server.state["requests"]) == 1  # the second call did not ask the server


def test_dropped_connection_is_resumed_with_range(server, tmp_path, blob):
    url = server.put("a.bin", blob)
    server.state["drop"]["/a.bin"] = [100 * KB, 1]
    dest = tmp_path / "a.bin"
    fetch(url, dest, **fast())
    assert dest.read_bytes() == blob
    first, second = server.gets("a.bin")
    assert range_start(first) is None
    assert range_start(second) == 100 * KB


def test_part_from_a_crashed_run_is_resumed(server, tmp_path, blob):
    url = server.put("a.bin", blob)
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(blob[: 50 * KB])
    fetch(url, dest, **fast())
    assert dest.read_bytes() == blob
    [headers] = server.gets("a.bin")
    assert range_start(headers) == 50 * KB


def test_retries_exhausted_keep_part_and_next_run_resumes(server, tmp_path, blob):
    url = server.put("a.bin", blob)
    server.state["drop"]["/a.bin"] = [50 * KB, 3]
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match="connection closed after 153600 of 307200 bytes"):
        fetch(url, dest, **fast(retries=2))
    assert [range_start(h) for h in server.gets("a.bin")] == [None, 50 * KB, 100 * KB]
    assert (tmp_path / "a.bin.part").read_bytes() == blob[: 150 * KB]
    assert not dest.exists()
    fetch(url, dest, **fast())
    assert dest.read_bytes() == blob
    assert range_start(server.gets("a.bin")[-1]) == 150 * KB


def test_a_server_that_trickles_is_a_stall_and_keeps_what_arrived(server, tmp_path, monkeypatch):
    """D8 of the hardening issue: a server sending a few bytes at a time held a read for a whole megabyte, with no
    timeout (the socket was never silent), and Ctrl-C waited for it. Reads now return what has arrived, and too
    few bytes over a window is a stall: retried, then reported; the .part keeps what arrived, for the next run."""
    import time

    import minivb.data.kinetics.downloads as download

    monkeypatch.setattr(download, "STALL_SECONDS", 0.5)
    monkeypatch.setattr(download, "STALL_BYTES", 1000)
    url = server.put("slow.bin", os.urandom(64 * KB))
    server.state["trickle"]["/slow.bin"] = 0.01  # ~100 bytes/s: far under 1000 bytes per 0.5 s
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"stalled; at least 1,000 expected\) \(after 2 attempts\)"):
        fetch(url, tmp_path / "slow.bin", **fast(retries=1))
    assert time.monotonic() - start < 10  # two windows of 0.5 s, not the body's ten minutes
    kept = (tmp_path / "slow.bin.part").stat().st_size
    assert 0 < kept < 64 * KB and [range_start(h) for h in server.gets("slow.bin")][0] is None
    assert range_start(server.gets("slow.bin")[1]) > 0  # the retry resumed where the stall left it


def test_ctrl_c_stops_a_download_from_a_server_that_sends_nothing(server, tmp_path):
    """Issue 30: a server that sent its headers and then nothing held Ctrl-C until the socket's timeout (about a
    minute; here 5 s), after which the part was even requested again. A read now waits for bytes at most
    POLL_SECONDS at a time and looks at Ctrl-C in between: the download stops in its first request, keeping its
    .part."""
    import signal
    import threading
    import time

    url = server.put("silent.bin", os.urandom(64 * KB))
    server.state["silent"].add("/silent.bin")

    def ctrl_c_once_asked():
        while not server.gets("silent.bin"):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)  # the main thread, in fetch_many, gets KeyboardInterrupt

    thread = threading.Thread(target=ctrl_c_once_asked)
    thread.start()
    with pytest.raises(KeyboardInterrupt):
        fetch_many([(url, tmp_path / "silent.bin")], workers=1, **fast(retries=1))
    thread.join()
    assert len(server.gets("silent.bin")) == 1  # stopped in the first request: no timeout, no second one
    assert (tmp_path / "silent.bin.part").exists() and not (tmp_path / "silent.bin").exists()


def test_server_ignoring_range_restarts_part(server, tmp_path, blob):
    url = server.put("a.bin", blob)
    server.state["ignore_range"].add("/a.bin")
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(os.urandom(50 * KB))  # not even the right bytes
    fetch(url, dest, **fast())
    assert dest.read_bytes() == blob
    [headers] = server.gets("a.bin")
    assert range_start(headers) == 50 * KB  # asked for a range, got the whole file


def test_416_with_complete_part_finishes_without_download(server, tmp_path, blob):
    url = server.put("a.bin", blob)
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(blob)
    fetch(url, dest, **fast())
    assert dest.read_bytes() == blob
    assert len(server.gets("a.bin")) == 1


def test_416_with_overlong_part_restarts(server, tmp_path, blob):
    url = server.put("a.bin", blob)
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(blob + b"junk")
    fetch(url, dest, **fast())
    assert dest.read_bytes() == blob
    assert [range_start(h) for h in server.gets("a.bin")] == [len(blob) + 4, None]


def test_persistent_500_raises_after_all_attempts_and_keeps_part(server, tmp_path, blob):
    url = server.put("a.bin", blob)
    server.state["status"]["/a.bin"] = [500, None]
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(blob[: 50 * KB])
    with pytest.raises(DownloadError) as info:
        fetch(url, dest, **fast(retries=2))
    assert len(server.gets("a.bin")) == 3
    err = info.value
    assert err.url == url and "500" in err.reason
    assert str(err).startswith(f"{url}: ") and "\n" not in str(err)
    assert (tmp_path / "a.bin.part").read_bytes() == blob[: 50 * KB]
    assert not dest.exists()


def test_transient_500_is_retried(server, tmp_path, blob):
    url = server.put("a.bin", blob)
    server.state["status"]["/a.bin"] = [503, 2]
    fetch(url, tmp_path / "a.bin", **fast(retries=2))
    assert (tmp_path / "a.bin").read_bytes() == blob
    assert len(server.gets("a.bin")) == 3


def test_404_is_not_retried(server, tmp_path):
    url = server.url("missing.bin")
    with pytest.raises(DownloadError, match="404") as info:
        fetch(url, tmp_path / "missing.bin", **fast(retries=3))
    assert info.value.url == url
    assert len(server.gets("missing.bin")) == 1
    assert not (tmp_path / "missing.bin").exists()


def test_file_url_is_copied(tmp_path, blob):
    src = tmp_path / "src.bin"
    src.write_bytes(blob)
    dest = tmp_path / "out" / "copy.bin"
    fetch(src.as_uri(), dest, **fast())
    assert dest.read_bytes() == blob
    with pytest.raises(DownloadError, match="copy2.bin|No such file"):
        fetch((tmp_path / "nope.bin").as_uri(), tmp_path / "copy2.bin", **fast())


def test_fetch_many_reports_failures_and_skips_finished(server, tmp_path):
    blobs = {f"p{i}.bin": os.urandom(20 * KB + i) for i in range(3)}
    jobs = [(server.put(name, data), tmp_path / "parts" / name) for name, data in blobs.items()]
    jobs.insert(1, (server.url("bad.bin"), tmp_path / "parts" / "bad.bin"))
    errors = fetch_many(jobs, workers=3, **fast())
    assert len(errors) == 1
    assert isinstance(errors[0], DownloadError) and errors[0].url == server.url("bad.bin")
    for name, data in blobs.items():
        assert (tmp_path / "parts" / name).read_bytes() == data
    assert not (tmp_path / "parts" / "bad.bin").exists()
    before = len(server.state["requests"])
    assert len(fetch_many(jobs, workers=2, **fast())) == 1
    assert len(server.state["requests"]) == before + 1  # only the failed part is asked again


# --------------------------------------------------------------------------- url lists


def test_read_url_list(server, tmp_path):
    text = "  http://x/a.tar.gz  \n\nhttp://x/b.tar.gz\t\n   \nhttp://x/c.tar.gz"
    expected = ["http://x/a.tar.gz", "http://x/b.tar.gz", "http://x/c.tar.gz"]
    assert read_url_list(server.put("list.txt", text.encode())) == expected
    (tmp_path / "list.txt").write_text(text + "\n")
    assert read_url_list(str(tmp_path / "list.txt")) == expected
    with pytest.raises(DownloadError, match="404"):
        read_url_list(server.url("nope.txt"))
    with pytest.raises(DownloadError):
        read_url_list(str(tmp_path / "nope.txt"))


# --------------------------------------------------------------------------- extraction


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def test_hostile_tarball_only_writes_inside_dest(tmp_path):
    absolute = tmp_path / "abs_target" / "abs.txt"
    archive = tmp_path / "in" / "hostile.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "ok/a.mp4", b"video bytes")
        _add(tar, "../evil.txt", b"evil")
        _add(tar, str(absolute), b"abs")
        _add(tar, "link", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _add(tar, "ok/up", type=tarfile.SYMTYPE, linkname="../../../outside")
        _add(tar, "hard", type=tarfile.LNKTYPE, linkname="../../outside.txt")
        _add(tar, "dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
    dest = tmp_path / "work" / "dest"
    dest.parent.mkdir()
    before = sorted(tmp_path.rglob("*"))

    result = extract_tar(archive, dest)

    assert (dest / "ok" / "a.mp4").read_bytes() == b"video bytes"
    assert result.extracted == 1
    assert {name for name, _ in result.rejected} == {"../evil.txt", str(absolute), "link", "ok/up", "hard", "dev"}
    assert all(reason and "\n" not in reason for _, reason in result.rejected)
    after = sorted(p for p in tmp_path.rglob("*") if p != dest and dest not in p.parents)
    assert after == before  # nothing written outside dest
    assert not absolute.exists() and not (tmp_path / "work" / "evil.txt").exists()
    written = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if ".extracted" not in p.parts)
    assert written == ["ok", "ok/a.mp4"]


def _good_archive(tmp_path: Path, payload: bytes) -> Path:
    archive = tmp_path / "good.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "cls/a.mp4", payload)
        _add(tar, "cls/b.mp4", b"b")
    return archive


def test_extract_is_idempotent(tmp_path):
    archive = _good_archive(tmp_path, b"a" * 1000)
    dest = tmp_path / "dest"
    assert not is_extracted(archive, dest)
    first = extract_tar(archive, dest)
    assert first == ExtractResult(extracted=2, rejected=[])
    assert is_extracted(archive, dest)
    assert (dest / ".extracted" / "good.tar.gz.done").is_file()
    (dest / "cls" / "a.mp4").unlink()
    assert extract_tar(archive, dest) == first
    assert not (dest / "cls" / "a.mp4").exists()  # the marker short-circuited extraction


def test_truncated_archive_raises_archive_error_and_can_be_redone(tmp_path):
    payload = os.urandom(200 * KB)  # incompressible, so half the .tar.gz is mid-member
    archive = _good_archive(tmp_path, payload)
    whole = archive.read_bytes()
    archive.write_bytes(whole[: len(whole) // 2])
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError) as info:
        extract_tar(archive, dest)
    message = str(info.value)
    assert message.startswith(f"{archive}: ") and "truncated or corrupt" in message
    assert "\n" not in message
    assert not is_extracted(archive, dest)
    archive.write_bytes(whole)  # downloaded again: extraction redoes it
    assert extract_tar(archive, dest).extracted == 2
    assert (dest / "cls" / "a.mp4").read_bytes() == payload


def test_garbage_archive_raises_archive_error(tmp_path):
    archive = tmp_path / "junk.tar.gz"
    archive.write_bytes(os.urandom(5000))
    with pytest.raises(ArchiveError, match="junk.tar.gz: archive is truncated or corrupt"):
        extract_tar(archive, tmp_path / "dest")


# --------------------------------------------------------------------------- disk space


def test_check_free_space(tmp_path):
    with pytest.raises(NotEnoughSpace) as info:
        check_free_space(tmp_path, 10**18, "Kinetics-400")
    message = str(info.value)
    assert isinstance(info.value, OSError)
    assert "\n" not in message
    assert message.startswith(f"Kinetics-400 needs about 1000000000.0 GB free on {tmp_path}, only ")
    assert message.endswith(" GB are free; free some space or choose another --root")
    check_free_space(tmp_path, 1, "one byte")
    check_free_space(tmp_path / "not" / "yet" / "made", 1, "one byte")
    assert free_bytes(tmp_path / "not" / "yet") > 0
