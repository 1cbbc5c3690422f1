"""Atomic writes: complete or absent, never half-written, with the user's umask permissions."""

from __future__ import annotations

import os
import stat

import pytest

from prdit.atomic import atomic_path, write_bytes_atomic, write_text_atomic


def test_written_file_has_umask_permissions_and_no_leftovers(tmp_path):
    old = os.umask(0o022)
    try:
        out = write_bytes_atomic(tmp_path / "sub" / "model.bin", b"\x00\x01" * 1000, fsync=True)
    finally:
        os.umask(old)
    assert out.read_bytes() == b"\x00\x01" * 1000
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in out.parent.iterdir()] == ["model.bin"]


def test_failure_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "report.json"
    write_text_atomic(target, '{"fid": 1.5}')
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("{half", encoding="utf-8")
            raise RuntimeError("disk full")
    assert target.read_text(encoding="utf-8") == '{"fid": 1.5}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_suffix_lets_writers_choose_the_format_and_text_is_utf8(tmp_path):
    with atomic_path(tmp_path / "v.nii.gz", suffix=".nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    write_text_atomic(tmp_path / "t.csv", "a,b\r\n1,2×3\r\n", newline="")
    assert (tmp_path / "t.csv").read_bytes() == "a,b\r\n1,2×3\r\n".encode()
