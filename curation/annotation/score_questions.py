"""What annotators see in rating and ranking mode: one prompt per record with up to K responses in
slots response_1..response_K, a rating question per slot and aspect, or one ranking over the slots.
The names here tie an answer back to its slot, and so (through the record's metadata) to its candidate.
"""

from __future__ import annotations

import re

import argilla as rg

from prefcurate.core.config import ArgillaConfig

RANKING_QUESTION = "ranking"
_SLOT = re.compile(r"^response_(\d+)$")

RATING_GUIDELINES = """\
## How good is each response?

Read the prompt, then rate every response on its own, on the scale shown (higher is better):
correct first, then helpful and complete, then clear. Length is not quality. The responses come in
a shuffled order; rate each one as if it were the only one.

- **Discard** a record you cannot judge (unreadable, outside your expertise, broken prompt).
"""

RANKING_GUIDELINES = """\
## Which responses are best?

Read the prompt and every response, then rank them: 1 for the best. Give two responses the same
rank only when neither is better. Correct first, then helpful and complete, then clear; length is
not quality. The responses come in a shuffled order.

- **Discard** a record you cannot judge (unreadable, outside your expertise, broken prompt).
"""


def response_field(slot: int) -> str:
    """The field that shows the slot-th response (1-based)."""
    return f"response_{slot}"


def slot_of(field: str) -> int | None:
    """The slot a response field (or ranking option) names; None for anything else."""
    match = _SLOT.match(field)
    return int(match.group(1)) if match else None


def rating_question(aspect: str, slot: int) -> str:
    return f"{aspect}_{slot}"


def rating_scales(settings: rg.Settings) -> dict[str, tuple[int, int]]:
    """{rating question: (lowest, highest) value} as the dataset asks them (not as the config may say now)."""
    return {question.name: (min(question.values), max(question.values))
            for question in settings.questions if isinstance(question, rg.RatingQuestion)}


def score_settings(config: ArgillaConfig) -> rg.Settings:
    """The rating or ranking dataset's fields, questions and (hidden) metadata, for config.label_mode.

    Slots beyond the first two are optional in rating mode, so a prompt with fewer distinct
    candidates than K still fits; a ranking always fills every slot (Argilla has every option ranked).
    """
    k = config.responses_per_record
    ranking = config.label_mode == "ranking"

    def required(slot: int) -> bool:
        return ranking or slot <= 2

    fields = [rg.TextField(name="prompt", title="Prompt", use_markdown=True)]
    fields += [rg.TextField(name=response_field(slot), title=f"Response {slot}", use_markdown=True,
                            required=required(slot)) for slot in range(1, k + 1)]
    if ranking:
        questions = [rg.RankingQuestion(
            name=RANKING_QUESTION, title="Rank the responses (1 = best)",
            values={response_field(slot): f"Response {slot}" for slot in range(1, k + 1)})]
    else:
        low, high = config.rating.scale_min, config.rating.scale_max
        questions = [rg.RatingQuestion(name=rating_question(aspect, slot), values=list(range(low, high + 1)),
                                       title=f"Response {slot}: {aspect.replace('_', ' ')} ({low} worst, {high} best)",
                                       required=required(slot))
                     for slot in range(1, k + 1) for aspect in config.rating_aspects]
    return rg.Settings(
        guidelines=RANKING_GUIDELINES if ranking else RATING_GUIDELINES,
        fields=fields,
        questions=questions,
        metadata=[
            rg.TermsMetadataProperty(name="prompt_id", visible_for_annotators=False),
            # the candidate each slot shows, in slot order: response_1 is candidate_ids[0]
            rg.TermsMetadataProperty(name="candidate_ids", visible_for_annotators=False),
            rg.IntegerMetadataProperty(name="round", visible_for_annotators=False),
        ],
        distribution=rg.TaskDistribution(min_submitted=config.min_submitted),
    )
