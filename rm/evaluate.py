"""Evaluate a reward model on a held-out split: pairwise accuracy and reward margins."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from prefcurate.config import EvaluateConfig
from prefcurate.curation.store import StageReport, Store
from prefcurate.rm.data import load_splits
from prefcurate.rm.score import RewardScorer

STAGE = "evaluate"


def evaluate_reward_model(store: Store, rm_run_id: str, checkpoint_dir: Path, curated_dir: Path,
                          config: EvaluateConfig, device: str, max_length: int) -> tuple[dict, StageReport]:
    splits = load_splits(curated_dir)
    split = config.split if config.split in splits and len(splits[config.split]) else "validation"
    data = splits[split] if split in splits else None
    report = StageReport(STAGE, details={"rm_run_id": rm_run_id, "split": split})
    metrics: dict = {"rm_run_id": rm_run_id, "split": split, "pairs": 0, "accuracy": None,
                     "mean_margin": None, "median_margin": None, "margin_std": None}
    if data is not None and len(data):
        scorer = RewardScorer(str(checkpoint_dir), device, max_length)
        chosen = scorer.score(data["prompt"], data["chosen"], config.batch_size)
        rejected = scorer.score(data["prompt"], data["rejected"], config.batch_size)
        margins = [c - r for c, r in zip(chosen, rejected)]
        metrics.update(
            pairs=len(margins),
            accuracy=sum(m > 0 for m in margins) / len(margins),
            mean_margin=statistics.fmean(margins),
            median_margin=statistics.median(margins),
            margin_std=statistics.pstdev(margins),
            mean_reward_chosen=statistics.fmean(chosen),
            mean_reward_rejected=statistics.fmean(rejected),
        )
    else:
        metrics["warning"] = "no held-out pairs survived curation; nothing to evaluate"
    report.count_in = metrics["pairs"]
    report.count_out = metrics["pairs"]

    report_json = Path(checkpoint_dir) / "eval_report.json"
    report_json.write_text(json.dumps(metrics, indent=2) + "\n")
    (Path(checkpoint_dir) / "eval_report.md").write_text(render_markdown(metrics))
    store.con.execute("UPDATE rm_runs SET eval_metrics = ?, status = 'evaluated', updated_at = current_timestamp "
                      "WHERE rm_run_id = ?", [json.dumps(metrics), rm_run_id])
    report.details.update(accuracy=metrics["accuracy"], mean_margin=metrics["mean_margin"], report=str(report_json))
    return metrics, report.finish()


def render_markdown(metrics: dict) -> str:
    def fmt(value):
        return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = [f"# Reward model evaluation ({metrics['rm_run_id'][:16]})", "",
             f"Held-out split: `{metrics['split']}`, {metrics['pairs']} pairs.", "",
             "| metric | value |", "|---|---|"]
    for key in ("accuracy", "mean_margin", "median_margin", "margin_std", "mean_reward_chosen", "mean_reward_rejected"):
        if key in metrics:
            lines.append(f"| {key} | {fmt(metrics[key])} |")
    if "warning" in metrics:
        lines += ["", f"**Warning:** {metrics['warning']}"]
    return "\n".join(lines) + "\n"
