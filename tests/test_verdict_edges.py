"""A broken answer is never a verdict (issue 23, item 2): an answer the server calls complete must
parse under the requested format; one cut at the token limit may be read, and says so; both as
properties over generated answers and through the judge stage against the suite's server."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefcurate.core.config import CurateConfig
from prefcurate.core.stage_report import StageFailed
from prefcurate.curation.funnel.curate import curate
from prefcurate.curation.judging.verdicts import (
    JSON_FORMATS,
    answer_completeness,
    parse_self_confidence,
    parse_verdict,
)
from tests.support.judging import add_judgeable_pairs, judge_config, run_judge
from tests.support.openai_server import Behaviour, OpenAICompatServer

BROKEN = '{"winner": "A", "confidence": '


def test_an_unclosed_json_answer_the_server_calls_complete_is_invalid():
    verdict, reason = parse_verdict(BROKEN, "json_schema")
    assert verdict is None and "malformed JSON in an answer the server calls complete" in reason
    assert parse_verdict(BROKEN, "text")[0] is None  # whatever format was asked


def test_a_json_answer_cut_at_the_token_limit_is_read_and_its_cut_confidence_is_not():
    assert parse_verdict(BROKEN, "json_schema", cut=True) == ("A", None)
    assert parse_self_confidence('{"verdict": "A", "confidence": 0.', cut=True) is None
    assert parse_self_confidence('{"verdict": "A", "confidence": 0.85', cut=True) is None  # maybe 0.857
    assert parse_self_confidence('{"verdict": "A", "confidence": 0.85, "rea', cut=True) == 0.85
    assert parse_self_confidence("A\nConfidence: 8", cut=True) is None
    assert parse_self_confidence("A\nConfidence: 80", cut=False) == 0.8


def test_prose_under_a_json_format_is_not_a_verdict():
    verdict, reason = parse_verdict("A", "json_object")
    assert verdict is None and "not JSON, under the requested json_object format" in reason
    assert parse_verdict("A", "text") == ("A", None)
    assert parse_verdict('```json\n{"verdict": "B"}\n```', "json_schema") == ("B", None)  # fenced JSON is JSON


@pytest.mark.parametrize("finish_reason, cut, unfinished", [
    ("stop", False, False), (None, False, False), ("length", True, False), ("choice", False, False),
    ("content_filter", False, True), ("tool_calls", False, True),
])
def test_the_finish_reason_says_whether_an_answer_is_whole(finish_reason, cut, unfinished):
    assert answer_completeness(finish_reason)[0] is cut
    assert (answer_completeness(finish_reason)[1] is not None) is unfinished


# -- properties ---------------------------------------------------------------------------------------

VERDICT = st.sampled_from(["A", "B", "tie"])
FORMAT = st.sampled_from(["text", *JSON_FORMATS])


@st.composite
def json_answers(draw) -> tuple[str, str]:
    """A complete JSON verdict answer, as judges write them, and its verdict."""
    verdict = draw(VERDICT)
    key = draw(st.sampled_from(["verdict", "winner", "choice"]))
    fields = {key: verdict, "confidence": draw(st.floats(0, 1)), "reason": draw(st.text(max_size=40))}
    order = draw(st.permutations(list(fields)))
    return json.dumps({name: fields[name] for name in order}), verdict


@settings(max_examples=300, deadline=None)
@given(json_answers(), st.data(), FORMAT)
def test_no_strict_prefix_of_a_json_answer_is_a_verdict_unless_cut(answer, data, output_format):
    text, verdict = answer
    cut_at = data.draw(st.integers(1, len(text) - 1))
    prefix = text[:cut_at]
    assert parse_verdict(prefix, output_format)[0] is None  # the server called it complete: broken
    read, _ = parse_verdict(prefix, output_format, cut=True)
    assert read in (None, verdict)  # cut: what is read is what the judge wrote, or nothing
    assert parse_verdict(text, output_format) == (verdict, None)  # the whole answer is read


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=120), st.sampled_from(JSON_FORMATS))
def test_under_a_json_format_only_a_json_object_with_a_verdict_field_is_a_verdict(text, output_format):
    verdict, reason = parse_verdict(text, output_format)
    if verdict is not None:
        body = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
        payload = json.loads(body)
        assert isinstance(payload, dict) and any(
            str(payload.get(key, "")).strip().lower() == verdict.lower() for key in ("verdict", "winner", "choice",
                                                                                      "preference", "answer"))
    else:
        assert reason


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=80), FORMAT, st.booleans())
def test_the_parser_never_raises_and_always_gives_a_reason_for_no_verdict(text, output_format, cut):
    verdict, reason = parse_verdict(text, output_format, cut=cut)
    assert (verdict is None) != (reason is None) and verdict in (None, "A", "B", "tie")
    confidence = parse_self_confidence(text, cut=cut)
    assert confidence is None or 0 <= confidence <= 1


# -- through the judge stage --------------------------------------------------------------------------

def test_unclosed_answers_with_finish_stop_are_stored_invalid_never_as_verdicts(store):
    """The issue's repro: every answer is `{"winner": "A", "confidence": ` with finish_reason stop;
    64 of 64 were stored as valid verdicts "A". Now none is, and a judge with no valid verdict fails
    the stage (exit 1), its answers stored with the reason."""
    add_judgeable_pairs(store, 8)
    with OpenAICompatServer(Behaviour(script=["unclosed"] * 64)) as server:
        with pytest.raises(StageFailed, match="gave no valid verdict in 16 calls"):
            run_judge(store, judge_config(server, members=[{"output_format": "json_schema"}]))
    rows = store.con.execute("SELECT valid, error_kind, invalid_reason FROM judgments").fetchall()
    assert len(rows) == 16 and not any(valid for valid, _, _ in rows)
    assert {kind for _, kind, _ in rows} == {"unparseable"}


def test_verdicts_read_from_cut_answers_are_marked_counted_and_can_be_dropped(store, tmp_path):
    pairs = add_judgeable_pairs(store, 8)
    # the first pair's two calls are cut after the verdict; the rest answer whole
    with OpenAICompatServer(Behaviour(script=["cut_after_verdict"] * 2)) as server:
        run_judge(store, judge_config(server, members=[{"output_format": "json_schema"}], principle_sampling="random",
                                      principles_per_pair=1))
    cut = store.con.execute("SELECT pair_id, valid, cut_answer, self_confidence FROM judgments WHERE cut_answer"
                            ).fetchall()
    assert len(cut) == 2 and all(valid and confidence is None for _, valid, _, confidence in cut)
    assert store.scalar("SELECT n_cut_verdicts FROM judge_quality") == 2
    cut_pairs = {pair_id for pair_id, *_ in cut}
    kept = _curated_pairs(store, CurateConfig())
    dropped = _curated_pairs(store, CurateConfig(cut_verdicts="drop"))
    assert cut_pairs <= kept and kept - dropped == cut_pairs and len(pairs) == 8


def _curated_pairs(store, config: CurateConfig) -> set[str]:
    result, _ = curate(store, config)
    return {row[0] for row in store.con.execute("SELECT pair_id FROM curated_pairs WHERE curation_run_id = ?",
                                                [result.curation_run_id]).fetchall()}


def test_a_local_model_s_closed_answers_are_whole_verdicts(store, tiny_model_dir):
    """The transformers backend answers a closed question with the likeliest choice
    (finish_reason "choice"): a whole answer, read as the verdict (the main job judges this way)."""
    from prefcurate.core.config import JudgeConfig

    add_judgeable_pairs(store, 2)
    report = run_judge(store, JudgeConfig(panel=[{"backend": {"kind": "transformers", "model": str(tiny_model_dir)}}]))
    rows = store.con.execute("SELECT valid, output_format, cut_answer FROM judgments").fetchall()
    assert len(rows) == 4 and all(valid and fmt == "choices" and not cut for valid, fmt, cut in rows)
    assert report.details["valid"] == 4
