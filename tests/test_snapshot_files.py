"""The read snapshot written into the snapshot before it (core/snapshot_files.py): only where no
reader holds that file, and always ending as the store byte for byte, whatever the file held."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings, strategies as st

from prefcurate.core import snapshot_files
from prefcurate.core.store import Store
from tests.support.judging import add_judgeable_pairs

pytestmark = pytest.mark.skipif(not snapshot_files.REUSABLE, reason="needs open-file-description locks (Linux)")


def _pairs_in(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT count(*) FROM pairs").fetchone()[0]


def test_a_publish_writes_into_the_snapshot_before_it_and_ends_as_the_store(tmp_path):
    path = tmp_path / "store.duckdb"
    snapshot = Path(f"{path}.snapshot")
    with Store(path, snapshot_every_s=5.0) as store:
        add_judgeable_pairs(store, 20)
        assert store.publish_snapshot(force=True)
        spare = snapshot_files.spare_path(snapshot)
        assert spare.exists() and spare.stat().st_ino != snapshot.stat().st_ino  # the one before it, kept
        reused = spare.stat().st_ino
        add_judgeable_pairs(store, 5, prompt_prefix="More 20")
        assert store.publish_snapshot(force=True)
        assert snapshot.stat().st_ino == reused  # written into, not copied anew
        assert snapshot.read_bytes() == path.read_bytes()
    assert _pairs_in(snapshot) == 25
    assert not Path(f"{snapshot}.new").exists() and not Path(f"{snapshot}.old").exists()


@pytest.mark.parametrize("reader", ["this process", "another process"])
def test_a_reader_of_the_snapshot_before_keeps_its_view_and_the_next_publish_copies(tmp_path, reader):
    """DuckDB's readers lock the file they read; a spare some reader holds is never written into."""
    path, snapshot = tmp_path / "store.duckdb", tmp_path / "store.duckdb.snapshot"
    with Store(path, snapshot_every_s=5.0) as store:
        add_judgeable_pairs(store, 10)
        assert store.publish_snapshot(force=True)
        held, process = snapshot.stat().st_ino, None
        if reader == "this process":
            con = duckdb.connect(str(snapshot), read_only=True)
            assert con.execute("SELECT count(*) FROM pairs").fetchone()[0] == 10
        else:
            process = subprocess.Popen(
                [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
                 "print(c.execute('SELECT count(*) FROM pairs').fetchone()[0], flush=True); sys.stdin.read(); "
                 "print(c.execute('SELECT count(*) FROM pairs').fetchone()[0], flush=True)", str(snapshot)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert process.stdout.readline().strip() == "10"
        # its bytes, read through a descriptor kept open to the end (closing one would drop this
        # process's DuckDB lock on the file: POSIX locks are per process)
        held_file = os.open(snapshot, os.O_RDONLY)
        before = os.pread(held_file, 1 << 30, 0)
        for more in range(2):  # the held one becomes the spare, then would be written into: it is not
            add_judgeable_pairs(store, 5, prompt_prefix=f"More {10 + 5 * more}")
            assert store.publish_snapshot(force=True)
            assert snapshot.stat().st_ino != held and snapshot.read_bytes() == path.read_bytes()
        assert os.pread(held_file, 1 << 30, 0) == before  # never written into
        if reader == "this process":
            assert con.execute("SELECT count(*) FROM pairs").fetchone()[0] == 10  # its view, whole
            con.close()
        else:
            process.stdin.close()
            assert process.stdout.readline().strip() == "10"
            process.wait(timeout=30)
        os.close(held_file)
        add_judgeable_pairs(store, 5, prompt_prefix="More 20")
        assert store.publish_snapshot(force=True)  # reader gone: the spare is written into again
        spare = snapshot_files.spare_path(snapshot).stat().st_ino
        add_judgeable_pairs(store, 5, prompt_prefix="More 25")
        assert store.publish_snapshot(force=True)
        assert snapshot.stat().st_ino == spare and snapshot.read_bytes() == path.read_bytes()
    assert _pairs_in(snapshot) == 30


def test_a_spare_cut_short_or_overwritten_by_anything_still_ends_as_the_store(tmp_path):
    path, snapshot = tmp_path / "store.duckdb", tmp_path / "store.duckdb.snapshot"
    with Store(path, snapshot_every_s=5.0) as store:
        add_judgeable_pairs(store, 10)
        assert store.publish_snapshot(force=True)
        spare = snapshot_files.spare_path(snapshot)
        with open(spare, "r+b") as damaged:  # a publish killed half way, then some
            damaged.truncate(spare.stat().st_size // 3)
            damaged.seek(4096)
            damaged.write(os.urandom(100_000))
        add_judgeable_pairs(store, 3, prompt_prefix="More 10")
        assert store.publish_snapshot(force=True)
        assert snapshot.read_bytes() == path.read_bytes()
    assert _pairs_in(snapshot) == 13


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 3 * snapshot_files._CHUNK // 2), spare_size=st.integers(0, 3 * snapshot_files._CHUNK // 2),
       changes=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 300_000)), max_size=5), seed=st.integers(0, 2**32 - 1))
