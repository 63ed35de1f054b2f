"""The curated dataset's card: README.md beside the Parquet files, with the funnel and three plots
(funnel, chosen vs rejected length, agreement), written from the store and the curation result."""

from __future__ import annotations

from pathlib import Path

from prefcurate.core.store import StoreReader

_PNG_METADATA = {"Software": None}  # no version stamp: the same run draws the same bytes


def _plots(store: StoreReader, funnel: list[tuple[str, int, int]], out: Path, card_rows: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = []
    names = [name for name, _, _ in funnel]
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    axis.barh(names[::-1], [n_out for _, _, n_out in funnel][::-1], color="#4c72b0")
    axis.set_xlabel("pairs after the step")
    axis.set_title("Curation funnel")
    figure.tight_layout()
    figure.savefig(out / "funnel.png", dpi=100, metadata=_PNG_METADATA)
    plt.close(figure)
    drawn.append("funnel.png")

    # Histograms are binned in DuckDB: a million pairs never travel to Python one by one.
    top = store.scalar(f"SELECT max(greatest(chosen_chars, rejected_chars)) FROM {card_rows}")
    if top:
        width = max(top / 30, 1)
        counts = store.con.execute(f"""
            SELECT side, least(floor(n / {width!r}), 29) AS bin, count(*)
            FROM (SELECT 'chosen' AS side, chosen_chars AS n FROM {card_rows}
                  UNION ALL
                  SELECT 'rejected', rejected_chars FROM {card_rows})
            GROUP BY ALL""").fetchall()
        figure, axis = plt.subplots(figsize=(6, 4))
        for side in ("chosen", "rejected"):
            heights = [0] * 30
            for name, bin_index, n in counts:
                if name == side:
                    heights[int(bin_index)] = n
            axis.stairs(heights, [width * i for i in range(31)], fill=True, alpha=0.5, label=side)
        axis.set_xlabel("characters")
        axis.set_ylabel("pairs")
        axis.set_title("Response length: chosen vs rejected")
        axis.legend()
        figure.tight_layout()
        figure.savefig(out / "lengths.png", dpi=100, metadata=_PNG_METADATA)
        plt.close(figure)
        drawn.append("lengths.png")

    agreement = dict(store.con.execute(
        f"SELECT least(floor(agreement * 20), 19) AS bin, count(*) FROM {card_rows} "
        "WHERE agreement IS NOT NULL GROUP BY ALL").fetchall())
    if agreement:
        figure, axis = plt.subplots(figsize=(6, 4))
        axis.stairs([agreement.get(float(i), 0) for i in range(20)], [i / 20 for i in range(21)], fill=True,
                    color="#55a868")
        axis.set_xlabel("share of judge votes for the label")
        axis.set_ylabel("pairs")
        axis.set_title("Judge agreement of curated pairs")
        figure.tight_layout()
        figure.savefig(out / "agreement.png", dpi=100, metadata=_PNG_METADATA)
        plt.close(figure)
        drawn.append("agreement.png")
    return drawn


def write_dataset_card(store: StoreReader, run_id: str, out: Path, funnel: list[tuple[str, int, int]],
                       split_counts: dict[str, int], chosen_longer_share: float | None, config_yaml: str,
                       rows: str = "curated_pairs_export") -> Path:
    """The card, from `rows` (the view, or parquet.curation_run_rows' table)."""
    # What the card reads, without the texts: each read of the texts at 10M pairs took seconds
    store.con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _card_rows AS
        SELECT length(chosen) AS chosen_chars, length(rejected) AS rejected_chars, agreement, label_source, tie
        FROM {rows} WHERE curation_run_id = ?""", [run_id])
    try:
        plots = _plots(store, funnel, out, "_card_rows")
        sources = store.con.execute("SELECT label_source, count(*) FROM _card_rows GROUP BY ALL ORDER BY 2 DESC").fetchall()
        stats = store.one("SELECT count(*), median(chosen_chars), median(rejected_chars), avg(agreement), "
                          "count(*) FILTER (WHERE tie) FROM _card_rows")
    finally:
        store.con.execute("DROP TABLE IF EXISTS _card_rows")
    rows = "\n".join(f"| {name} | {n_in} | {n_out} | {n_in - n_out} |" for name, n_in, n_out in funnel)
    files = [f"{split}.parquet" for split, n in split_counts.items() if n]
    share = "n/a" if chosen_longer_share is None else f"{chosen_longer_share:.1%}"
    card = f"""---
configs:
- config_name: default
  data_files:
{chr(10).join(f'  - split: {Path(f).stem}{chr(10)}    path: {f}' for f in files)}
tags:
- preference
- reward-modeling
- prefcurate
---

# Curated preference pairs (curation run `{run_id}`)

Pairs of responses to the same prompt, the preferred one as `chosen`, curated by prefcurate.
Columns follow TRL's explicit-prompt preference format (`prompt`, `chosen`, `rejected`), with
metadata beside them (`label_source`, `confidence`, `agreement`, `n_votes`, `tie`, ...).

```python
import datasets
ds = datasets.load_dataset("parquet", data_files={{{", ".join(f'"{Path(f).stem}": "{f}"' for f in files)}}})
```

## Contents

| split | pairs |
|---|---|
{chr(10).join(f'| {split} | {n} |' for split, n in split_counts.items())}

- Label sources: {", ".join(f"{source} {n}" for source, n in sources) or "none"}.
- Median length in characters: chosen {stats[1] or 0:.0f}, rejected {stats[2] or 0:.0f}; the chosen response
  is the longer one in {share} of the pairs (a share far above 50% invites length hacking).
- Mean judge agreement: {"n/a" if stats[3] is None else f"{stats[3]:.2f}"}; pairs kept as ties: {stats[4]}.
- Splits are assigned per prompt cluster: near-duplicate prompts never straddle splits.

## Funnel

| step | in | out | dropped |
|---|---|---|---|
{rows}

{chr(10).join(f'![{Path(p).stem}]({p})' for p in plots)}

## Configuration

```yaml
{config_yaml.rstrip()}
```
"""
    path = out / "README.md"
    path.write_text(card, encoding="utf-8")
    return path
