"""Reading rating and ranking answers, by class (property-based): a rating is read only when every
aspect has one whole score on the scale, a ranking only when it names every response once, and no
strict prefix of an answer is read unless the server cut it, and then only as the judge meant it."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from prefcurate.curation.judging.score_answers import (
    Unreadable,
    aspect_distributions,
    parse_ranking,
    parse_ratings,
    score_distribution,
)

ASPECTS = ["helpfulness", "honesty", "instruction_following"]
LOW, HIGH = 1, 5

scores = st.fixed_dictionaries({aspect: st.integers(LOW, HIGH) for aspect in ASPECTS})


def rating_json(values: dict) -> str:
    return json.dumps({"scores": values})


def rating_text(values: dict) -> str:
    return "\n".join(f"{aspect}: {score}" for aspect, score in values.items())


@given(scores, st.sampled_from(["json_schema", "text"]))
def test_a_whole_rating_on_the_scale_reads_back_as_written(values, output_format):
    text = rating_json(values) if output_format == "json_schema" else rating_text(values)
    assert parse_ratings(text, output_format, ASPECTS, LOW, HIGH) == values


@given(scores, st.sampled_from(ASPECTS), st.one_of(st.integers(-3, 0), st.integers(6, 40),
                                                   st.floats(1.1, 4.9).filter(lambda x: x != int(x))))
def test_a_score_off_the_scale_or_not_whole_is_never_read(values, aspect, bad):
    values = {**values, aspect: bad}
    for output_format, text in (("json_schema", rating_json(values)), ("text", rating_text(values))):
        read = parse_ratings(text, output_format, ASPECTS, LOW, HIGH)
        assert isinstance(read, Unreadable) and read.kind in ("off_scale", "unparseable"), (text, read)


@given(scores, st.sampled_from(ASPECTS))
def test_a_missing_aspect_is_never_read(values, aspect):
    del values[aspect]
    for output_format, text in (("json_schema", rating_json(values)), ("text", rating_text(values))):
        assert isinstance(parse_ratings(text, output_format, ASPECTS, LOW, HIGH), Unreadable)


@settings(max_examples=60)
@given(scores, st.sampled_from(["json_schema", "text"]), st.data())
def test_no_strict_prefix_of_a_rating_is_read_unless_cut_and_then_only_as_meant(values, output_format, data):
    text = rating_json(values) if output_format == "json_schema" else rating_text(values)
    cut_at = data.draw(st.integers(1, len(text) - 1))
    prefix = text[:cut_at]
    assert isinstance(parse_ratings(prefix, output_format, ASPECTS, LOW, HIGH), Unreadable) or \
        (output_format == "text" and prefix.rstrip() == text.rstrip())  # only the trailing newline was cut
    read = parse_ratings(prefix, output_format, ASPECTS, LOW, HIGH, cut=True)
    assert isinstance(read, Unreadable) or read == values


letters = st.integers(2, 8).map(lambda n: [chr(ord("A") + i) for i in range(n)])


@given(letters.flatmap(lambda labels: st.tuples(st.just(labels), st.permutations(labels))),
       st.sampled_from(["json_schema", "text"]))
def test_a_permutation_reads_back_as_written(labels_and_ranking, output_format):
    labels, ranking = labels_and_ranking
    text = json.dumps({"ranking": ranking}) if output_format == "json_schema" else " > ".join(ranking)
    assert parse_ranking(text, output_format, labels) == list(ranking)


@given(letters.flatmap(lambda labels: st.tuples(st.just(labels), st.lists(st.sampled_from(labels + ["Z"]),
                                                                          max_size=10))),
       st.sampled_from(["json_schema", "text"]))
def test_anything_but_a_permutation_is_a_bad_ranking(labels_and_items, output_format):
    labels, items = labels_and_items
    if sorted(items) == sorted(labels):
        return
    text = json.dumps({"ranking": items}) if output_format == "json_schema" else " > ".join(items)
    read = parse_ranking(text, output_format, labels)
    assert isinstance(read, Unreadable), (text, read)


@given(st.dictionaries(st.sampled_from(["1", "2", "3", "4", "5", " 3", "x"]), st.floats(-8, 0), min_size=1))
def test_a_score_distribution_is_a_distribution_over_the_scale(alternatives):
    distribution = score_distribution(alternatives, LOW, HIGH)
    if distribution is None:
        assert not any(token.strip() in "12345" and token.strip() for token in alternatives)
        return
    assert abs(sum(distribution.probs.values()) - 1) < 1e-9
    assert LOW <= distribution.expected <= HIGH and distribution.sd >= 0


def test_log_probabilities_are_read_at_the_token_that_wrote_each_score():
    tokens = [('{"scores": {', {}), ('"helpfulness": ', {}), ("4", {"4": -0.1, "5": -2.4, "3": -3.0}),
              (', "honesty": ', {}), ("2", {"2": -0.05, "1": -3.0}), ("}}", {})]
    found = aspect_distributions(tokens, ["helpfulness", "honesty"], {"helpfulness": 4, "honesty": 2}, LOW, HIGH)
    assert set(found) == {"helpfulness", "honesty"}
    assert 3.9 < found["helpfulness"].expected < 4.1 and found["honesty"].expected < 2.0
    # a digit that is not the stated score (the probabilities were read elsewhere) gives none
    assert aspect_distributions(tokens, ["helpfulness"], {"helpfulness": 5}, LOW, HIGH) == {}


def test_a_ranking_may_name_the_responses_by_their_block_names():
    assert parse_ranking("RESPONSE_B > RESPONSE_A", "text", ["A", "B"]) == ["B", "A"]
    assert parse_ranking('{"ranking": ["RESPONSE_B", "Response A"]}', "json_schema", ["A", "B"]) == ["B", "A"]


def test_an_aspect_whose_name_ends_another_is_not_read_at_the_others_token():
    tokens = [("helpful-complete: ", {}), ("4", {"4": -0.1, "3": -2.4}), ("\ncomplete: ", {}), ("4", {"4": -0.5, "5": -1.0})]
    found = aspect_distributions(tokens, ["complete", "helpful-complete"], {"complete": 4, "helpful-complete": 4}, 1, 5)
    assert found["helpful-complete"].expected < 4 < found["complete"].expected
