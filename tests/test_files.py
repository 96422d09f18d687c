"""Atomic writes and format stamps: the bottom module every written file goes through."""

from __future__ import annotations

import json

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
