"""phi_jax.data.files: whole-file text writes, all or nothing."""

import os

import pytest

from phi_jax.data import files


def test_write_text_replaces_the_file_and_leaves_no_temp(tmp_path):
  path = tmp_path / "report.md"
  path.write_text("old")
  files.write_text(path, "new ü\n")
  assert path.read_bytes() == "new ü\n".encode("utf-8")
  files.write_text(str(path), "again")  # str paths too
  assert path.read_text(encoding="utf-8") == "again"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path):
  path = tmp_path / "records.jsonl"
  path.write_text("old\n")
  with pytest.raises(RuntimeError, match="boom"):
    with files.atomic_open(path) as f:
      f.write("half")
      assert not path.read_text().startswith("half")  # not visible before the rename
      raise RuntimeError("boom")
  assert path.read_text() == "old\n"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["records.jsonl"]
  with pytest.raises(FileNotFoundError):
    files.write_text(tmp_path / "missing" / "x.json", "{}")  # the parent must exist


def test_written_files_get_the_umask_permissions_not_a_temp_files(tmp_path):
  old = os.umask(0o022)
  try:
    files.write_text(tmp_path / "a.json", "{}")
  finally:
    os.umask(old)
  assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
