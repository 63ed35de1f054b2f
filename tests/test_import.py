"""Importing existing preference datasets as labelled pairs."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefcurate.core.config import CurateConfig
from prefcurate.curation.funnel.curate import curate
from prefcurate.curation.intake.preference_pairs import import_preference_pairs
from tests.support.inputs import write_jsonl

HH_CHOSEN = ("\n\nHuman: What is the capital of France?\n\nAssistant: Paris.\n\nHuman: And of Italy?"
             "\n\nAssistant: Rome is the capital of Italy.")
HH_REJECTED = ("\n\nHuman: What is the capital of France?\n\nAssistant: Paris.\n\nHuman: And of Italy?"
               "\n\nAssistant: Milan.")


def labelled(store):
    return store.con.execute("""
        SELECT pr.text, pr.messages, ch.text AS chosen, rj.text AS rejected, r.dataset_format
        FROM reference_labels r JOIN pairs p USING (pair_id) JOIN prompts pr USING (prompt_id)
        JOIN candidates ch ON ch.candidate_id = CASE r.winner WHEN 'a' THEN p.candidate_a ELSE p.candidate_b END
        JOIN candidates rj ON rj.candidate_id = CASE r.winner WHEN 'a' THEN p.candidate_b ELSE p.candidate_a END
        ORDER BY r.source_row""").fetchall()


def test_plain_hh_and_sharegpt_rows_become_oriented_pairs(store, tmp_path):
    rows = [
        {"prompt": "Name a prime.", "chosen": "7 is prime.", "rejected": "9 is prime."},
        {"chosen": HH_CHOSEN, "rejected": HH_REJECTED},
        {"conversations": [{"from": "human", "value": "Say hi politely."}],
         "chosen": {"from": "gpt", "value": "Hello, nice to meet you."}, "rejected": {"from": "gpt", "value": "hi"}},
        {"chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
         "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]},
    ]
    report = import_preference_pairs(store, str(write_jsonl(tmp_path / "prefs.jsonl", rows)))
    assert report.count_in == 4 and report.count_out == 4
    assert report.details["shapes"] == {"plain": 1, "hh": 1, "messages": 2}
    got = labelled(store)
    assert [(text, chosen, rejected, shape) for text, _, chosen, rejected, shape in got] == [
        ("Name a prime.", "7 is prime.", "9 is prime.", "plain"),
        ("User: What is the capital of France?\n\nAssistant: Paris.\n\nUser: And of Italy?",
         "Rome is the capital of Italy.", "Milan.", "hh"),
        ("Say hi politely.", "Hello, nice to meet you.", "hi", "messages"),
        ("2+2?", "4", "5", "messages"),
    ]
    # the multi-turn context is kept as messages for chat templates
    assert json.loads(got[1][1])[-1] == {"role": "user", "content": "And of Italy?"}
    assert got[0][1] is None
    again = import_preference_pairs(store, str(tmp_path / "prefs.jsonl"))
    assert again.details["new_pairs"] == 0 and again.details["new_reference_labels"] == 0
    assert store.count("reference_labels") == 4 and store.count("candidates") == 8


def test_bad_rows_are_rejected_with_row_field_and_reason(store, tmp_path):
    rows = [
        {"prompt": "ok?", "chosen": "yes", "rejected": "no"},
        {"prompt": "missing rejected", "chosen": "x"},
        {"prompt": "same", "chosen": "identical", "rejected": "identical"},
        {"chosen": "no transcript", "rejected": "here"},
        {"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
         "rejected": [{"role": "user", "content": "DIFFERENT"}, {"role": "assistant", "content": "c"}]},
        {"prompt": "ok?", "chosen": "no", "rejected": "yes"},  # contradicts row 1
        {"prompt": "", "chosen": "a", "rejected": "b"},
    ]
    path = str(write_jsonl(tmp_path / "bad.jsonl", rows))
    report = import_preference_pairs(store, path, max_reject_share=1.0)  # 6 of 7 bad on purpose
    assert report.count_out == 1 and report.details["rejected"] == 6
    rejects = store.con.execute("SELECT source_row, field, reason FROM rejects WHERE stage = 'import' "
                                "ORDER BY source_row").fetchall()
    assert [(row, field) for row, field, _ in rejects] == [
        (2, "rejected"), (3, "rejected"), (4, "prompt"), (5, "rejected"), (6, "chosen"), (7, "prompt")]
    reasons = [reason for _, _, reason in rejects]
    assert reasons[0].startswith("missing field; the row has ['chosen', 'prompt']")
    assert "identical" in reasons[1] and "HH-RLHF" in reasons[2]
    assert "differ before the last answer" in reasons[3] and "contradicts row 1" in reasons[4]


def test_imported_labels_curate_as_training_data_from_parquet(store, tmp_path):
    table = pa.Table.from_pylist([{"prompt": f"Question {i}?", "chosen": f"Good answer {i}.", "rejected": f"Bad {i}."}
                                  for i in range(20)])
    pq.write_table(table, tmp_path / "prefs.parquet")
    import_preference_pairs(store, str(tmp_path / "prefs.parquet"))
    result, _ = curate(store, CurateConfig(min_confidence=0.5, require_position_consistency=True,
                                           dedup={"near": {"enabled": False}}))  # "Question {i}?" are near-duplicates
    assert sum(result.split_counts.values()) == 20  # judge filters do not apply to imported labels
    sources = store.con.execute("SELECT DISTINCT label_source FROM curated_pairs").fetchall()
    assert sources == [("import",)]
    chosen = store.con.execute("SELECT chosen FROM curated_pairs_export").fetchall()
    assert all(text.startswith("Good") for (text,) in chosen)


def test_an_unreadable_source_is_refused_before_anything_is_written(store, tmp_path):
    from prefcurate.curation.intake.sources import IngestError

    with pytest.raises(IngestError, match="file not found"):
        import_preference_pairs(store, str(tmp_path / "missing.jsonl"))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(IngestError, match="empty"):
        import_preference_pairs(store, str(tmp_path / "empty.jsonl"))
    assert store.count("pairs") == 0


def test_multi_turn_context_reaches_the_export_and_the_reward_model_input(store, tmp_path, tiny_model_dir):
    import datasets
    from transformers import AutoTokenizer

    from prefcurate.curation.export.parquet import export_curation_run
    from prefcurate.rm.data import encode_pairs

    rows = [{"chosen": HH_CHOSEN.replace("Italy", f"country {i}"), "rejected": HH_REJECTED.replace("Italy", f"country {i}")}
            for i in range(12)]
    import_preference_pairs(store, str(write_jsonl(tmp_path / "hh.jsonl", rows)))
    result, _ = curate(store, CurateConfig(dedup={"near": {"enabled": False}}))  # the rows are near-duplicates
    out = export_curation_run(store, result.curation_run_id, tmp_path / "curated", {})
    train = datasets.load_dataset("parquet", data_files={"train": str(out / "train.parquet")})["train"]
    conversation = json.loads(train[0]["prompt_messages"])
    assert [m["role"] for m in conversation] == ["user", "assistant", "user"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoded = encode_pairs(tokenizer, train, max_length=512)
    rendered = tokenizer.decode(encoded.chosen[0])
    assert "capital of France" in rendered and "Paris." in rendered and "Rome is the capital" in rendered


def test_the_shipped_hh_rlhf_pairs_import_as_gold_with_their_bad_rows_as_rejects(store):
    """Real human preferences nobody on the project wrote (prefcurate/data/hh-rlhf-harmless), read
    compressed as they ship."""
    import gzip
    import json

    from prefcurate.curation.intake.preference_pairs import import_preference_pairs
    from prefcurate.curation.intake.shipped import hh_harmless_pairs_path

    path = hh_harmless_pairs_path()
    report = import_preference_pairs(store, str(path))
    assert report.count_in == 1465 and report.count_out == 1459
    reasons = store.con.execute("SELECT source_row, reason FROM rejects ORDER BY source_row").fetchall()
    assert [row for row, _ in reasons] == [53, 314, 690, 796, 1243, 1298]
    assert {reason for _, reason in reasons} == {"empty response",
                                                "chosen and rejected transcripts differ before the last answer"}
    # Every stored label names the transcript's chosen answer, in the pair's orientation.
    first = json.loads(gzip.open(path, "rt").readline())
    chosen = first["chosen"].rsplit("\n\nAssistant:", 1)[1].strip()
    row = store.one("SELECT CASE r.winner WHEN 'a' THEN t.text_a ELSE t.text_b END FROM reference_labels r "
                    "JOIN pair_texts t USING (pair_id) WHERE r.source_row = 1")
    assert row[0].strip() == chosen