def test_updating_a_spare_makes_it_the_source_writing_at_most_what_differs(size, spare_size, changes, seed):
    """Any source, any spare (shorter, longer, partly equal): afterwards the two are equal, and only
    blocks that differed were written."""
    import random

    rng = random.Random(seed)
    source_bytes = rng.randbytes(size)
    spare_bytes = bytearray(source_bytes[:spare_size] + rng.randbytes(max(0, spare_size - size)))
    for where, length in changes:
        start = int(where * len(spare_bytes))
        spare_bytes[start:start + length] = rng.randbytes(len(spare_bytes[start:start + length]))
    with tempfile.TemporaryDirectory() as folder:
        source, spare = Path(folder) / "source", Path(folder) / "spare"
        source.write_bytes(source_bytes)
        spare.write_bytes(spare_bytes)
        descriptor = os.open(source, os.O_RDONLY)
        try:
            written = snapshot_files.update_spare(descriptor, spare)
        finally:
            os.close(descriptor)
        assert spare.read_bytes() == source_bytes
        differing = sum(  # the blocks whose bytes differed, or that the spare lacked
            min(snapshot_files._BLOCK, size - start) for start in range(0, size, snapshot_files._BLOCK)
            if source_bytes[start:start + snapshot_files._BLOCK]
            != bytes(spare_bytes[start:min(start + snapshot_files._BLOCK, size)]))
        assert written == differing


def test_a_missing_spare_is_not_made(tmp_path):
    source = tmp_path / "source"
    source.write_bytes(b"x" * 1000)
    descriptor = os.open(source, os.O_RDONLY)
    try:
        assert snapshot_files.update_spare(descriptor, tmp_path / "spare") is None
    finally:
        os.close(descriptor)
    assert not (tmp_path / "spare").exists()


def test_a_spare_found_held_is_never_written_even_when_that_publish_fails(tmp_path, monkeypatch):
    """Closing the probe's descriptor drops this process's DuckDB lock on the file (POSIX locks are
    per process), so a spare once found held is unlinked at once: a publish that then fails (here
    the whole copy) must not leave it where the next publish would write into it."""
    path, snapshot = tmp_path / "store.duckdb", tmp_path / "store.duckdb.snapshot"
    with Store(path, snapshot_every_s=5.0) as store:
        add_judgeable_pairs(store, 10)
        assert store.publish_snapshot(force=True)
        reader = duckdb.connect(str(snapshot), read_only=True)
        held_file = os.open(snapshot, os.O_RDONLY)
        before = os.pread(held_file, 1 << 30, 0)
        add_judgeable_pairs(store, 5, prompt_prefix="More 10")
        assert store.publish_snapshot(force=True)  # the held file becomes the spare
        real_copy = snapshot_files.copy_whole

        def failing_copy(source, target):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(snapshot_files, "copy_whole", failing_copy)
        add_judgeable_pairs(store, 5, prompt_prefix="More 15")
        with pytest.raises(OSError):
            store.publish_snapshot(force=True)  # finds the spare held, then fails to copy
        monkeypatch.setattr(snapshot_files, "copy_whole", real_copy)
        for more in range(2):
            add_judgeable_pairs(store, 5, prompt_prefix=f"Later {more}")
            assert store.publish_snapshot(force=True)
        assert os.pread(held_file, 1 << 30, 0) == before
        assert reader.execute("SELECT count(*) FROM pairs").fetchone()[0] == 10
        reader.close()
        os.close(held_file)
        assert snapshot.read_bytes() == path.read_bytes()


def test_a_whole_copy_that_fills_the_disk_drops_the_spare_and_copies_again(tmp_path, monkeypatch):
    import errno

    path, snapshot = tmp_path / "store.duckdb", tmp_path / "store.duckdb.snapshot"
    with Store(path, snapshot_every_s=5.0) as store:
        add_judgeable_pairs(store, 10)
        assert store.publish_snapshot(force=True)
        reader = duckdb.connect(str(snapshot), read_only=True)  # so the next publish after it copies whole
        add_judgeable_pairs(store, 5, prompt_prefix="More 10")
        assert store.publish_snapshot(force=True)
        real_copy, attempts = snapshot_files.copy_whole, []

        def copy_once_out_of_space(source, target):
            attempts.append(snapshot_files.spare_path(snapshot).exists())
            if len(attempts) == 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_copy(source, target)

        monkeypatch.setattr(snapshot_files, "copy_whole", copy_once_out_of_space)
        add_judgeable_pairs(store, 5, prompt_prefix="More 15")
        assert store.publish_snapshot(force=True)
        assert len(attempts) == 2 and not attempts[1]  # copied again, with no spare left on the disk
        assert snapshot.read_bytes() == path.read_bytes()
        reader.close()
    assert _pairs_in(snapshot) == 20
