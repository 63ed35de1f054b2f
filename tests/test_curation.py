import pyarrow.parquet as pq

from prefcurate.core.config import CurateConfig, SplitConfig
from prefcurate.curation.export.parquet import export_curation_run
from prefcurate.curation.funnel.curate import curate
from tests.support.builders import add_call, add_candidates, add_pair, add_prompt


def make_pair(store, prompt_text="q", texts=("first", "second")):
    prompt = add_prompt(store, prompt_text)
    candidates = add_candidates(store, prompt, list(texts))
    return prompt, add_pair(store, prompt, *candidates[:2])


def judged_pairs(store, n):
    """n prompts, each with one pair whose judge calls in both orders agree."""
    for i in range(n):
        _, (pair, _, _) = make_pair(store, f"question {i}", (f"short {i}", f"a longer answer {i}"))
        add_call(store, pair, "ab", "A", p_first=0.8)
        add_call(store, pair, "ba", "B", p_first=0.3)


def labels(store):
    return {row[0]: row[1:] for row in store.con.execute(
        "SELECT pair_id, vote_label, balanced_label, position_consistent FROM pair_labels").fetchall()}


def kept(store, run_id):
    return {row[0]: row[1:] for row in store.con.execute(
        "SELECT pair_id, split, chosen_candidate FROM curated_pairs WHERE curation_run_id = ?", [run_id]).fetchall()}


def test_a_judge_that_always_answers_a_is_never_position_consistent(store):
    for i in range(5):
        _, (pair, _, _) = make_pair(store, f"prompt {i}", (f"x{i}", f"y{i}"))
        add_call(store, pair, "ab", "A")
        add_call(store, pair, "ba", "A")
    rows = labels(store)
    assert all(vote is None and not consistent for vote, _, consistent in rows.values())
    result, _ = curate(store, CurateConfig(label_rule="vote"))
    assert result.split_counts == {"train": 0, "validation": 0, "test": 0}
    bias = store.one("SELECT consistency_rate, share_first_position_verdicts FROM judge_position_bias")
    assert bias == (0.0, 1.0)


def test_consistent_verdicts_label_the_pair_and_survive_the_strict_filter(store):
    _, (pair, a, b) = make_pair(store)
    add_call(store, pair, "ab", "B")  # b shown second wins
    add_call(store, pair, "ba", "A")  # b shown first wins
    assert labels(store)[pair] == ("b", None, True)
    result, _ = curate(store, CurateConfig(label_rule="vote", require_position_consistency=True,
                                           splits=SplitConfig(validation=0.0, test=0.0)))
    assert kept(store, result.curation_run_id) == {pair: ("train", b)}


def test_balanced_labels_cancel_a_constant_position_bias(store):
    # The judge prefers the first position (P(A) high) in both orders, a bit more when a is first:
    # the votes disagree across orders, but the balanced margin still favours a.
    _, (pair, a, b) = make_pair(store, "q1", ("p", "q"))
    add_call(store, pair, "ab", "A", p_first=0.9)
    add_call(store, pair, "ba", "A", p_first=0.8)
    # Pure bias, identical in both orders: no preference at all -> a tie, which curation drops.
    _, (biased, _, _) = make_pair(store, "q2", ("r", "s"))
    add_call(store, biased, "ab", "A", p_first=0.85)
    add_call(store, biased, "ba", "A", p_first=0.85)
    rows = labels(store)
    assert rows[pair] == (None, "a", False)
    assert rows[biased][1] == "tie"
    result, _ = curate(store, CurateConfig(splits=SplitConfig(validation=0.0, test=0.0)))
    assert kept(store, result.curation_run_id) == {pair: ("train", a)}
    strict, _ = curate(store, CurateConfig(require_position_consistency=True))
    assert sum(strict.split_counts.values()) == 0


def test_invalid_calls_count_but_do_not_vote(store):
    _, (pair, a, b) = make_pair(store)
    add_call(store, pair, "ab", "A")
    add_call(store, pair, "ba", None)
    row = store.one("SELECT n_calls, n_invalid, n_votes, vote_label, position_consistent FROM pair_labels")
    assert row == (2, 1, 1, "a", False)


