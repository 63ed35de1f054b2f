"""Why a stage received nothing: walk back the pipeline's tables to the first stage that came out
empty, and say what emptied it. A stage that gets no input fails with this, not with a symptom
(e.g. "no train.parquet") three stages later."""

from __future__ import annotations

from prefcurate.core.store import Store


def identical_samples_note(store: Store) -> str:
    """When prompts have candidates but all of a prompt's samples are the same text."""
    row = store.one("""
        SELECT count(*), count(*) FILTER (WHERE distinct_texts < 2)
        FROM (SELECT prompt_id, count(DISTINCT text) AS distinct_texts FROM candidates GROUP BY prompt_id)""")
    prompts, identical = row if row else (0, 0)
    if prompts and identical == prompts:
        return (f"every one of the {prompts} prompts got identical samples, so no pair could be formed: the "
                "endpoint probably ignores temperature/seed (check generate.temperature and the server's sampling "
                "options; with vLLM or transformers serve, turn off greedy defaults)")
    return (f"{identical} of {prompts} prompts have fewer than two distinct candidates" if prompts else "")


def why_empty(store: Store, stage: str) -> str:
    """One line: which earlier stage left `stage` nothing to work on, and why."""
    counts = dict(store.con.execute("SELECT table_name, n_rows FROM store_counts").fetchall())
    if not counts.get("prompts"):
        return f"{stage} has nothing to work on: the store has no prompts (run `prefcurate ingest`)"
    references = store.count("reference_labels")
    if not counts.get("candidates"):
        return (f"{stage} has nothing to work on: generate made no candidates for the {counts['prompts']} prompts "
                "(see its report: every call may have failed)")
    if not counts.get("pairs"):
        note = identical_samples_note(store)
        return f"{stage} has nothing to work on: the pairs stage made no pairs" + (f": {note}" if note else "")
    labelled = store.scalar("SELECT count(*) FROM pair_labels WHERE n_votes > 0") or 0
    if not labelled and not references:
        invalid = store.one("SELECT count(*), any_value(invalid_reason) FROM judgments WHERE NOT valid")
        detail = (f"{invalid[0]} judge answers, none valid (e.g. {invalid[1]!r})" if invalid and invalid[0]
                  else "no judge answer is stored")
        return f"{stage} has nothing to work on: no pair of the {counts['pairs']} has a label: {detail}"
    return f"{stage} has nothing to work on: curation kept no pair (see the funnel of the latest curation run)"
