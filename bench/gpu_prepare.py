"""Get a GPU machine's run of bench/gpu_check.sh ready, here: everything it needs that the GPU
machine lacks goes into .gpu/ (git-ignored; name it in the device call's `carry`), under 64 MiB.

- .gpu/wheels/    wheels for Python 3.12 on x86-64 Linux of what the reward-model code and TRL need
                  and the GPU image does not hold (pydantic, datasets, TRL, ...), at the versions this
                  project's venv runs, binary ones too; torch, transformers, accelerate and peft are
                  the image's own (what a user's GPU box has)
- .gpu/tokenizer/ SmolLM2's tokenizer (from the embedded GGUF): the GPU shapes are built from configs
                  with random weights, since no weights travel

    .venv/bin/python bench/gpu_prepare.py        (or: bash bench/gpu_check.sh --prepare)
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / ".gpu"
LIMIT_MB = 60  # the device call carries at most 64 MiB with the working tree
# Not in the GPU image: prefcurate's config (pydantic and its own needs), the training data path
# ours and TRL's share (datasets, with dill and multiprocess), and TRL itself.
PACKAGES = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions", "datasets", "dill",
            "multiprocess", "trl")
TRL_VERSION = "1.16.0"  # the baseline's version, as bench/rm_train.py installs it on a CPU
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")


def pinned(package: str) -> str:
    if package == "trl":
        return f"trl=={TRL_VERSION}"
    return f"{package}=={importlib.metadata.version(package)}"


def download_wheels(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.whl"):
        old.unlink()
    specs = [pinned(package) for package in PACKAGES]
    platforms = [argument for platform in PLATFORMS for argument in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(folder), *specs],
                   check=True)
    return specs


def export_tokenizer(folder: Path) -> None:
    from transformers import AutoTokenizer

    from prefcurate.core.local_models import embedded_gguf

    if folder.exists():
        shutil.rmtree(folder)
    package_dir, filename = embedded_gguf("smollm2-135m-instruct")
    AutoTokenizer.from_pretrained(package_dir, gguf_file=filename).save_pretrained(folder)


def main() -> None:
    specs = download_wheels(TARGET / "wheels")
    export_tokenizer(TARGET / "tokenizer")
    size_mb = sum(path.stat().st_size for path in TARGET.rglob("*") if path.is_file()) / 2 ** 20
    print(f"{TARGET}: {len(specs)} wheels ({', '.join(specs)}) and the tokenizer, {size_mb:.1f} MB")
    if size_mb > LIMIT_MB:
        sys.exit(f"{TARGET} is {size_mb:.1f} MB: over the {LIMIT_MB} MB a device call can carry beside the tree")


if __name__ == "__main__":
    main()
