"""Atomic writes and format stamps: the bottom module every written file goes through."""

from __future__ import annotations

import json
import os

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
import signal
import stat
import subprocess
import sys

import pytest

from glowflow.errors import GlowflowError
from glowflow.files import atomic_write, atomic_write_json, atomic_write_text, check_stamp


class StampError(GlowflowError):
    pass


def test_a_failed_write_keeps_the_old_text_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "notes.txt"
    atomic_write_text(path, "first")

    def breaks(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, breaks)
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_json_is_written_whole_with_a_final_newline_and_a_normal_mode(tmp_path):
    path = tmp_path / "sub" / "record.json"
    atomic_write_json(path, {"a": [1, 2]})
    assert path.read_text().endswith("\n")
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    assert path.stat().st_mode & 0o044  # readable by others, unlike mkstemp's private file


@pytest.mark.parametrize(
    "record, fragment",
    [
        ({"format": "other", "version": 1}, "is not a test file"),
        ([1, 2], "is not a test file"),
        ({"format": "test"}, "no valid format version"),
        ({"format": "test", "version": True}, "no valid format version"),
        (
            {"format": "test", "version": 3},
            "format version 3; this glowflow reads up to 2: upgrade",
        ),
        ({"format": "test", "version": 1}, "format version 1; this glowflow reads 2: remake it"),
    ],
)
def test_stamps_of_other_formats_and_versions_are_refused_by_name(record, fragment):
    with pytest.raises(StampError, match=fragment):
        check_stamp(
            record, "test", 2, what="x.bin", kind="a test file", error=StampError,
            newer="upgrade", older="remake it",
        )  # fmt: skip


def test_older_versions_are_read_where_no_fix_is_named():
    check_stamp({"format": "test", "version": 1}, "test", 2, what="x", kind="k",
                error=StampError, newer="upgrade")  # fmt: skip
    check_stamp({"format": "test", "version": 2}, "test", 2, what="x", kind="k",
                error=StampError, newer="upgrade", older="remake it")  # fmt: skip


def test_the_folder_is_flushed_after_the_rename(tmp_path, monkeypatch):
    """Without the folder's flush, a power loss after the rename can bring the old file back."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.realpath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name the flushed files")
    atomic_write_text(tmp_path / "notes.txt", "text")
    renamed = events.index(("replace", os.path.realpath(tmp_path / "notes.txt")))
    assert events[renamed + 1 :] == [("fsync", os.path.realpath(tmp_path))]
    assert events[renamed - 1][0] == "fsync"  # the file's bytes before it is renamed


def test_the_mode_comes_from_the_umask_without_changing_it(tmp_path, monkeypatch):
    """``os.umask`` sets the mask of the whole process: another thread creating a file
    meanwhile would get mode 0o666. The kernel applies the mask to the new file itself."""
    umask = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("os.umask was called"))
        atomic_write_text(tmp_path / "a.txt", "text")
        atomic_write_text(tmp_path / "a.txt", "again")  # replacing keeps a normal mode too
    finally:
        monkeypatch.undo()
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~0o027 == 0o640


SLOW_WRITER = """
import sys, time
from glowflow.files import atomic_write

def write(f):
    f.write(b"x" * 100_000)
    f.flush()
    print("writing", flush=True)
    time.sleep(600)

atomic_write(sys.argv[1], write)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs kill -9")
def test_a_writer_killed_mid_write_leaves_a_temporary_file_the_next_write_removes(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_write_text(path, "old")
    writer = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(path)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert writer.stdout.readline() == "writing\n"
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    (left,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert left.name.startswith(".checkpoint.pt.") and left.stat().st_size == 100_000
    assert path.read_text() == "old"
    # a live writer's temporary file (one that a writer holds locked) is left alone, whatever
    # its pid or host (a restarted container reuses pids under another host name)
    live = tmp_path / ".checkpoint.pt.0123456789ab.tmp"
    holder = os.open(live, os.O_WRONLY | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    # and so is another file's
    other = tmp_path / left.name.replace(".checkpoint.pt.", ".summary.json.")
    other.write_bytes(b"other")
    try:
        atomic_write_text(path, "new")
    finally:
        os.close(holder)
    assert path.read_text() == "new" and not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, live.name, other.name])


@pytest.mark.skipif(fcntl is None, reason="needs flock")
def test_a_dead_writers_temporary_file_is_removed_even_if_its_pid_is_alive_again(tmp_path):
    """In a restarted container, pid 1 is the trainer again: a pid tells nothing of a
    temporary file's writer, the lock does."""
    path = tmp_path / "checkpoint.pt"
    stale = tmp_path / f".checkpoint.pt.{os.getpid()}.deadbeef.tmp"  # this process's pid
    stale.write_bytes(b"x" * 1000)
    atomic_write_text(path, "new")
    assert not stale.exists() and path.read_text() == "new"
