"""The GPU readiness check: what a lent GPU can tell about the reward-model code, in one run of at
most five minutes, written down section by section so that a run cut short still leaves figures.

Sections, in order (each under what is left of the time budget; one that fails is reported and the
next one runs):
1. environment   GPU (name, capability, memory), torch / CUDA / transformers / accelerate / TRL
                 versions, CPU and its native instructions, the attention path of packed rows
2. matmul        the bf16 matrix-product rate this device reaches (8192^3 on a GPU), against the
                 card's data-sheet peak: the denominators of MFU
3. gpu tests     tests/test_gpu.py: packed vs padded rewards, a bf16 training step, compiled blocks
                 (triton), a 1-process torchrun training over NCCL (on a CPU they skip, saying why)
4. training      bench/rm_train.py per shape: ours vs TRL RewardTrainer, tokens/s, peak memory, MFU
5. scoring       bench/rm_score.py: our scorer vs a naive per-item loop, items/s

On a machine without CUDA the same sections run their CPU subset (a tiny shape, no TRL unless it is
importable), so the script keeps working where CI and developers run.

    python bench/gpu_check.py --report DIR [--budget-s 290]

Writes DIR/gpu_check.md (the report), DIR/gpu_check.jsonl (one JSON object per section) and one
log per child process.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import hardware  # noqa: E402


class Report:
    """Appends each section to the markdown report and the JSON lines as soon as it is known."""

    def __init__(self, folder: Path, budget_s: float):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.markdown = folder / "gpu_check.md"
        self.jsonl = folder / "gpu_check.jsonl"
        self.markdown.write_text("# GPU readiness check\n\n")
        self.jsonl.write_text("")
        self.deadline = time.monotonic() + budget_s

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def section(self, name: str, figures: dict, lines: list[str]) -> None:
        with self.markdown.open("a") as out:
            out.write(f"## {name}\n\n" + "\n".join(lines) + "\n\n")
        with self.jsonl.open("a") as out:
            out.write(json.dumps({"section": name, **figures}, default=str) + "\n")
        print(f"[gpu_check] {name}: " + "; ".join(line.strip("- ") for line in lines[:3]), flush=True)


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment(device: str) -> tuple[dict, list[str]]:
    from prefcurate.core.config import TrainConfig
    from prefcurate.rm.model import resolve_attention

    figures = {"device": device, "python": platform.python_version(), "torch": torch.__version__,
               "cuda": torch.version.cuda, "transformers": version("transformers"), "accelerate": version("accelerate"),
               "trl": version("trl"), "datasets": version("datasets"), "cpu": hardware.cpu_model(),
               "cpu_capabilities": hardware.cpu_capabilities(), "torch_threads": torch.get_num_threads(),
               "precision_auto": hardware.auto_precision(device),
               "packed_attention": resolve_attention(TrainConfig(), device)}
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        figures.update(gpu=properties.name, gpu_count=torch.cuda.device_count(),
                       capability=f"{properties.major}.{properties.minor}",
                       gpu_memory_gb=round(properties.total_memory / 2 ** 30, 1),
                       multiprocessors=properties.multi_processor_count,
                       triton=version("triton"), flash_attn=version("flash-attn"))
    attention = figures["packed_attention"]
    path = ("flash-attention's varlen kernels" if attention == "flash_attention_2" else
            f"{attention} with a block mask built from each sequence's restarting position ids")
    lines = [f"- {key}: {value}" for key, value in figures.items()] + [f"- packed rows run on: {path}"]
    return figures, lines


def matmul(device: str) -> tuple[dict, list[str]]:
    measured = hardware.measured_matmul_tflops(device)
    nominal = hardware.nominal_bf16_tflops(hardware.gpu_name())
    dtype = "bf16" if device == "cuda" else hardware.auto_precision(device)
    figures = {"measured_tflops": round(measured, 1), "nominal_tflops": nominal, "dtype": dtype}
    lines = [f"- {dtype} matrix products: {measured:.1f} TFLOP/s measured",
             f"- data-sheet peak: {nominal} TFLOP/s" if nominal else "- data-sheet peak: not known for this device"]
    if nominal:
        lines.append(f"- measured / data sheet: {measured / nominal:.2f}")
    return figures, lines


def run_child(report: Report, name: str, command: list[str], timeout_s: float) -> tuple[int | None, str]:
    """Run a child process with its output in DIR/<name>.log; (exit code or None on timeout, output)."""
    log = report.folder / f"{name}.log"
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=max(timeout_s, 1))
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        output += "\n" + ((expired.stderr or b"").decode(errors="replace") if isinstance(expired.stderr, bytes)
                          else (expired.stderr or ""))
        code = None
    log.write_text(output)
    return code, output


def gpu_tests(report: Report, timeout_s: float) -> tuple[dict, list[str]]:
    code, output = run_child(report, "gpu_tests", [sys.executable, "-m", "pytest", "tests/test_gpu.py", "-m", "gpu",
                                                   "-rA", "-q", "-p", "no:cacheprovider"], timeout_s)
    outcomes = re.findall(r"^(PASSED|FAILED|SKIPPED|ERROR)\s+(?:\[\d+\]\s+)?(\S+)(.*)$", output, re.MULTILINE)
    figures = {"exit": code, "outcomes": [{"outcome": o, "test": t.split("::")[-1], "note": n.strip(" -:")}
                                          for o, t, n in outcomes]}
    summary = re.findall(r"^=*\s*(\d+ (?:passed|failed|skipped|error).* in [\d.]+s.*?)\s*=*$", output, re.MULTILINE)
    lines = [f"- {o['outcome']}: {o['test']} {o['note']}".rstrip() for o in figures["outcomes"]]
    lines.append(f"- pytest: {summary[-1] if summary else 'no summary'}"
                 + (" (stopped at the time budget)" if code is None else f", exit {code}"))
    return figures, lines


def result_line(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    if not lines:
        return {}
    return dict(item.split("=", 1) for item in lines[-1][len("RESULT "):].split() if "=" in item)


def bench(report: Report, name: str, script: str, arguments: list[str], timeout_s: float) -> tuple[dict, list[str]]:
    code, output = run_child(report, name, [sys.executable, str(BENCH / script), *arguments], timeout_s)
    figures = result_line(output)
    figures["exit"] = code
    shown = [line for line in output.splitlines()
             if line.startswith(("ours", "TRL", "MFU", "RESULT")) or re.match(r"^\d+ items", line)]
    lines = [f"- `{script} {' '.join(arguments)}`"] + [f"- {line}" for line in shown]
    if code != 0:
        tail = output.strip().splitlines()[-3:]
        lines.append("- stopped at the time budget" if code is None else f"- failed (exit {code}): " + " / ".join(tail))
    return figures, lines


def plan(device: str) -> list[tuple[str, str, list[str]]]:
    """(section, script, arguments): the GPU shapes, or the CPU subset."""
    if device == "cuda":
        return [("training smollm2-135m", "rm_train.py", ["--device", "cuda", "--shape", "smollm2-135m", "--pairs", "1024",
                                                          "--batch-size", "16"]),
                ("training 1b", "rm_train.py", ["--device", "cuda", "--shape", "1b", "--pairs", "512",
                                                "--batch-size", "16"]),
                ("scoring smollm2-135m", "rm_score.py", ["--device", "cuda", "--shape", "smollm2-135m", "--items", "1024",
                                                         "--batch-size", "64"])]
    # TRL where it is importable; a CPU subset builds no venv for it (bench/rm_train.py alone does).
    no_trl = [] if importlib.util.find_spec("trl") else ["--no-trl"]
    return [("training tiny (CPU subset)", "rm_train.py", ["--device", "cpu", "--shape", "tiny", "--pairs", "64",
                                                           "--batch-size", "8", *no_trl]),
            ("scoring tiny (CPU subset)", "rm_score.py", ["--device", "cpu", "--shape", "tiny", "--items", "128",
                                                          "--compile", "off"])]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--budget-s", type=float, default=290.0)
    args = parser.parse_args()
    report = Report(args.report, args.budget_s)
    device = hardware.default_device()
    steps = [("environment", lambda: environment(device)), ("matmul", lambda: matmul(device)),
             ("gpu tests", lambda: gpu_tests(report, min(report.left_s() - 30, 170)))]
    steps += [(name, lambda s=script, a=arguments: bench(report, s.removesuffix(".py") + "_" + a[3], s, a,
                                                          report.left_s() - 5))
              for name, script, arguments in plan(device)]
    for name, step in steps:
        if report.left_s() < 10:
            report.section(name, {"skipped": "time budget spent"}, ["- not run: the time budget is spent"])
            continue
        try:
            figures, lines = step()
        except Exception as error:  # noqa: BLE001  (one section failing must not cost the others)
            figures, lines = {"error": repr(error)}, [f"- failed: {error!r}"]
        report.section(name, figures, lines)
    print(f"[gpu_check] report: {report.markdown}", flush=True)


if __name__ == "__main__":
    main()
