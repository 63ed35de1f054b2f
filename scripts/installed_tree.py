"""Lay the package out as it installs: each root folder copied to where its import name puts it
([tool.setuptools.package-dir] in pyproject.toml: core/ -> prefcurate/core/, ...).

Used where the repository itself cannot be imported as installed: import-linter reads packages
from disk (tests/test_layers.py), and a GPU machine runs the check without installing anything
(bench/gpu_check.sh).

    python scripts/installed_tree.py TARGET [--with FOLDER ...]   (folders copied as they are, e.g. tests)
"""

from __future__ import annotations

import argparse
import shutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".venvs", ".cache")


def installed_tree(target: Path, extra: list[str] = ()) -> Path:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for name, folder in sorted(meta["tool"]["setuptools"]["package-dir"].items()):
        shutil.copytree(ROOT / folder, target.joinpath(*name.split(".")), dirs_exist_ok=True, ignore=SKIP)
    for folder in extra:
        shutil.copytree(ROOT / folder, target / folder, dirs_exist_ok=True, ignore=SKIP)
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("target", type=Path)
    parser.add_argument("--with", dest="extra", nargs="*", default=[])
    args = parser.parse_args()
    installed_tree(args.target, args.extra)
