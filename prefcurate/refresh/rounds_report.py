"""The refresh rounds report: per round, both models on the fixed and on-policy held-out sets,
reward variance, reward-length correlation, judge agreement and the decision; a markdown table and
one PNG of the figures across rounds (drawn the same way every time)."""

from __future__ import annotations

from pathlib import Path

from prefcurate.core.store import Store

COLUMNS = ("round_index", "decision", "incumbent_fixed_accuracy", "candidate_fixed_accuracy",
           "incumbent_on_policy_accuracy", "candidate_on_policy_accuracy", "on_policy_gain", "on_policy_gain_ci_low",
           "on_policy_gain_ci_high", "fixed_change_ci_low", "candidate_normalized_spread", "reward_variance",
           "reward_length_correlation", "judge_agreement", "pairs", "heldout_pairs")


def _fmt(value) -> str:
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def render_markdown(rows: list[dict]) -> str:
    lines = ["# Refresh rounds", "", "| " + " | ".join(COLUMNS) + " | reason |", "|" + "---|" * (len(COLUMNS) + 1)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row[c]) for c in COLUMNS) + f" | {row['reason'] or ''} |")
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [row["round_index"] for row in rows]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, label, style in (("candidate_fixed_accuracy", "fixed held-out", "o-"),
                              ("candidate_on_policy_accuracy", "on-policy held-out", "s-"),
                              ("incumbent_on_policy_accuracy", "on-policy (incumbent)", "s:")):
        axes[0].plot(rounds, [row[key] for row in rows], style, label=label)
    for row in rows:
        if row["decision"] == "promoted":
            axes[0].axvline(row["round_index"], color="green", alpha=0.15, linewidth=8)
    axes[0].set(title="accuracy (green: promoted)", xlabel="round", ylim=(0, 1.05))
    axes[0].legend(fontsize=8)
    axes[1].plot(rounds, [row["reward_variance"] for row in rows], "o-", label="within-prompt reward variance")
    axes[1].plot(rounds, [row["reward_length_correlation"] for row in rows], "s-", label="reward-length correlation")
    axes[1].set(title="the new model as a teacher", xlabel="round")
    axes[1].legend(fontsize=8)
    axes[2].plot(rounds, [row["judge_agreement"] for row in rows], "o-")
    axes[2].set(title="judge agreement on the round's pairs", xlabel="round", ylim=(0, 1.05))
    for axis in axes:
        axis.set_xticks(rounds)
    figure.tight_layout()
    figure.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(figure)


def write_round_report(store: Store, folder: Path) -> tuple[Path, str]:
    rows = store.con.sql("SELECT * FROM refresh_round_metrics WHERE status = 'done' ORDER BY round_index"
                         ).to_arrow_table().to_pylist()
    folder.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(rows)
    if rows:
        _plot(rows, folder / "refresh_rounds.png")
        markdown += "\n![figures across rounds](refresh_rounds.png)\n"
    path = folder / "refresh_rounds.md"
    path.write_text(markdown)
    return path, markdown
