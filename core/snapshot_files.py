"""The read snapshot's files: a new snapshot written into the previous one's file, where no reader
holds that file, rewriting only the blocks that changed; else a whole copy.

A whole copy writes the store again each time (3.6 GB at 10M pairs): 1.4 s on a quiet disk here,
8 s while the kernel is still writing back the copy before it, so the spacing rule (a tenth of the
writer's time, Store.publish_snapshot) let the snapshot grow older than a minute. The store between
two publishes changes in the blocks its commits wrote; comparing the two files reads them from
the page cache (~1-2 s for 3.6 GB) and writes only those blocks.

Three names beside the store: `<store>.snapshot` (what readers open), `<store>.snapshot.spare` (the
snapshot before it: the next one is written into it) and, while a whole copy is written,
`<store>.snapshot.new`. The spare costs the disk one more copy of the store. A file is written
into only under an exclusive open-file-description lock, which DuckDB's readers (a shared lock on
the file they read, in this process or another) refuse it while they hold it: a reader keeps a
consistent view however long it keeps the old snapshot open, and the next publish copies instead.
Only readers that lock the file are seen: a plain file copy of the snapshot (cp, rsync) that takes
longer than two publishes can read a file being rewritten, so copy it with DuckDB (or while no
stage writes). Where those locks do not exist (not Linux), no spare is kept and every publish is a
whole copy.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_COPY_BLOCK = 8 << 20  # bytes per read when the kernel cannot copy (another file system)
_CHUNK = 8 << 20  # bytes compared at once
_BLOCK = 256 << 10  # DuckDB's block: of a chunk that differs, only the blocks that differ are written

REUSABLE = hasattr(fcntl, "F_OFD_SETLK")


def spare_path(snapshot: Path) -> Path:
    return snapshot.with_name(snapshot.name + ".spare")


def aside_path(snapshot: Path) -> Path:
    """Where a whole copy is written before it is renamed over the snapshot."""
    return snapshot.with_name(snapshot.name + ".new")


def publish_file(source: int, snapshot: Path) -> None:
    """Make `snapshot` the file open at `source`: written into the spare where no reader holds it,
    else copied whole (once more without the spare, one more copy of the store, if the disk fills)."""
    spare, aside = spare_path(snapshot), aside_path(snapshot)
    aside.unlink(missing_ok=True)  # left by a whole copy that was killed
    if update_spare(source, spare) is not None:
        install(spare, snapshot)  # the blocks that changed
        return
    try:
        copy_whole(source, aside)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        aside.unlink(missing_ok=True)
        spare.unlink(missing_ok=True)
        copy_whole(source, aside)
    install(aside, snapshot)


def copy_whole(source: int, target: Path) -> None:
    """Copy the file open at `source` to a new file `target`, whose time is now."""
    size = os.fstat(source).st_size
    with open(target, "wb") as out:
        copied = _copy_in_kernel(source, out.fileno(), size)
        out.seek(copied)  # the kernel's copy wrote at explicit offsets, not at the file's position
        for offset in range(copied, size, _COPY_BLOCK):  # where the kernel cannot (another file system)
            out.write(os.pread(source, min(_COPY_BLOCK, size - offset), offset))


def _copy_in_kernel(source: int, target: int, size: int) -> int:
    """copy_file_range: the kernel copies without the bytes passing through this process (3-5x a
    read/write loop for a 2 GB file here; a reflink where the file system has them). Returns how
    many bytes it copied: 0 where it cannot, and the caller copies the rest itself."""
    copied = 0
    try:
        while copied < size:
            step = os.copy_file_range(source, target, size - copied, copied, copied)
            if step == 0:
                break
            copied += step
    except (AttributeError, OSError):  # not Linux, an old kernel, or files it cannot copy between
        pass
    return copied


def update_spare(source: int, spare: Path) -> int | None:
    """Make `spare` equal to the file open at `source`, writing only the blocks that differ (then
    synced, its time set to now). None if it is missing or a reader holds it (it is then removed,
    see _unread); else how many bytes were written. Whatever the spare holds (a write cut short by
    a kill included), it is compared, not trusted."""
    if not REUSABLE:
        return None
    with _unread(spare) as target:
        if target is None:
            return None
        written = _write_differences(source, target)
        if written:
            os.fsync(target)  # only its changed blocks are dirty: cheap, and a power cut leaves no
            # half-old snapshot carrying a new file time (which readers would take for current)
        os.utime(target)
        return written


@contextmanager
def _unread(path: Path) -> Iterator[int | None]:
    """A descriptor of `path` under an exclusive lock for the block, or None if it is missing or
    anyone holds a lock on it. An open-file-description lock, so that it also meets this process's
    own readers' locks (DuckDB takes process-wide POSIX locks). A file found held is unlinked
    before its descriptor closes: closing a descriptor drops this process's POSIX locks on the file,
    a DuckDB reader's here included, so that file must never be looked at again (the reader keeps
    it open; the next publish copies the whole store)."""
    try:
        descriptor = os.open(path, os.O_RDWR)
    except OSError:
        yield None
        return
    try:
        try:
            fcntl.fcntl(descriptor, fcntl.F_OFD_SETLK, _lock(fcntl.F_WRLCK))
        except OSError:  # held (EAGAIN, EACCES), or a file system without these locks
            path.unlink(missing_ok=True)
            yield None
            return
        try:
            yield descriptor
        finally:
            fcntl.fcntl(descriptor, fcntl.F_OFD_SETLK, _lock(fcntl.F_UNLCK))
    finally:
        os.close(descriptor)


def _lock(kind: int) -> bytes:
    """struct flock for the whole file: type, whence, start, length 0 (to the end), pid 0 (OFD locks)."""
    return struct.pack("hhqqi4x", kind, os.SEEK_SET, 0, 0, 0)


def _write_differences(source: int, target: int) -> int:
    size = os.fstat(source).st_size
    new, old = bytearray(_CHUNK), bytearray(_CHUNK)
    written = 0
    for offset in range(0, size, _CHUNK):
        read = os.preadv(source, [new], offset)
        had = os.preadv(target, [old], offset)
        if read == had == _CHUNK and new == old:  # the common case, compared without copying
            continue
        for start in range(0, read, _BLOCK):
            end = min(start + _BLOCK, read)
            if end > had or new[start:end] != old[start:end]:
                os.pwrite(target, memoryview(new)[start:end], offset + start)
                written += end - start
    os.ftruncate(target, size)
    return written


def install(new: Path, snapshot: Path) -> None:
    """Make `new` the snapshot, atomically for readers; the snapshot it replaces becomes the spare
    (where spares can be reused), else goes. A reader with the old one open keeps reading it."""
    spare = spare_path(snapshot)
    old = snapshot.with_name(snapshot.name + ".old")  # the replaced snapshot, for a moment
    old.unlink(missing_ok=True)  # left by a publish that was killed here
    kept = False
    if REUSABLE and snapshot.exists():
        try:
            os.link(snapshot, old)
            kept = True
        except OSError:  # a file system without hard links: no spare
            pass
    os.replace(new, snapshot)
    if kept:
        os.replace(old, spare)
    elif new != spare:
        spare.unlink(missing_ok=True)  # no longer the snapshot before this one
