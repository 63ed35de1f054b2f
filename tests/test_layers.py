"""The architecture holds: layers import only downward, Prefect stays in flows/, sibling packages
import each other one way (import-linter, contracts in pyproject.toml), the domain runs without
Prefect, every package folder is installed, and test modules never import each other."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support.gpu_machine import NOT_ON_A_GPU_MACHINE, gpu_machine_paths, installed_tree

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]  # import name -> root folder
# Run inside argilla-server's own virtual environment (argilla_server installed, prefcurate not).
OTHER_ENVIRONMENT = ("prefcurate.curation.annotation.argilla_service",)


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    checker = Path(sys.executable).parent / "lint-imports"
    # cwd: the checker puts it first on sys.path, so `prefcurate` is the copy, not the repository's folder.
    return subprocess.run([str(checker), "--no-cache", "--no-logo"], cwd=tree, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(tree)})


def test_every_layer_contract_holds(tmp_path):
    result = lint_imports(installed_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_the_checker_reports_an_upward_import_prefect_in_the_domain_and_a_cycle(tmp_path):
    tree = installed_tree(tmp_path)
    (tree / "prefcurate/core/_upward.py").write_text("from prefcurate import pipeline\n")
    (tree / "prefcurate/rm/_prefect.py").write_text("import prefect\n")
    (tree / "prefcurate/curation/judging/_cycle.py").write_text("from prefcurate.curation.annotation import push\n")
    (tree / "prefcurate/curation/annotation/_cycle.py").write_text("from prefcurate.curation.judging import judge\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "0 kept, 3 broken" in result.stdout
    assert "prefcurate.core._upward -> prefcurate.pipeline" in result.stdout
    assert "prefcurate.rm._prefect -> prefect" in result.stdout
    assert ".judging -> .annotation" in result.stdout or ".annotation -> .judging" in result.stdout


IMPORT_THE_DOMAIN = """
import importlib, json, pkgutil, sys
import prefcurate.core, prefcurate.curation, prefcurate.rm, prefcurate.pipeline, prefcurate.refresh
skip = tuple(sys.argv[1:])
imported = []
for package in (prefcurate.core, prefcurate.curation, prefcurate.rm, prefcurate.refresh):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not module.name.startswith(skip):
            importlib.import_module(module.name)
            imported.append(module.name)
print(json.dumps({"imported": imported, "prefect": sorted(m for m in sys.modules if m.split(".")[0] == "prefect")}))
"""


def test_importing_every_module_below_flows_leaves_prefect_out():
    """What the static check cannot see: a library we import that imports Prefect itself."""
    done = subprocess.run([sys.executable, "-c", IMPORT_THE_DOMAIN, *OTHER_ENVIRONMENT], capture_output=True,
                          text=True, timeout=600, cwd=ROOT / "tests")
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert "prefcurate.curation.judging.judge" in outcome["imported"] and "prefcurate.rm.train" in outcome["imported"]
    assert "prefcurate.refresh.round" in outcome["imported"]
    assert outcome["prefect"] == []


def test_the_cli_and_the_flows_import_without_torch():
    """`prefcurate serve`, `deploy` and a finished refresh round start without loading torch."""
    done = subprocess.run([sys.executable, "-c", "import sys, prefcurate.cli, prefcurate.flows.deployments; "
                           "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT / "tests")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"


IMPORT_WHAT_A_GPU_RUNS = """
import sys
sys.path[:0] = sys.argv[1:]
import prefcurate.rm.train, prefcurate.rm.score, prefcurate.rm.evaluate, prefcurate.rm.distributed, prefcurate.rm.train_job
import tests.conftest, tests.test_gpu
print(sorted({m.split('.')[0] for m in sys.modules} & set(%r)))
""" % (NOT_ON_A_GPU_MACHINE,)


def test_training_scoring_and_the_gpu_tests_import_without_the_pipelines_packages(tmp_path):
    """As on a GPU machine: a site folder holding everything installed but duckdb, prefect, openai,
    argilla and rensa, and no editable install (python -S); the package laid out as it installs."""
    paths = gpu_machine_paths(tmp_path)
    done = subprocess.run([sys.executable, "-S", "-c", IMPORT_WHAT_A_GPU_RUNS, *paths],
                          capture_output=True, text=True, timeout=300, cwd=paths[0])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_every_package_folder_is_installed():
    """A folder with __init__.py under a root folder must be in [tool.setuptools] packages, or a
    non-editable install would leave it out."""
    found = set()
    for name, folder in PACKAGE_DIRS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *relative)))
    assert found == set(PYPROJECT["tool"]["setuptools"]["packages"])


def test_no_test_module_imports_another_or_conftest():
    """Fixtures are shared through conftest.py, helpers through tests/support/."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):  # `from tests import conftest` names tests.conftest
                names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            offenders += [f"{path.relative_to(ROOT)} imports {name}" for name in names
                          if name.startswith(("tests.test_", "tests.conftest"))]
    assert offenders == []
