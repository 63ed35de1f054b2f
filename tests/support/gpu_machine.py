"""A Python environment like a GPU machine's: everything installed here except the pipeline's own
packages (duckdb, prefect, openai, argilla, rensa), and prefcurate laid out as it installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
NOT_ON_A_GPU_MACHINE = ("duckdb", "prefect", "openai", "argilla", "argilla_server", "rensa")


def installed_tree(target: Path) -> Path:
    """The package as it installs (scripts/installed_tree.py): in this repository
    prefcurate.curation lives in curation/, not in prefcurate/curation/."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "installed_tree.py"), str(target)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return target


def gpu_machine_paths(folder: Path) -> list[str]:
    """sys.path entries for `python -S`: the installed tree (with tests/) and a site folder of
    symlinks to everything installed but NOT_ON_A_GPU_MACHINE."""
    site = folder / "site"
    site.mkdir(parents=True)
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        top = entry.name.lstrip("_").split("-")[0].split(".")[0].lower()
        if top not in NOT_ON_A_GPU_MACHINE and not entry.name.startswith("__editable__"):
            (site / entry.name).symlink_to(entry)
    tree = installed_tree(folder / "tree")
    shutil.copytree(ROOT / "tests", tree / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    return [str(tree), str(site)]
