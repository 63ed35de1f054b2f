"""Each curation step on small hand-built stores, with exactly the expected survivors."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefcurate.core.config import CurateConfig
from prefcurate.core.hashing import content_hash
from prefcurate.curation.funnel.curate import curate
from prefcurate.curation.funnel.decontaminate import CurationError
from tests.support.builders import add_call, add_candidates, add_pair, add_prompt

NO_SPLITS = {"validation": 0.0, "test": 0.0}

PROMPTS = [
    "Explain how photosynthesis turns light into sugar.",
    "Write a haiku about autumn rain on a tin roof.",
    "What causes the seasons on Earth?",
    "Give three tips for a first marathon.",
    "How does a hash table handle collisions?",
    "Translate good morning into Spanish and French.",
    "Why is the sky blue during the day?",
    "Summarize the plot of Hamlet in two sentences.",
    "What is the difference between TCP and UDP?",
    "Suggest a name for a bakery that sells sourdough.",
]


def preferred(store, prompt_text: str, chosen: str, rejected: str, p: float = 0.9, judge: str = "j") -> str:
    """A pair whose judge prefers `chosen` with probability p in both shown orders; returns pair_id."""
    prompt = add_prompt(store, prompt_text)
    chosen_id, rejected_id = (content_hash("cand", prompt, text) for text in (chosen, rejected))
    store.insert_new("candidates", pa.Table.from_pylist([
        {"candidate_id": key, "prompt_id": prompt, "generator_key": "g", "generator": "test", "sample_index": 0, "text": text}
        for key, text in ((chosen_id, chosen), (rejected_id, rejected))]))
    pair, a, _ = add_pair(store, prompt, chosen_id, rejected_id)
    p_a = p if a == chosen_id else 1 - p  # P(a wins)
    add_call(store, pair, "ab", "A" if p_a >= 0.5 else "B", p_first=p_a, judge=judge)
    add_call(store, pair, "ba", "B" if p_a >= 0.5 else "A", p_first=1 - p_a, judge=judge)
    return pair


def kept(store, run_id) -> set[str]:
    return {row[0] for row in store.con.execute(
        "SELECT pair_id FROM curated_pairs WHERE curation_run_id = ?", [run_id]).fetchall()}


def test_each_pair_filter_drops_exactly_its_pairs(store):
    good = preferred(store, PROMPTS[0], "Chlorophyll absorbs light and drives sugar synthesis.", "Plants eat sun.")
    identical = preferred(store, PROMPTS[1], "Rain on tin, autumn sings.", "rain on tin -- Autumn sings!")
    empty = preferred(store, PROMPTS[2], "The tilt of Earth's axis.", "   ")
    too_long = preferred(store, PROMPTS[3], "Train slowly. " * 20, "Run.")
    ratio = preferred(store, PROMPTS[4], "Chaining or open addressing resolves collisions.", "Lists.")
    refusal = preferred(store, PROMPTS[5], "Buenos dias; bonjour.", "I'm sorry, but I can't help with that.")
    tie = preferred(store, PROMPTS[6], "Rayleigh scattering of sunlight.", "Scattering.", p=0.5)
    unsure = preferred(store, PROMPTS[7], "A prince avenges his father and everyone dies.", "Danish drama.", p=0.55)
    config = CurateConfig(min_confidence=0.6, drop_refusals=True, splits=NO_SPLITS,
                          length={"min_chars": 1, "max_chars": 200, "max_ratio": 5.0})
    result, report = curate(store, config)
    assert kept(store, result.curation_run_id) == {good}
    funnel = {name: n_in - n_out for name, n_in, n_out in result.funnel}
    assert funnel == {
        "has_label_evidence": 0, "has_label": 0, "not_tie": 1, "agreement>=0.5": 0, "confidence>=0.6": 1,
        "responses_differ": 1, "response_chars>=1,<=200": 2, "length_ratio<=5": 1, "no_refusal": 1,
        "exact_dedup": 0, "near_dedup>=0.7": 0, "cap_6_per_prompt_by_confidence": 0}
    samples = dict(store.con.execute(
        "SELECT f.step, s.pair_id FROM curation_funnel_samples s JOIN curation_funnel f USING (curation_run_id, step_order) "
        "WHERE s.curation_run_id = ? AND f.step IN ('not_tie', 'confidence>=0.6', 'responses_differ', 'length_ratio<=5', "
        "'no_refusal')", [result.curation_run_id]).fetchall())
    assert samples == {"not_tie": tie, "confidence>=0.6": unsure, "responses_differ": identical,
                       "length_ratio<=5": ratio, "no_refusal": refusal}
    dropped_by_length = {row[0] for row in store.con.execute(
        "SELECT s.pair_id FROM curation_funnel_samples s JOIN curation_funnel f USING (curation_run_id, step_order) "
        "WHERE f.step LIKE 'response_chars%'").fetchall()}
    assert dropped_by_length == {empty, too_long}
    assert report.details["steps"]["refusal_flagged_pairs"] == 1


def test_ties_can_be_kept_and_training_data_skips_them(store, tmp_path):
    from prefcurate.curation.export.parquet import export_curation_run
    from prefcurate.rm.data import load_splits

    preferred(store, PROMPTS[0], "Light splits water; sugar follows.", "Magic.")
    tie = preferred(store, PROMPTS[1], "Autumn rain taps tin.", "Tin roof, cold rain.", p=0.5)
    result, _ = curate(store, CurateConfig(ties="keep", splits=NO_SPLITS))
    assert store.one("SELECT is_tie FROM curated_pairs WHERE pair_id = ?", [tie]) == (True,)
    out = export_curation_run(store, result.curation_run_id, tmp_path, {})
    table = pq.read_table(out / "train.parquet")
    assert sorted(table.column("tie").to_pylist()) == [False, True]
    assert len(load_splits(out)["train"]) == 1  # Bradley-Terry gets only preferences


def test_human_votes_come_first_and_their_agreement_can_be_required(store):
    pair = preferred(store, PROMPTS[0], "Chlorophyll captures light.", "Leaves are green.")  # judges: first text
    other = preferred(store, PROMPTS[1], "Rain drums on tin.", "It rains.")
    a, b = store.one("SELECT candidate_a, candidate_b FROM pairs WHERE pair_id = ?", [pair])
    judge_winner = store.scalar("SELECT balanced_label FROM pair_labels WHERE pair_id = ?", [pair])
    human_winner = "b" if judge_winner == "a" else "a"
    rows = [{"annotation_id": content_hash("ann", pair, who), "pair_id": pair, "annotator": who, "winner": winner,
             "status": "submitted"} for who, winner in (("ann1", human_winner), ("ann2", human_winner), ("ann3", judge_winner))]
    rows.append({"annotation_id": content_hash("ann", pair, "draft"), "pair_id": pair, "annotator": "ann4",
                 "winner": judge_winner, "status": "draft"})  # drafts do not count
    store.insert_new("annotations", pa.Table.from_pylist(rows))
    result, _ = curate(store, CurateConfig(splits=NO_SPLITS))
    chosen, source, confidence = store.one("SELECT chosen_candidate, label_source, confidence FROM curated_pairs "
                                           "WHERE curation_run_id = ? AND pair_id = ?", [result.curation_run_id, pair])
    assert chosen == (a if human_winner == "a" else b) and source == "human" and confidence == pytest.approx(2 / 3)
    strict, _ = curate(store, CurateConfig(min_human_agreement=0.7, splits=NO_SPLITS))
    assert kept(store, strict.curation_run_id) == {other}  # pairs without human votes are not held to it


@pytest.mark.parametrize("signature_batch", [65_536, 2], ids=["one-batch", "batches-of-2"])
def test_near_duplicate_prompts_keep_one_representative_per_cluster(store, monkeypatch, signature_batch):
    from prefcurate.curation.funnel import dedup
    monkeypatch.setattr(dedup, "SIGNATURE_BATCH_ROWS", signature_batch)  # signatures a few prompts at a time: the same
    variants = ["How do I bake sourdough bread at home without a mixer?",
                "How do I bake sourdough bread at home without a mixer",
                "how do i bake sourdough bread at home without a stand mixer?",
                "How can I bake sourdough bread at home without a mixer?"]
    pairs = {}
    for index, text in enumerate(variants):
        pairs[text] = [preferred(store, text, f"Knead by hand, version {index} {k}.", f"Buy bread {index} {k}.")
                       for k in range(1 + (index == 2))]  # the third variant has two pairs: it is kept
    exact_a = [preferred(store, "What is the boiling point of water at sea level?", f"100 C at 1 atm ({k}).", f"Hot {k}.")
               for k in range(2)]
    exact_b = preferred(store, "What is the boiling point of water, at sea-level!", "Water boils at 100 C.", "Warm.")
    distinct = [preferred(store, text, f"A careful answer about {text[:12]}.", "No.") for text in PROMPTS[:6]]
    result, report = curate(store, CurateConfig(splits={"validation": 0.3, "test": 0.3}))
    survivors = kept(store, result.curation_run_id)
    assert survivors == set(pairs[variants[2]]) | set(exact_a) | set(distinct)
    assert exact_b not in survivors  # its prompt is an exact duplicate of exact_a's
    drops = store.con.execute("SELECT step, p.text, k.text FROM curation_prompt_drops d JOIN prompts p USING (prompt_id) "
                              "JOIN prompts k ON k.prompt_id = d.related WHERE curation_run_id = ? ORDER BY p.text",
                              [result.curation_run_id]).fetchall()
    by_step: dict[str, set] = {}
    for step, dropped, _ in drops:
        by_step.setdefault(step, set()).add(dropped)
    sea_level = "What is the boiling point of water, at sea-level!"
    assert by_step["exact_dedup"] | by_step["near_dedup"] == {variants[0], variants[1], variants[3], sea_level}
    # the two texts equal but for punctuation go in the exact step, the rest of their cluster in the near one
    assert sea_level in by_step["exact_dedup"] and len(by_step["exact_dedup"] & {variants[0], variants[1]}) == 1
    # every drop points at its cluster's representative; following them ends at a curated prompt
    # (the never-drop-a-whole-cluster rule)
    points_to = {dropped: kept_text for _, dropped, kept_text in drops}
    curated_texts = {row[0] for row in store.con.execute(
        "SELECT pr.text FROM curated_pairs JOIN pairs USING (pair_id) JOIN prompts pr USING (prompt_id) "
        "WHERE curation_run_id = ?", [result.curation_run_id]).fetchall()}
    for dropped in points_to:
        while dropped in points_to:
            dropped = points_to[dropped]
        assert dropped in curated_texts
    assert report.details["steps"]["near_dedup>=0.7"]["prompts_dropped"] == 2
    # every curated prompt has one cluster and one split
    clusters = store.con.execute("SELECT cluster_id, count(DISTINCT split) FROM curation_prompt_clusters "
                                 "WHERE curation_run_id = ? GROUP BY cluster_id", [result.curation_run_id]).fetchall()
    assert len(clusters) == 8 and all(n == 1 for _, n in clusters)

    without, _ = curate(store, CurateConfig(dedup={"exact": False, "near": {"enabled": False}}))
    assert len(kept(store, without.curation_run_id)) == 5 + 3 + 6


def test_a_near_dup_step_that_stops_part_way_says_why(store, monkeypatch):
    """An error while the signatures stream in (here, the second batch's) is the error the stage
    ends with: the stream is closed first, else dropping the working tables after raised DuckDB's
    "connection has an open result" in its place."""
    from prefcurate.curation.funnel import dedup
    monkeypatch.setattr(dedup, "SIGNATURE_BATCH_ROWS", 2)
    real_signatures, batches = dedup.signatures, []

    def fails_on_the_second_batch(shingles, near):
        batches.append(len(shingles))
        if len(batches) == 2:
            raise MemoryError("no room for the signatures")
        return real_signatures(shingles, near)

    monkeypatch.setattr(dedup, "signatures", fails_on_the_second_batch)
    for text in PROMPTS[:6]:
        preferred(store, text, f"A careful answer about {text[:12]}.", "No.")
    with pytest.raises(MemoryError, match="no room for the signatures"):
        curate(store, CurateConfig())
    assert store.scalar("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '_curation%'") == 0


def test_near_duplicates_never_straddle_splits_as_the_data_grows(store):
    base = "Describe the water cycle for a ten year old in simple words"
    first = preferred(store, base + ".", "Water evaporates, condenses, and falls as rain.", "Rain.")
    for i in range(40):
        preferred(store, f"Unrelated question number {i} about topic {i * 7919 % 1000}?", f"Answer {i}.", "No.")
    config = CurateConfig(splits={"validation": 0.3, "test": 0.3}, seed=3)
    before, _ = curate(store, config)
    split_before = store.scalar("SELECT split FROM curated_pairs WHERE curation_run_id = ? AND pair_id = ?",
                                [before.curation_run_id, first])
    # a near-duplicate with more pairs arrives: it becomes the representative, in the same split
    twin = [preferred(store, base + "!", f"Evaporation then rain, take {k}.", f"Clouds {k}.") for k in range(2)]
    after, _ = curate(store, config)
    assert first not in kept(store, after.curation_run_id) and set(twin) <= kept(store, after.curation_run_id)
    splits = {row[0] for row in store.con.execute("SELECT split FROM curated_pairs WHERE curation_run_id = ? "
                                                  "AND pair_id IN (?, ?)", [after.curation_run_id, *twin]).fetchall()}
    assert splits == {split_before}


def test_decontamination_drops_prompts_that_overlap_a_benchmark(store, tmp_path):
    benchmark = tmp_path / "mtbench.jsonl"
    benchmark.write_text("\n".join(json.dumps({"turns": text}) for text in [
        "Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural experiences.",
        "Draft a professional email seeking your supervisor's feedback on the quarterly financial report."]) + "\n")
    leaked = preferred(store, "Please compose an engaging travel blog post about a recent trip to Hawaii, "
                              "highlighting cultural experiences.", "Aloha! ...", "Hawaii.")
    clean = preferred(store, PROMPTS[0], "Light to sugar via chlorophyll.", "Sun food.")
    config = CurateConfig(splits=NO_SPLITS, decontamination={
        "benchmarks": [{"name": "mt-bench", "path": str(benchmark), "text_column": "turns"}], "ngram": 5})
    result, report = curate(store, config)
    assert kept(store, result.curation_run_id) == {clean}
    assert report.details["steps"]["decontaminated"] == {"prompts_dropped_by_benchmark": {"mt-bench": 1},
                                                         "prompts_dropped": 1}
    related, score = store.one("SELECT related, score FROM curation_prompt_drops WHERE step = 'decontaminated'")
    assert related == "mt-bench" and score > 0.8
    assert leaked not in kept(store, result.curation_run_id)

    missing = config.model_copy(deep=True)
    missing.decontamination.benchmarks[0].text_column = "question"
    with pytest.raises(CurationError, match=r"mt-bench.*no column 'question'"):
        curate(store, missing)
    missing.decontamination.benchmarks[0].path = tmp_path / "nope.jsonl"
    with pytest.raises(CurationError, match="file not found"):
        curate(store, missing)


@pytest.mark.parametrize("rule, expected", [("confidence", {0.95, 0.9}), ("margin", {0.95, 0.9})])
def test_the_cap_keeps_pairs_by_the_stated_rule(store, rule, expected):
    prompt = add_prompt(store, PROMPTS[0])
    texts = [f"Answer number {i} with {'detail ' * i}" for i in range(5)]
    candidates = add_candidates(store, prompt, texts)
    strengths = {}
    for i, p in enumerate((0.6, 0.9, 0.7, 0.95)):
        pair, a, _ = add_pair(store, prompt, candidates[i], candidates[i + 1])
        add_call(store, pair, "ab", "A", p_first=p)
        add_call(store, pair, "ba", "B", p_first=1 - p)
        strengths[pair] = p
    result, _ = curate(store, CurateConfig(max_pairs_per_prompt=2, pair_selection=rule, splits=NO_SPLITS))
    assert {strengths[pair] for pair in kept(store, result.curation_run_id)} == expected
    seeded = [kept(store, curate(store, CurateConfig(max_pairs_per_prompt=2, pair_selection="random", seed=s,
                                                    splits=NO_SPLITS))[0].curation_run_id) for s in (1, 1, 2, 3, 4)]
    assert seeded[0] == seeded[1] and len({frozenset(s) for s in seeded}) > 1


def test_length_rebalancing_reaches_the_target_share(store):
    for i in range(8):  # the judge prefers the longer answer in 8 pairs...
        preferred(store, f"{PROMPTS[i % 10]} (variant {i}, asked in a different way {i * 31})",
                  f"A long, detailed answer number {i}.", f"Short {i}.", p=0.6 + 0.04 * i)
    for i in range(2):  # ...and the shorter one in 2
        preferred(store, f"Completely different question {i}: name a river in country {i}?", f"Nile {i}.",
                  f"A rambling answer that never names a river {i}.")
    config = CurateConfig(splits=NO_SPLITS, dedup={"near": {"enabled": False}}, length={"target_chosen_longer": 0.5})
    result, report = curate(store, config)
    assert report.details["steps"]["chosen_longer_share_labelled"] == pytest.approx(0.8)
    assert result.chosen_longer_share == pytest.approx(0.5)
    assert len(kept(store, result.curation_run_id)) == 4
    kept_longer = store.con.execute("""
        SELECT c.confidence FROM curated_pairs c JOIN candidates ch ON ch.candidate_id = c.chosen_candidate
        JOIN candidates rj ON rj.candidate_id = c.rejected_candidate
        WHERE curation_run_id = ? AND length(ch.text) > length(rj.text) ORDER BY c.confidence""",
                                    [result.curation_run_id]).fetchall()
    assert len(kept_longer) == 2 and kept_longer[0][0] > 0.8  # the most confident two of the eight


def test_the_export_has_a_dataset_card_with_plots_and_is_byte_identical_per_seed(tmp_path):
    import datasets

    from prefcurate.core.config import config_from_dict
    from prefcurate.core.store import Store
    from prefcurate.pipeline import curate_stage

    outputs = []
    for attempt in range(2):  # two separate stores built the same way, curated with the same seed
        config = config_from_dict({"workdir": str(tmp_path / f"out{attempt}"),
                                   "store": {"path": str(tmp_path / f"s{attempt}.duckdb")},
                                   "curate": {"splits": {"validation": 0.2, "test": 0.2}, "seed": 11}})
        with Store(config.store.path) as store:
            for index, prompt in enumerate(PROMPTS):
                preferred(store, prompt, f"A thorough answer to question {index}.", f"Meh {index}.", p=0.7 + index / 50)
        outputs.append(Path(curate_stage(config)["output_dir"]))
    first, second = outputs
    card = (first / "README.md").read_text()
    assert "## Funnel" in card and "| has_label_evidence | 10 | 10 | 0 |" in card and "![funnel](funnel.png)" in card
    for name in ("funnel.png", "lengths.png", "agreement.png"):
        assert (first / name).read_bytes()[:4] == b"\x89PNG"
    parquet = sorted(path.name for path in first.glob("*.parquet"))
    assert parquet and all((first / name).read_bytes() == (second / name).read_bytes() for name in parquet)
    assert (first / "funnel.png").read_bytes() == (second / "funnel.png").read_bytes()
    loaded = datasets.load_dataset(str(first))  # the card's YAML header names the splits' files
    assert sum(len(split) for split in loaded.values()) == 10


def test_responses_are_keyed_once_and_a_key_not_stored_yet_compares_the_same(store):
    """candidate_text_keys holds each response's normalized-text key after a run, the next run keys
    only new responses, and a response not keyed yet is compared by normalizing its text: the same
    identical_texts either way."""
    preferred(store, PROMPTS[0], "Chlorophyll absorbs light.", "Plants eat sun.")
    result, report = curate(store, CurateConfig(splits=NO_SPLITS))
    assert report.details["responses_keyed"] == 2 == store.count("candidate_text_keys")
    twin = preferred(store, PROMPTS[1], "Rain on tin -- autumn sings!", "rain on tin, Autumn sings.")
    assert store.scalar("SELECT identical_texts FROM pair_flags WHERE pair_id = ?", [twin]) is True  # not keyed yet
    _, again = curate(store, CurateConfig(splits=NO_SPLITS))
    assert again.details["responses_keyed"] == 2 and store.count("candidate_text_keys") == 4
    assert store.scalar("SELECT identical_texts FROM pair_flags WHERE pair_id = ?", [twin]) is True  # keyed
    assert store.scalar("SELECT count(*) FROM pair_flags WHERE identical_texts") == 1
