"""The Argilla side of annotation: the owner's client, the team's accounts and the dataset
(preference pairs, or ratings or rankings: score_questions.py).

Everything here is idempotent: accounts, the workspace and the dataset are created when missing and
reused otherwise, so `push` can call it every time.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import argilla as rg
from argilla._exceptions import ArgillaCredentialsError

from prefcurate.core.config import ArgillaConfig
from prefcurate.core.secrets import redact, secret_from_env
from prefcurate.curation.annotation.server import AnnotationServerError, owner_api_key
from prefcurate.curation.annotation.score_questions import score_settings

log = logging.getLogger("prefcurate.argilla")

PREFERENCE_LABELS = {"a": "Response A is better", "b": "Response B is better", "tie": "Equally good (tie)"}
STRENGTH_VALUES = [1, 2, 3]  # slight, clear, strong

GUIDELINES = """\
## Which response is better?

Read the prompt, then both responses. Pick the response a careful expert would rather receive:
correct first, then helpful and complete, then clear. Length is not quality: a longer answer is only
better when the extra text helps. Choose **tie** only when neither is better.

- **strength**: 1 = slightly better, 2 = clearly better, 3 = much better.
- **rationale** (optional): one sentence on what decided it.
- **Discard** a record you cannot judge (unreadable, outside your expertise, broken prompt).

A suggestion from the AI judges may be pre-selected: check it, do not trust it. The A/B order is
shuffled per record.
"""


def connect(config: ArgillaConfig, home: Path) -> rg.Argilla:
    """The owner's client. The key comes from the environment or the local server's secrets."""
    api_key = owner_api_key(config, home)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return rg.Argilla(api_url=config.resolved_url, api_key=api_key, timeout=int(config.timeout_s), retries=2)
    except ArgillaCredentialsError:
        raise AnnotationServerError(
            f"Argilla at {config.resolved_url} refused the owner's API key: check {config.owner.api_key_env} "
            "(or the key kept in the server home's secrets/)"
        ) from None
    except Exception as error:  # the SDK raises several types for "cannot reach"
        raise AnnotationServerError(
            f"cannot reach Argilla at {config.resolved_url}: {redact(str(error))}. Is it running? (`prefcurate argilla status`)"
        ) from None


def annotator_password(account_env: str | None, username: str) -> str:
    if not account_env or not os.environ.get(account_env):
        raise AnnotationServerError(
            f"annotator {username!r}: set the environment variable {account_env or '(argilla.annotators[].password_env)'}"
            " to their password (at least 8 characters)"
        )
    password = secret_from_env(account_env)
    if len(password) < 8:
        raise AnnotationServerError(f"annotator {username!r}: the password in {account_env} is shorter than 8 characters")
    return password


def ensure_team(client: rg.Argilla, config: ArgillaConfig) -> rg.Workspace:
    """The workspace, with every configured annotator as a member (created when missing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns on every lookup that finds nothing
        workspace = client.workspaces(name=config.workspace)
        if workspace is None:
            workspace = rg.Workspace(name=config.workspace, client=client).create()
            log.info("created workspace %r", config.workspace)
        members = {user.username for user in workspace.users}
        for account in config.annotators:
            user = client.users(username=account.username)
            if user is None:
                password = annotator_password(account.password_env, account.username)
                user = rg.User(username=account.username, password=password, role="annotator", client=client).create()
                log.info("created annotator %r", account.username)
            if account.username not in members:
                user.add_to_workspace(workspace)
    return workspace


def preference_settings(min_submitted: int) -> rg.Settings:
    return rg.Settings(
        guidelines=GUIDELINES,
        fields=[
            rg.TextField(name="prompt", title="Prompt", use_markdown=True),
            rg.TextField(name="response_a", title="Response A", use_markdown=True),
            rg.TextField(name="response_b", title="Response B", use_markdown=True),
        ],
        questions=[
            rg.LabelQuestion(name="preference", title="Which response is better?", labels=PREFERENCE_LABELS),
            rg.RatingQuestion(name="strength", title="How much better? (1 slightly, 2 clearly, 3 much)",
                              values=STRENGTH_VALUES, required=False),
            rg.TextQuestion(name="rationale", title="Why? (optional)", required=False),
        ],
        # Hidden from annotators: the judges' numbers would anchor them.
        metadata=[
            rg.TermsMetadataProperty(name="pair_id", visible_for_annotators=False),
            rg.IntegerMetadataProperty(name="round", visible_for_annotators=False),
            rg.FloatMetadataProperty(name="judge_agreement", visible_for_annotators=False),
            rg.FloatMetadataProperty(name="judge_confidence", visible_for_annotators=False),
            rg.TermsMetadataProperty(name="reason", visible_for_annotators=False),
        ],
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
    )


def settings_for(config: ArgillaConfig) -> rg.Settings:
    """The dataset's settings for what annotators are asked (argilla.label_mode)."""
    return preference_settings(config.min_submitted) if config.label_mode == "pairwise" else score_settings(config)


def _check_questions(dataset: rg.Dataset, wanted: rg.Settings, name: str) -> None:
    """An existing dataset must ask what the config asks (a ranking over K responses stays K)."""
    def shape(settings) -> tuple:
        return (sorted(field.name for field in settings.fields), sorted(question.name for question in settings.questions))
    if shape(dataset.settings) != shape(wanted):
        raise AnnotationServerError(
            f"dataset {name!r} asks other questions than argilla.label_mode / responses_per_record / rating_aspects"
            " now do: name a new dataset for the new settings"
        )


def ensure_dataset(client: rg.Argilla, config: ArgillaConfig, workspace: rg.Workspace) -> rg.Dataset:
    name, settings = config.dataset_for_mode, settings_for(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = client.datasets(name=name, workspace=workspace)
    if dataset is None:
        dataset = rg.Dataset(name=name, workspace=workspace, settings=settings, client=client).create()
        log.info("created dataset %r in workspace %r", name, config.workspace)
        return dataset
    _check_questions(dataset, settings, name)
    if dataset.settings.distribution.min_submitted != config.min_submitted:
        dataset.settings.distribution = rg.TaskDistribution(min_submitted=config.min_submitted)
        dataset.update()
        log.info("dataset %r: annotators per record set to %d", name, config.min_submitted)
    return dataset


def find_dataset(client: rg.Argilla, config: ArgillaConfig) -> rg.Dataset:
    """The dataset of argilla.label_mode (pairs, ratings or rankings)."""
    name = config.dataset_for_mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workspace = client.workspaces(name=config.workspace)
        dataset = client.datasets(name=name, workspace=workspace) if workspace else None
    if dataset is None:
        raise AnnotationServerError(
            f"no dataset {name!r} in workspace {config.workspace!r} at {config.resolved_url}: push records first"
        )
    return dataset
