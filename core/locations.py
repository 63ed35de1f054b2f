"""Folders that travel between machines: a local path or any fsspec URL (s3://, gs://, file://,
memory://, ...). A job fetches its inputs into a local cache and publishes its output folder,
the file that marks it finished last.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import fsspec


def is_url(location: str | Path) -> bool:
    return "://" in str(location)


def _filesystem(url: str):
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def cache_dir_for(url: str, cache_root: Path) -> Path:
    """Where a URL's folder is fetched to: one folder per URL."""
    return cache_root / hashlib.sha256(url.encode()).hexdigest()[:16]


def fetch_folder(location: str | Path, cache_root: Path) -> Path:
    """A local folder holding the location's files: the path itself when local, else a fresh copy."""
    if not is_url(location):
        path = Path(location)
        if not path.is_dir():
            raise FileNotFoundError(f"{location}: no such folder")
        return path
    fs, remote = _filesystem(str(location))
    if not fs.isdir(remote):
        raise FileNotFoundError(f"{location}: no such folder")
    local = cache_dir_for(str(location), cache_root)
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir(parents=True)
    for source in fs.find(remote):
        relative = os.path.relpath(source, remote)
        target = local / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(source, str(target))
    return local


def read_text(location: str | Path, name: str) -> str | None:
    """A file inside a folder location, or None when it is not there."""
    if not is_url(location):
        path = Path(location) / name
        return path.read_text() if path.is_file() else None
    fs, remote = _filesystem(str(location))
    target = f"{remote.rstrip('/')}/{name}"
    return fs.cat_file(target).decode() if fs.exists(target) else None


def publish_folder(local: Path, location: str | Path, last: str) -> None:
    """Copy a local folder to the location; the file named `last` goes last, so a reader that finds
    it finds everything else. A local location that is the folder itself is left as it is."""
    if not is_url(location):
        target = Path(location)
        if target.resolve() == Path(local).resolve():
            return
        shutil.copytree(local, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(last))
        shutil.copy2(Path(local) / last, target / last)
        return
    fs, remote = _filesystem(str(location))
    remote = remote.rstrip("/")
    files = sorted(path for path in Path(local).rglob("*") if path.is_file())
    for path in sorted(files, key=lambda path: path.name == last):  # `last` sorts after the rest
        relative = path.relative_to(local).as_posix()
        fs.makedirs(f"{remote}/{Path(relative).parent.as_posix()}".rstrip("/."), exist_ok=True)
        fs.put_file(str(path), f"{remote}/{relative}")
