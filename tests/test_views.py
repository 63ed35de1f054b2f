"""The views data engineers query: each column documented beside its view, files named by layer,
and the label of a pair (human > import > judges, under both rules) derived in one place."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from prefcurate.core.config import CurateConfig
from prefcurate.curation.labels import LABEL_RULES, PER_RULE_COLUMNS, labelled_pairs
from tests.support.builders import add_call, add_candidates, add_pair, add_prompt

VIEWS = Path(__file__).resolve().parent.parent / "sql" / "views"
LAYERS = ("raw", "label", "curated", "report")
_CREATE = re.compile(r"^CREATE OR REPLACE VIEW (\w+) AS", re.MULTILINE)
# A column line: `--   name[, name ...]  what it holds`; `--   * other_view` documents all of another view's columns.
_COLUMN_LINE = re.compile(r"^--\s{2,}([a-z_]\w*(?:,\s*[a-z_]\w*)*)(?:,)?(?:\s{2,}|$)")
_INCLUDES = re.compile(r"^--\s{2,}\*\s+(\w+)")


def view_docs() -> dict[str, tuple[str, set[str], set[str]]]:
    """view -> (file, documented columns, views whose columns it includes), from the comment block
    right above each CREATE."""
    docs = {}
    for path in sorted(VIEWS.glob("*.sql")):
        text = path.read_text()
        for match in _CREATE.finditer(text):
            block = []
            for line in reversed(text[:match.start()].rstrip("\n").split("\n")):
                if not line.startswith("--"):
                    break
                block.append(line)
            names = {name.strip() for line in block if (m := _COLUMN_LINE.match(line)) for name in m.group(1).split(",")}
            includes = {m.group(1) for line in block if (m := _INCLUDES.match(line))}
            docs[match.group(1)] = (path.name, names, includes)
    return docs


def test_every_view_documents_every_column_beside_it(store):
    docs = view_docs()
    stored = {row[0] for row in store.con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert stored == set(docs)
    undocumented = {}
    for view, (path, names, includes) in docs.items():
        columns = {row[0] for row in store.con.execute(f"DESCRIBE {view}").fetchall()}
        for other in includes:
            names |= {row[0] for row in store.con.execute(f"DESCRIBE {other}").fetchall()}
        if columns - names:
            undocumented[f"{path}: {view}"] = sorted(columns - names)
    assert undocumented == {}


def test_every_label_rule_of_the_config_has_its_columns_in_the_view(store):
    assert set(get_args(CurateConfig.model_fields["label_rule"].annotation)) == set(LABEL_RULES)
    columns = {row[0] for row in store.con.execute("DESCRIBE labelled_pairs").fetchall()}
    assert {f"{column}_by_{rule}" for rule in LABEL_RULES for column in PER_RULE_COLUMNS} <= columns


def test_view_files_are_named_by_their_layer():
    for path in VIEWS.glob("*.sql"):
        order, layer = path.stem.split("_")[:2]
        assert order.isdigit() and (layer in LAYERS or path.stem == "05_macros"), path.name


@pytest.fixture
def pair(store):
    """One pair with two judge calls in both orders that prefer a (logprobs: balanced label a)."""
    prompt = add_prompt(store, "Which is better?")
    key, _a, _b = add_pair(store, prompt, *add_candidates(store, prompt, ["First answer.", "Second answer."]))
    add_call(store, key, "ab", "A", p_first=0.8)
    add_call(store, key, "ba", "B", p_first=0.3)
    return key


def label_of(store, key: str, rule: str) -> tuple:
    return store.one(f"SELECT label, label_source, confidence FROM ({labelled_pairs(CurateConfig(label_rule=rule))}) WHERE pair_id = ?", [key])


def test_labels_follow_the_precedence_human_then_import_then_judges(store, pair):
    label, source, confidence = label_of(store, pair, "balanced")
    assert (label, source) == ("a", "balanced") and confidence == pytest.approx(1 / (1 + (0.8 / 0.2 * 0.7 / 0.3) ** -0.5))
    assert label_of(store, pair, "vote")[:2] == ("a", "vote")

    store.con.execute("INSERT INTO reference_labels (reference_label_id, pair_id, winner, dataset, dataset_format) "
                      "VALUES ('r1', ?, 'b', 'gold.jsonl', 'plain')", [pair])
    assert label_of(store, pair, "balanced") == ("b", "import", None)

    for index, winner in enumerate(("tie", "tie", "a")):
        store.con.execute("INSERT INTO annotations (annotation_id, pair_id, annotator, winner, status) "
                          "VALUES (?, ?, ?, ?, 'submitted')", [f"h{index}", pair, f"ann{index}", winner])
    assert label_of(store, pair, "vote") == ("tie", "human", pytest.approx(2 / 3))
    # the judges' own label stays readable beside it, as annotation push and annotator_quality read it
    judge_label = store.one(f"SELECT judge_label, judge_confidence FROM ({labelled_pairs(CurateConfig())}) "
                            "WHERE pair_id = ?", [pair])
    assert judge_label[0] == "a" and judge_label[1] > 0.5


def test_the_balanced_rule_falls_back_to_the_vote_without_logprobs(store):
    prompt = add_prompt(store, "No logprobs here")
    key, _a, _b = add_pair(store, prompt, *add_candidates(store, prompt, ["One.", "Two."]))
    add_call(store, key, "ab", "B")
    add_call(store, key, "ba", "A")  # b both times, no probabilities
    assert label_of(store, key, "balanced")[:2] == ("b", "vote")
    with pytest.raises(ValueError, match="unknown label rule"):
        labelled_pairs(CurateConfig.model_construct(label_rule="majority; DROP TABLE pairs",
                                                    label_precedence=["verifier", "human", "import", "judges"]))


def test_a_majority_label_s_confidence_is_lowered_by_dissent_in_both_views_alike(store):
    """One definition of a vote label's confidence (issue 24, item 4): pair_labels and
    judge_pair_verdicts used to disagree (the votes' mean confidence alone vs. times their share)."""
    prompt = add_prompt(store, "Which is better?")
    first, second = add_candidates(store, prompt, ["One answer.", "Another answer."])
    pair, _, _ = add_pair(store, prompt, first, second)
    for principle, (order, verdict) in enumerate([("ab", "A"), ("ba", "B"), ("ab", "A"), ("ab", "B")]):
        add_call(store, pair, order, verdict, principle=f"p{principle}")  # 3 votes for a, 1 for b, no confidences
    vote = store.one("SELECT vote_label, vote_confidence FROM pair_labels WHERE pair_id = ?", [pair])
    judge = store.one("SELECT label, confidence FROM judge_pair_verdicts WHERE pair_id = ?", [pair])
    assert vote == judge == ("a", pytest.approx(0.75))


def test_the_label_follows_the_precedence_it_is_read_under_and_the_view_the_latest_run_s(store, tmp_path):
    """The label is a function of curate.label_precedence, passed where it is read (issue 24, item 3);
    the labelled_pairs view answers under the precedence of the latest curation run."""
    import json

    prompt = add_prompt(store, "Which one?")
    key, _a, _b = add_pair(store, prompt, *add_candidates(store, prompt, ["First.", "Second."]))
    add_call(store, key, "ab", "A")
    add_call(store, key, "ba", "B")  # the judges say a
    store.con.execute("INSERT INTO reference_labels (reference_label_id, pair_id, winner, source, dataset, dataset_format) "
                      "VALUES ('r', ?, 'b', 'import', 'd', 'plain')", [key])  # an imported label says b
    import_first, judges_first = CurateConfig(), CurateConfig(label_precedence=["judges", "verifier", "human", "import"])
    read = "SELECT label, label_source FROM ({}) WHERE pair_id = ?"
    assert store.one(read.format(labelled_pairs(import_first)), [key]) == ("b", "import")
    assert store.one(read.format(labelled_pairs(judges_first)), [key]) == ("a", "vote")
    view = "SELECT label_by_vote FROM labelled_pairs WHERE pair_id = ?"
    assert store.one(view, [key]) == ("b",)  # no curation run yet: the default precedence
    store.con.execute("INSERT INTO curation_runs (curation_run_id, config, output_dir, manifest_path, counts) "
                      "VALUES ('c', ?, 'o', 'm', '{}')", [json.dumps(judges_first.model_dump(mode="json"))])
    assert store.one(view, [key]) == ("a",)
