import os
import subprocess
import sys
import textwrap

import pytest

from agent import statefile
from agent.statefile import temporary_path, write_atomic


def test_a_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    write_atomic(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_crash_before_the_rename_leaves_the_old_file_and_the_next_write_reuses_the_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    crash = textwrap.dedent(f"""
        import os
        from agent.statefile import write_atomic
        os.replace = lambda *a: os._exit(3)  # the process dies between the fsync and the rename
        write_atomic({str(target)!r}, "new")
    """)
    child = subprocess.run([sys.executable, "-c", crash], cwd=os.getcwd(), timeout=60)
    assert child.returncode == 3
    assert target.read_text() == "old"
    assert temporary_path(target).read_text() == "new"  # written in full, never renamed
    write_atomic(target, "newer")
    assert target.read_text() == "newer"
    assert not temporary_path(target).exists()


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_raises_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch, failing):
    target = tmp_path / "state.json"
    target.write_text("old")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(statefile.os, failing, fail)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_without_durability_nothing_is_fsynced(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(statefile.os, "fsync", synced.append)
    write_atomic(tmp_path / "cursor", b"a", durable=False)
    assert synced == []
    write_atomic(tmp_path / "cursor", b"b")
    assert len(synced) == 2  # the file, then its directory
    monkeypatch.undo()
    assert (tmp_path / "cursor").read_bytes() == b"b"


def test_the_mode_sets_the_new_files_permissions(tmp_path):
    write_atomic(tmp_path / "private", "x", mode=0o600)
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o600


def test_a_component_id_is_one_path_component():
    assert statefile.safe_name("alerts/prod") == "alerts%2Fprod"
    assert statefile.safe_name("otlp/../../etc") == "otlp%2F..%2F..%2Fetc"
    assert statefile.safe_name("") == "_"
