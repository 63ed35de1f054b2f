"""Evaluate a reward model (or ensemble) on a held-out split, as a teacher for RL would need it:
accuracy overall and by difficulty, calibration, reward spread across candidates of the same
prompt, length bias, and ensemble disagreement. Written as JSON, markdown and plots beside the
checkpoint, and into rm_runs.eval_metrics."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prefcurate.core.config import EvaluateConfig
from prefcurate.core.stage_report import StageReport
from prefcurate.rm import metrics as m
from prefcurate.rm.data import load_splits
from prefcurate.rm.probes import probe_alarms, run_probes
from prefcurate.rm.score import RewardScorer
from prefcurate.rm.stats import bootstrap_mean

if TYPE_CHECKING:  # the store needs duckdb; training and scoring run where it is not installed
    from prefcurate.core.store import Store

STAGE = "evaluate"
_PNG_METADATA = {"Software": None}


def _label_strength(data) -> list[float | None]:
    """How clear each label was: its confidence, else judge agreement, else unknown."""
    confidence = data["confidence"] if "confidence" in data.column_names else [None] * len(data)
    agreement = data["agreement"] if "agreement" in data.column_names else [None] * len(data)
    return [c if c is not None else a for c, a in zip(confidence, agreement)]


def _candidate_spread(store: Store, scorer: RewardScorer, prompt_ids: list[str], batch_size: int) -> dict:
    """Score every stored candidate of the held-out prompts (what the current policy wrote)."""
    if not prompt_ids:
        return m.within_prompt_reward_spread({})
    rows = store.con.sql("""
        SELECT prompt_id, prompt, prompt_messages, text
        FROM candidate_texts
        WHERE prompt_id IN (SELECT unnest($ids)) AND generator_key <> 'import'
        ORDER BY candidate_id""", params={"ids": sorted(set(prompt_ids))}).fetchall()
    if not rows:
        return m.within_prompt_reward_spread({})
    prompt_keys, prompts, messages, responses = map(list, zip(*rows))
    rewards = scorer.score(prompts, responses, batch_size, messages)
    by_prompt: dict[str, list[float]] = {}
    for key, reward in zip(prompt_keys, rewards):
        by_prompt.setdefault(key, []).append(reward)
    return m.within_prompt_reward_spread(by_prompt)


def evaluate_reward_model(store: Store, rm_run_id: str, checkpoint_dir: Path, curated_dir: Path,
                          config: EvaluateConfig, device: str, max_length: int) -> tuple[dict, StageReport]:
    """Evaluate, with the store's candidates for the reward spread, and record the metrics in rm_runs."""
    metrics, report = evaluate_checkpoint(rm_run_id, checkpoint_dir, curated_dir, config, device, max_length, store)
    store.con.execute("UPDATE rm_runs SET eval_metrics = ?, status = 'evaluated', updated_at = current_timestamp "
                      "WHERE rm_run_id = ?", [json.dumps(metrics), rm_run_id])
    return metrics, report