def test_cap_keeps_the_most_confident_pairs_per_prompt(store):
    prompt = add_prompt(store, "one prompt")
    candidates = add_candidates(store, prompt, [f"answer {i}" for i in range(5)])
    confidences = {}
    for i in range(4):
        pair, _, _ = add_pair(store, prompt, candidates[i], candidates[i + 1])
        p = 0.6 + 0.1 * i
        add_call(store, pair, "ab", "A", p_first=p)
        add_call(store, pair, "ba", "B", p_first=1 - p)
        confidences[pair] = p
    result, _ = curate(store, CurateConfig(label_rule="vote", max_pairs_per_prompt=2))
    assert set(kept(store, result.curation_run_id)) == set(sorted(confidences, key=confidences.get)[-2:])
    assert result.funnel[-1] == ("cap_2_per_prompt_by_confidence", 4, 2)


def test_splits_are_disjoint_by_prompt_and_deterministic(store):
    for i in range(60):
        prompt = add_prompt(store, f"prompt number {i}")
        candidates = add_candidates(store, prompt, [f"{i} a", f"{i} b", f"{i} c"])
        for first, second in ((0, 1), (1, 2)):
            pair, _, _ = add_pair(store, prompt, candidates[first], candidates[second])
            add_call(store, pair, "ab", "A")
            add_call(store, pair, "ba", "B")
    # "prompt number {i}" are near-duplicates of each other: deduplication would keep one
    config = CurateConfig(label_rule="vote", splits=SplitConfig(validation=0.2, test=0.3), seed=5,
                          dedup={"exact": False, "near": {"enabled": False}})
    result, report = curate(store, config)
    assert report.count_out == 120
    splits_per_prompt = store.con.execute("""
        SELECT p.prompt_id, count(DISTINCT cp.split) FROM curated_pairs cp JOIN pairs p USING (pair_id)
        WHERE curation_run_id = ? GROUP BY p.prompt_id""", [result.curation_run_id]).fetchall()
    assert len(splits_per_prompt) == 60 and all(n == 1 for _, n in splits_per_prompt)
    assert all(result.split_counts[s] > 0 for s in ("train", "validation", "test"))
    again, _ = curate(store, config)
    assert again.curation_run_id == result.curation_run_id and not again.is_new
    other_seed, _ = curate(store, config.model_copy(update={"seed": 6}))
    assert other_seed.curation_run_id != result.curation_run_id
    assert store.count("curation_runs") == 0  # curate() alone records only pairs and funnel
    assert store.scalar("SELECT count(DISTINCT curation_run_id) FROM curated_pairs") == 2


def test_export_round_trips_through_datasets_and_is_byte_identical(store, tmp_path):
    import datasets

    judged_pairs(store, 30)
    result, _ = curate(store, CurateConfig(splits=SplitConfig(validation=0.2, test=0.2),
                                           dedup={"near": {"enabled": False}}))  # templated prompts
    first = export_curation_run(store, result.curation_run_id, tmp_path / "one", {})
    second = export_curation_run(store, result.curation_run_id, tmp_path / "two", {})
    written = sorted(p.name for p in first.glob("*.parquet"))
    assert written
    for name in written:
        assert (first / name).read_bytes() == (second / name).read_bytes()

    loaded = datasets.load_dataset("parquet", data_files={p.stem: str(p) for p in first.glob("*.parquet")})
    assert sum(len(split) for split in loaded.values()) == 30
    row = loaded["train"][0]
    assert {"prompt", "chosen", "rejected"} <= set(row)
    assert row["prompt"].startswith("question") and row["chosen"] != row["rejected"]
    assert pq.read_schema(first / "train.parquet").field("prompt").type == "string"


def test_an_export_that_cannot_write_says_why_and_leaves_the_connection_usable(store, tmp_path):
    """The split's reader is closed when its file cannot be written: left open, it held the
    connection, and dropping the staged rows after raised "connection has an open result" instead
    of the error that stopped the export."""
    import pytest

    from prefcurate.curation.export.parquet import curation_run_rows

    judged_pairs(store, 6)
    result, _ = curate(store, CurateConfig(splits=SplitConfig(validation=0.0, test=0.0),
                                           dedup={"near": {"enabled": False}}))
    (tmp_path / "out" / result.curation_run_id[:16] / "train.parquet").mkdir(parents=True)  # a folder in the way
    with pytest.raises(OSError, match="train.parquet"):
        with curation_run_rows(store, result.curation_run_id) as rows:
            export_curation_run(store, result.curation_run_id, tmp_path / "out", {}, rows)
    assert store.con.execute("SELECT count(*) FROM curated_pairs").fetchone() == (6,)


