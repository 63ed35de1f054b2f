"""The machine a benchmark runs on, named in its RESULT line, and the figures MFU is measured against.

Benchmarks differ several-fold between machines (an AVX2-only CPU emulates bf16; AMX multiplies it
natively), so every RESULT line ends with `hardware_fields()`: the CPU model, what it multiplies
natively, torch's threads and the GPU. `auto_precision` is what `precision: auto` picks there, the
benchmarks' default.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

# Dense bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s (no sparsity).
NOMINAL_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "H800": 989.4, "A100": 312.0, "A800": 312.0, "L40S": 362.1,
                       "L4": 121.0, "A10": 125.0, "RTX 4090": 165.2}


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_capabilities() -> list[str]:
    """What the CPU multiplies natively: avx2, avx512, avx512_bf16, amx (torch's own checks)."""
    checks = (("avx2", "_is_avx2_supported"), ("avx512", "_is_avx512_supported"),
              ("avx512_bf16", "_is_avx512_bf16_supported"), ("amx", "_is_amx_tile_supported"))
    return [name for name, check in checks if getattr(torch.cpu, check, lambda: False)()]


def gpu_name() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def auto_precision(device: str) -> str:
    """What `precision: auto` trains and scores in on this device (bf16 where it is native, else fp32)."""
    from prefcurate.core.config import TrainConfig
    from prefcurate.rm.model import resolve_precision

    return resolve_precision(TrainConfig(precision="auto"), device)


def _token(value: str) -> str:
    return "_".join(str(value).replace("=", "-").split()) or "none"


def hardware_fields() -> str:
    """`cpu=... cpu_caps=... threads=... gpu=...` for a RESULT line (values without spaces)."""
    return (f"cpu={_token(cpu_model())} cpu_caps={'+'.join(cpu_capabilities()) or 'none'} "
            f"threads={torch.get_num_threads()} gpu={_token(gpu_name() or 'none')}")


def nominal_bf16_tflops(name: str | None) -> float | None:
    """The card's data-sheet dense bf16 peak, or None for a card (or a CPU) not in the table."""
    if not name:
        return None
    matches = [key for key in NOMINAL_BF16_TFLOPS if key in name]
    return NOMINAL_BF16_TFLOPS[max(matches, key=len)] if matches else None


def measured_matmul_tflops(device: str, size: int | None = None, repeats: int = 10) -> float:
    """The bf16 (GPU) or the auto-precision (CPU) matrix-product rate this device reaches: the mean
    of `repeats` size^3 products after three warm-ups, on random data."""
    size = size or (8192 if device.startswith("cuda") else 1024)
    dtype = torch.bfloat16 if device.startswith("cuda") or auto_precision(device) == "bf16" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - started) / 1e12


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