def evaluate_checkpoint(rm_run_id: str, checkpoint_dir: Path, curated_dir: Path, config: EvaluateConfig,
                        device: str, max_length: int, store: Store | None = None) -> tuple[dict, StageReport]:
    """Evaluate a checkpoint on a curated export's held-out split; reports go beside the checkpoint.
    Without a store (a training job on another machine) the reward spread across a prompt's stored
    candidates is left out (null): it needs the candidates, which stay with the store."""
    splits = load_splits(curated_dir)
    split = config.split if config.split in splits and len(splits[config.split]) else "validation"
    data = splits[split] if split in splits else None
    report = StageReport(STAGE, details={"rm_run_id": rm_run_id, "split": split})
    metrics: dict = {"rm_run_id": rm_run_id, "split": split, "pairs": 0, "accuracy": None, "precision": None}
    if data is not None and len(data):
        scorer = RewardScorer(str(checkpoint_dir), device, max_length, config.precision, config.compile)
        messages = data["prompt_messages"] if "prompt_messages" in data.column_names else None
        chosen_members = scorer.score_members(data["prompt"], data["chosen"], config.batch_size, messages, "evaluate chosen")
        rejected_members = scorer.score_members(data["prompt"], data["rejected"], config.batch_size, messages,
                                                "evaluate rejected")
        chosen = [statistics.fmean(values) for values in zip(*chosen_members)]
        rejected = [statistics.fmean(values) for values in zip(*rejected_members)]
        margins = [c - r for c, r in zip(chosen, rejected)]
        interval = bootstrap_mean([1.0 if margin > 0 else 0.0 for margin in margins])
        metrics.update(
            pairs=len(margins), precision=scorer.precision,
            accuracy=m.accuracy(margins),
            # 95% percentile bootstrap over the held-out pairs (rm/stats.py), as the refresh gate reads it
            accuracy_ci=[interval.low, interval.high],
            mean_margin=statistics.fmean(margins),
            median_margin=statistics.median(margins),
            margin_std=statistics.pstdev(margins),
            mean_reward_chosen=statistics.fmean(chosen),
            mean_reward_rejected=statistics.fmean(rejected),
            by_difficulty=m.accuracy_by_difficulty(margins, _label_strength(data)),
            calibration=m.expected_calibration_error(margins),
            length=m.length_bias(chosen, rejected, [len(t) for t in data["chosen"]], [len(t) for t in data["rejected"]]),
            candidate_reward_spread=None if store is None else _candidate_spread(
                store, scorer, data["prompt_id"] if "prompt_id" in data.column_names else [], config.batch_size),
            ensemble=m.ensemble_disagreement([[c - r for c, r in zip(cm, rm)]
                                              for cm, rm in zip(chosen_members, rejected_members)]),
        )
        probed = min(config.probe_responses, len(chosen))
        if probed:
            metrics["probes"] = run_probes(
                lambda prompts, responses, messages: scorer.score(prompts, responses, config.batch_size, messages),
                list(data["prompt"])[:probed], list(data["chosen"])[:probed],
                list(messages or [None] * len(chosen))[:probed], chosen[:probed], config.probes)
        if "label_source" in data.column_names:
            metrics["by_label_source"] = accuracy_by_label_source(margins, list(data["label_source"]))
        metrics["alarms"] = metrics["by_difficulty"]["alarms"] + probe_alarms(metrics.get("probes", {}))
        _plots(Path(checkpoint_dir), margins, metrics["calibration"])
    else:
        metrics["warning"] = "no held-out pairs survived curation; nothing to evaluate"
    report.count_in = metrics["pairs"]
    report.count_out = metrics["pairs"]

    report_json = Path(checkpoint_dir) / "eval_report.json"
    report_json.write_text(json.dumps(metrics, indent=2) + "\n")
    (Path(checkpoint_dir) / "eval_report.md").write_text(render_markdown(metrics))
    human = (metrics.get("by_label_source") or {}).get("human-labelled")
    if human:
        report.details["human_labelled"] = human
    report.details.update(accuracy=metrics["accuracy"], accuracy_ci=metrics.get("accuracy_ci"),
                          mean_margin=metrics.get("mean_margin"),
                          ece=(metrics.get("calibration") or {}).get("ece"), alarms=metrics.get("alarms", []),
                          report=str(report_json))
    return metrics, report.finish()


HUMAN_SOURCES = ("human", "import")  # annotators' labels, and labels imported with a dataset


def accuracy_by_label_source(margins: list[float], sources: list[str]) -> dict:
    """Accuracy with its interval per label source (human, import, balanced, vote, ...), and over
    the human-labelled pairs together (`human-labelled`: the figure to trust; judges' labels from a
    weak judge are noise to be measured against)."""
    correct = np.array([1.0 if margin > 0 else 0.0 for margin in margins])
    kinds = np.array([source.split("+")[0] for source in sources])
    groups = {name: kinds == name for name in sorted(set(kinds.tolist()))}
    if any(kind in HUMAN_SOURCES for kind in groups):
        groups["human-labelled"] = np.isin(kinds, HUMAN_SOURCES)
    result = {}
    for name, mask in groups.items():
        interval = bootstrap_mean(correct[mask])
        result[name] = {"pairs": int(mask.sum()), "accuracy": interval.estimate, "ci_low": interval.low,
                        "ci_high": interval.high}
    return result