def test_an_export_staged_in_prompt_ranges_holds_the_views_rows_in_row_groups_of_fixed_size(store, tmp_path,
                                                                                            monkeypatch):
    """A large run is staged in ranges of prompt_id and its splits written from one sorted read in
    row groups of BATCH_ROWS: here many ranges and row groups of 7 rows, against each split read
    straight from the view."""
    from prefcurate.curation.export import parquet
    from prefcurate.curation.export.parquet import EXPORT_SCHEMA, curation_run_rows

    judged_pairs(store, 40)
    result, _ = curate(store, CurateConfig(splits=SplitConfig(validation=0.2, test=0.2),
                                           dedup={"near": {"enabled": False}}))
    monkeypatch.setattr(parquet, "MEMORY_PER_TEXT_BYTE", 10 ** 12)  # a range per few rows
    monkeypatch.setattr(parquet, "BATCH_ROWS", 7)
    assert len(parquet.prompt_ranges(store, result.curation_run_id)) > 10
    with curation_run_rows(store, result.curation_run_id) as rows:
        out = export_curation_run(store, result.curation_run_id, tmp_path, {}, rows)
    for split, n in result.split_counts.items():
        expected = store.con.sql(f"SELECT {', '.join(EXPORT_SCHEMA.names)} FROM curated_pairs_export "
                                 f"WHERE curation_run_id = '{result.curation_run_id}' AND split = '{split}' "
                                 "ORDER BY pair_id").to_arrow_table().cast(EXPORT_SCHEMA)
        if n == 0:
            assert not (out / f"{split}.parquet").exists()
            continue
        written = pq.ParquetFile(out / f"{split}.parquet")
        assert written.read().equals(expected) and expected.num_rows == n
        groups = [written.metadata.row_group(g).num_rows for g in range(written.metadata.num_row_groups)]
        assert groups == [7] * (n // 7) + ([n % 7] if n % 7 else [])
    assert sum(result.split_counts.values()) == 40


def test_prompt_ranges_put_every_prompt_id_in_exactly_one_range():
    """Any id, hex hash or not, empty or not, falls in one range of any count (the staged export
    would drop or repeat its rows otherwise)."""
    import duckdb
    from hypothesis import given, settings, strategies as st

    from prefcurate.curation.export.parquet import range_conditions

    con = duckdb.connect()

    @settings(max_examples=150, deadline=None)
    @given(st.integers(min_value=1, max_value=256),
           st.lists(st.one_of(st.text(max_size=40), st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)),
                    min_size=1, max_size=20))
    def one_range_each(n, ids):
        conditions = range_conditions(n)
        assert len(conditions) == n
        held = con.execute(f"SELECT {' + '.join(f'({c})::INT' for c in conditions)} "
                           "FROM unnest(?::VARCHAR[]) AS t(prompt_id)", [ids]).fetchall()
        assert [row[0] for row in held] == [1] * len(ids)

    one_range_each()


def test_memory_limits_are_read_as_duckdb_words_them():
    import duckdb

    from prefcurate.curation.export.parquet import size_bytes

    assert size_bytes("1.8 GiB") == int(1.8 * 2 ** 30) and size_bytes("476.8 MiB") == int(476.8 * 2 ** 20)
    assert size_bytes("2GB") == 2 * 10 ** 9 and size_bytes("512 bytes") == 512
    for limit in ("2GB", "500MB", "1TB", "100KB"):  # what DuckDB itself says for each
        said = duckdb.connect(config={"memory_limit": limit}).execute("SELECT current_setting('memory_limit')").fetchone()[0]
        assert abs(size_bytes(said) - size_bytes(limit)) <= 0.06 * size_bytes(limit), said
    assert size_bytes("unlimited") == size_bytes("") == 2 ** 62  # unread: the run staged at once
