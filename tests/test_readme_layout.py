"""The README's Layout section names every module of the package by file (issue 24, item 5)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_layout_section_names_every_module():
    readme = ROOT.joinpath("README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):readme.index("## Pins")]
    named = set(re.findall(r"`([\w/]+\.py)`", layout))
    modules = [path for folder in ("core", "curation", "rm", "flows", "prefcurate")
               for path in sorted(ROOT.joinpath(folder).rglob("*.py")) if path.name != "__init__.py"]
    missing = [str(path.relative_to(ROOT)) for path in modules
               if path.name not in {Path(name).name for name in named}]
    assert not missing, f"README Layout does not name: {missing}"
