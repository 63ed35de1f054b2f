"""The judge quality report: the judge_* views of the store, as JSON and markdown.

Per judge: agreement with gold (imported reference labels), position consistency and bias, tie,
invalid and unparseable rates, where confidence came from, usage (tokens, cost, latency) and
errors by kind; per judge and principle: tie rate, agreement with the panel and with gold, and
the win rate of the longer response; per judge, principle and domain: agreement with the
verifiers on the pairs a check decided (a judge audited for free). Rating and ranking judges (and
annotators and rated imports as raters): their scores' spread and certainty, a ranking judge's
lean on the order shown, and every two judges' agreement on the pairs both labelled (a rating
judge against the pairwise one).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from prefcurate.core.store import Store

_SECTIONS = {
    "judges": "SELECT * FROM judge_quality ORDER BY judge",
    "principles": "SELECT * FROM judge_principle_quality ORDER BY judge, principle_id",
    "usage": "SELECT * FROM judge_usage ORDER BY judge",
    "errors": "SELECT * FROM judge_errors ORDER BY judge, n_calls DESC",
    "verifier_agreement": "SELECT * FROM judge_verifier_agreement ORDER BY judge, domain, principle_id",
    "cascade": "SELECT * FROM cascade_levels ORDER BY level",
    "raters": "SELECT * FROM judge_score_quality ORDER BY rater, mode",
    "ranking_position_bias": "SELECT * FROM judge_ranking_position_bias ORDER BY judge",
    "judge_agreement": "SELECT * FROM judge_agreement ORDER BY judge, other_judge",
}


def _clean(value):
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def build_judge_report(store: Store) -> dict:
    report = {}
    for section, sql in _SECTIONS.items():
        cursor = store.con.execute(sql)
        columns = [column[0] for column in cursor.description]
        report[section] = [{name: _clean(value) for name, value in zip(columns, row)} for row in cursor.fetchall()]
    report["pairs"] = dict(zip(
        ("pairs", "judged", "position_consistent", "with_gold"),
        store.one("SELECT count(*), count(*) FILTER (WHERE n_votes > 0), count(*) FILTER (WHERE position_consistent), "
                  "count(*) FILTER (WHERE reference_label IS NOT NULL) FROM pair_labels")))
    return report


def _table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "_none_\n"

    def cell(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def judge_report_markdown(report: dict) -> str:
    pairs = report["pairs"]
    return "\n".join([
        "# Judge quality report",
        "",
        f"{pairs['judged']} of {pairs['pairs']} pairs judged; {pairs['position_consistent']} position-consistent; "
        f"{pairs['with_gold']} with a gold (imported) label.",
        "",
        "## Judges",
        _table(report["judges"], ["judge", "n_calls", "n_valid", "gold_agreement", "n_gold_votes", "consistency_rate",
                                  "share_first_position_verdicts", "tie_rate", "invalid_rate", "unparseable_rate",
                                  "n_cut_verdicts", "mean_confidence"]),
        "## Principles",
        _table(report["principles"], ["judge", "principle_id", "principle_axis", "n_votes", "panel_agreement",
                                      "gold_agreement", "tie_rate", "longer_win_rate", "first_position_rate"]),
        "## Usage",
        _table(report["usage"], ["judge", "n_calls", "prompt_tokens", "completion_tokens", "cost_usd",
                                 "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "n_errors"]),
        "## Errors",
        _table(report["errors"], ["judge", "error_kind", "n_calls", "n_to_retry", "example_reason"]),
        "## Agreement with verifiers (pairs a check decided)",
        _table(report["verifier_agreement"], ["judge", "domain", "principle_id", "n_votes", "agreement"]),
        "## Judge cascade (judge.cascade)",
        _table(report["cascade"], ["level", "judge", "threshold", "gold_pairs", "gold_accepted", "agreement",
                                   "agreement_low", "pairs_seen", "pairs_accepted", "note"]),
        "## Raters (rating and ranking judges, annotators, rated imports)",
        _table(report["raters"], ["rater", "rater_kind", "mode", "n_candidates", "mean_score", "sd_score",
                                  "scale_min", "scale_max", "mean_score_sd", "n_calls", "invalid_rate",
                                  "n_cut_answers"]),
        "## Ranking judges and the order shown",
        _table(report["ranking_position_bias"], ["judge", "n_calls", "first_shown_top_share", "expected_top_share",
                                                 "mean_first_shown_rank", "n_prompts_both_orders", "order_agreement"]),
        "## Judges against each other (pairs both labelled)",
        _table(report["judge_agreement"], ["judge", "judge_mode", "other_judge", "other_mode", "n_pairs", "agreement",
                                           "n_decisive", "decisive_agreement"]),
    ])


def write_judge_report(store: Store, folder: Path) -> tuple[Path, str]:
    """Write judge_report.json and judge_report.md; return the JSON path and the markdown."""
    report = build_judge_report(store)
    folder.mkdir(parents=True, exist_ok=True)
    markdown = judge_report_markdown(report)
    (folder / "judge_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (folder / "judge_report.md").write_text(markdown)
    return folder / "judge_report.json", markdown
