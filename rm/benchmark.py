"""A reward model on an external preference benchmark file (`prefcurate evaluate --benchmark FILE`).

Two layouts, told apart by the `rejected` field of the rows (JSONL, JSON lines compressed, or Parquet):
- pairs (RewardBench): `prompt`, `chosen`, `rejected` strings; right when chosen outscores rejected;
- best-of-n (RewardBench 2): `rejected` a list of strings (and `chosen` a string or a one-item list);
  right when chosen outscores every rejected.
An optional `subset` column gives accuracy per subset. With a subset-to-section map
({"section": ["subset", ...]}), each section scores the pairs of its subsets, and the
section-weighted score is the mean of the sections' scores (RewardBench's way of keeping one big
subset from dominating). Every accuracy comes with a 95% bootstrap interval over the rows.

Rows that cannot be read are skipped and reported with their row number and field; a file with no
usable row is an error naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from prefcurate.core.hashing import file_sha256
from prefcurate.rm.stats import bootstrap_mean


class BenchmarkError(ValueError):
    """A benchmark file (or section map) that cannot be used."""


@dataclass
class BenchmarkRow:
    row: int  # 1-based, as in the file
    prompt: str
    chosen: str
    rejected: list[str]
    subset: str


@dataclass
class BenchmarkRows:
    rows: list[BenchmarkRow]
    layout: str  # pairs | best-of-n
    skipped: list[dict] = field(default_factory=list)  # {row, field, reason}


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        raise BenchmarkError(f"{path}: no such benchmark file")
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix.lower() not in (".jsonl", ".json", ".gz", ".ndjson"):
        raise BenchmarkError(f"{path}: benchmark files are JSONL (.jsonl, .jsonl.gz) or Parquet")
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    records = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                records.append({"__error__": f"not valid JSON: {error.msg} at column {error.colno}", "__row__": number})
                continue
            if isinstance(records[-1], dict):
                records[-1].setdefault("__row__", number)
    return records


def read_benchmark(path: str | Path) -> BenchmarkRows:
    path = Path(path)
    rows, skipped = [], []
    best_of_n = False
    for index, record in enumerate(_records(path), start=1):
        number = record.get("__row__", index) if isinstance(record, dict) else index
        if not isinstance(record, dict) or "__error__" in record:
            skipped.append({"row": number, "field": None,
                            "reason": record.get("__error__") if isinstance(record, dict) else "not a JSON object"})
            continue
        problem = None
        prompt, chosen, rejected = record.get("prompt"), record.get("chosen"), record.get("rejected")
        if isinstance(chosen, list) and len(chosen) == 1:
            chosen = chosen[0]
        if isinstance(rejected, str):
            rejected = [rejected]
        elif isinstance(rejected, list):
            best_of_n = True
        for name, value in (("prompt", prompt), ("chosen", chosen)):
            if not isinstance(value, str) or not value.strip():
                problem = problem or (name, "missing or not a non-empty string")
        if not isinstance(rejected, list) or not rejected or not all(isinstance(r, str) and r.strip() for r in rejected):
            problem = problem or ("rejected", "missing, or not a string or a list of non-empty strings")
        if problem:
            skipped.append({"row": number, "field": problem[0], "reason": problem[1]})
            continue
        rows.append(BenchmarkRow(number, prompt, chosen, rejected, str(record.get("subset") or "all")))
    if not rows:
        first = f" (row {skipped[0]['row']}, {skipped[0]['field']}: {skipped[0]['reason']})" if skipped else ""
        raise BenchmarkError(f"{path}: no usable row{first}; expected prompt, chosen, rejected")
    return BenchmarkRows(rows, "best-of-n" if best_of_n else "pairs", skipped)


def read_sections(path: str | Path | None) -> dict[str, list[str]] | None:
    if path is None:
        return None
    try:
        sections = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise BenchmarkError(f"{path}: cannot read the subset-to-section map: {error}") from None
    if not isinstance(sections, dict) or not all(isinstance(v, list) for v in sections.values()):
        raise BenchmarkError(f"{path}: the section map must be {{\"section\": [\"subset\", ...]}}")
    return sections


def correctness(rows: list[BenchmarkRow], score: Callable[[list[str], list[str]], list[float]]) -> np.ndarray:
    """1/0 per row: chosen outscores every rejected. `score(prompts, responses)` -> rewards; every
    response goes through it once, in one call (so it can batch and sort by length)."""
    prompts = [row.prompt for row in rows] + [row.prompt for row in rows for _ in row.rejected]
    responses = [row.chosen for row in rows] + [text for row in rows for text in row.rejected]
    rewards = score(prompts, responses)
    chosen, rest = rewards[:len(rows)], rewards[len(rows):]
    correct, offset = [], 0
    for row, reward in zip(rows, chosen):
        others = rest[offset:offset + len(row.rejected)]
        offset += len(row.rejected)
        correct.append(1.0 if all(reward > other for other in others) else 0.0)
    return np.array(correct)


def summarize(rows: list[BenchmarkRow], correct: np.ndarray, sections: dict[str, list[str]] | None) -> dict:
    """Accuracy overall, per subset and per section, each with its 95% interval."""
    def figure(mask: np.ndarray) -> dict:
        interval = bootstrap_mean(correct[mask])
        return {"rows": int(mask.sum()), "accuracy": interval.estimate, "ci_low": interval.low, "ci_high": interval.high}

    subsets = np.array([row.subset for row in rows])
    result = {"overall": figure(np.ones(len(rows), bool)),
              "subsets": {name: figure(subsets == name) for name in sorted(set(subsets.tolist()))}}
    if sections:
        result["sections"] = {name: figure(np.isin(subsets, members)) for name, members in sections.items()
                              if np.isin(subsets, members).any()}
        scores = [value["accuracy"] for value in result["sections"].values()]
        result["section_weighted"] = float(np.mean(scores)) if scores else None
        unmapped = sorted(set(subsets.tolist()) - {s for members in sections.values() for s in members})
        if unmapped:
            result["unmapped_subsets"] = unmapped
    return result


def benchmark_report(path: Path, model: str, layout: str, rows: BenchmarkRows, summary: dict) -> dict:
    return {"benchmark": str(path), "benchmark_sha256": file_sha256(path), "model": model, "layout": layout,
            "rows": len(rows.rows), "skipped": rows.skipped, **summary}


def render_markdown(report: dict) -> str:
    def line(name: str, figure: dict) -> str:
        return f"| {name} | {figure['rows']} | {figure['accuracy']:.4f} | [{figure['ci_low']:.4f}, {figure['ci_high']:.4f}] |"

    lines = [f"# Benchmark: {Path(report['benchmark']).name}", "",
             f"Model `{report['model']}`, layout `{report['layout']}` (right when chosen outscores "
             f"{'every rejected' if report['layout'] == 'best-of-n' else 'rejected'}), {report['rows']} rows; "
             "intervals: 95% percentile bootstrap over rows.", "",
             "| | rows | accuracy | 95% interval |", "|---|---|---|---|", line("overall", report["overall"])]
    lines += [line(f"subset {name}", figure) for name, figure in report["subsets"].items()]
    lines += [line(f"section {name}", figure) for name, figure in (report.get("sections") or {}).items()]
    if report.get("section_weighted") is not None:
        lines += ["", f"Section-weighted score (mean over sections): {report['section_weighted']:.4f}"]
    if report["skipped"]:
        lines += ["", f"{len(report['skipped'])} rows skipped, e.g. row {report['skipped'][0]['row']} "
                      f"({report['skipped'][0]['field']}: {report['skipped'][0]['reason']})"]
    return "\n".join(lines) + "\n"