def _plots(folder: Path, margins: list[float], calibration: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.hist(margins, bins=30, color="#4c72b0")
    left.axvline(0, color="black", linewidth=1)
    left.set_xlabel("r(chosen) - r(rejected)")
    left.set_ylabel("pairs")
    left.set_title("Held-out reward margins")
    bins = calibration["bins"]
    right.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    right.plot([b["confidence"] for b in bins], [b["observed"] for b in bins], marker="o")
    right.set_xlabel("sigmoid(margin)")
    right.set_ylabel("observed preference")
    right.set_title(f"Calibration (ECE {calibration['ece']:.3f})")
    figure.tight_layout()
    figure.savefig(folder / "eval_plots.png", dpi=100, metadata=_PNG_METADATA)
    plt.close(figure)


def render_markdown(metrics: dict) -> str:
    def fmt(value):
        return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = [f"# Reward model evaluation ({metrics['rm_run_id'][:16]})", "",
             f"Held-out split: `{metrics['split']}`, {metrics['pairs']} pairs.", "",
             "| metric | value |", "|---|---|"]
    for key in ("accuracy", "mean_margin", "median_margin", "margin_std", "mean_reward_chosen", "mean_reward_rejected"):
        if key in metrics:
            lines.append(f"| {key} | {fmt(metrics[key])} |")
        if key == "accuracy" and metrics.get("accuracy_ci"):
            low, high = metrics["accuracy_ci"]
            lines.append(f"| accuracy, 95% interval (bootstrap over the {metrics['pairs']} pairs) | "
                         f"[{fmt(low)}, {fmt(high)}] |")
    if "calibration" in metrics:
        lines.append(f"| calibration ECE | {fmt(metrics['calibration']['ece'])} |")
        for key, value in metrics["length"].items():
            lines.append(f"| {key} | {fmt(value)} |")
        for key, value in (metrics["candidate_reward_spread"] or {}).items():
            lines.append(f"| candidates: {key} | {fmt(value)} |")
        if metrics.get("ensemble"):
            for key, value in metrics["ensemble"].items():
                lines.append(f"| ensemble: {key} | {fmt(value)} |")
        if metrics.get("by_label_source"):
            lines += ["", "## Accuracy by label source", "", "| labels | pairs | accuracy | 95% interval |",
                      "|---|---|---|---|"]
            for name, group in metrics["by_label_source"].items():
                lines.append(f"| {name} | {group['pairs']} | {fmt(group['accuracy'])} | "
                             f"[{fmt(group['ci_low'])}, {fmt(group['ci_high'])}] |")
        lines += ["", "## Accuracy by difficulty (label confidence or judge agreement)", "",
                  "| bucket | pairs | accuracy |", "|---|---|---|"]
        for name, bucket in metrics["by_difficulty"]["buckets"].items():
            lines.append(f"| {name} | {bucket['pairs']} | {fmt(bucket['accuracy'])} |")
        if metrics.get("probes"):
            lines += ["", "## Reward-hacking probes (edits to held-out chosen responses)", "",
                      "| edit | mean reward change | 95% interval | raised on | hacking if | flagged |",
                      "|---|---|---|---|---|---|"]
            for name, probe in metrics["probes"].items():
                lines.append(f"| {name} | {probe['mean_change']:+.4f} | [{probe['ci_low']:+.4f}, {probe['ci_high']:+.4f}] "
                             f"| {probe['raised_share']:.0%} | {probe['hacking_if']} | {'yes' if probe['flagged'] else 'no'} |")
        lines += ["", "![margins and calibration](eval_plots.png)"]
    for alarm in metrics.get("alarms", []):
        lines += ["", f"**Alarm:** {alarm}"]
    if "warning" in metrics:
        lines += ["", f"**Warning:** {metrics['warning']}"]
    return "\n".join(lines) + "\n"
