"""Human annotation through a real argilla-server: push -> annotators answer with their own keys
through the REST API (as the UI does) -> pull -> agreement -> curation. Plus the security rules."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import httpx
import pytest

from prefcurate.core.config import PrefcurateConfig
from prefcurate.core.store import Store
from prefcurate.curation.annotation.dataset import connect, find_dataset
from prefcurate.curation.annotation.server import ServerPaths, owner_api_key, start_server
from tests.support.annotation import ANNOTATORS, Annotator, build_store, reference_alpha_and_kappa

pytestmark = pytest.mark.slow


def shown_label_of(record: dict, text: str) -> str:
    return "a" if record["fields"]["response_a"] == text else "b"


@pytest.fixture
def annotation_config(argilla_server, tmp_path) -> PrefcurateConfig:
    argilla, home = argilla_server
    settings = argilla.model_copy(deep=True)
    settings.dataset = f"pairs-{uuid.uuid4().hex[:8]}"
    settings.server.home = home
    return PrefcurateConfig(workdir=tmp_path / "out", store={"path": tmp_path / "store.duckdb"}, argilla=settings)


def test_push_annotate_pull_agreement_and_curation(annotation_config, prefect_harness, caplog):
    from prefcurate.flows.stages import collect_annotations_flow, curate_flow, push_for_annotation_flow

    caplog.set_level(logging.DEBUG)
    config = annotation_config
    truths = build_store(config.store.path)
    home = config.resolved_argilla_home
    url = config.argilla.resolved_url
    owner_key = owner_api_key(config.argilla, home)

    pushed = push_for_annotation_flow(config, round_index=1)
    assert pushed["count_out"] == 4 and pushed["reasons"]["position_inconsistent"] == 4
    assert push_for_annotation_flow(config, round_index=1)["count_out"] == 0  # pushing twice adds nothing
    dataset = find_dataset(connect(config.argilla, home), config.argilla)
    owner = httpx.Client(base_url=url, headers={"X-Argilla-Api-Key": owner_key})
    records = owner.get(f"/api/v1/datasets/{dataset.id}/records", params={"include": "suggestions"}).json()["items"]
    assert len(records) == 4
    assert {r["metadata"]["pair_id"] for r in records} == set(truths) and {r["metadata"]["round"] for r in records} == {1}
    assert all(r["suggestions"] and r["suggestions"][0]["score"] is not None for r in records)

    ann1, ann2, ann3 = (Annotator(url, name) for name in ("ann1", "ann2", "ann3"))
    assert str(dataset.id) in ann1.dataset_ids()
    queue1 = ann1.pending(str(dataset.id))
    assert len(queue1) == 4
    record_pair = {r["id"]: r["metadata"]["pair_id"] for r in records}
    for record in queue1:
        ann1.answer(record, shown_label_of(record, truths[record_pair[record["id"]]]))
    assert ann1.pending(str(dataset.id)) == []  # the search engine's per-user pending filter
    queue2 = ann2.pending(str(dataset.id))
    assert len(queue2) == 4
    disputed = None
    for record in queue2:
        right = shown_label_of(record, truths[record_pair[record["id"]]])
        if disputed is None:
            disputed = (record, ann2.answer(record, "b" if right == "a" else "a"))
        else:
            ann2.answer(record, right)
    queue3 = ann3.pending(str(dataset.id))
    assert queue3 == []  # every record has its min_submitted = 2 answers: the queue is done
    progress = owner.get(f"/api/v1/datasets/{dataset.id}/progress").json()
    assert (progress["total"], progress["completed"]) == (4, 4)
    # ann3 still opens records: a draft on one, a discard (no values: the SDK 2.8 crash case) on another
    ann3.answer(queue1[0], "a", status="draft")
    ann3.answer(queue1[1], None, status="discarded")

    pulled = collect_annotations_flow(config)
    assert (pulled["new"], pulled["updated"], pulled["rejected"]) == (10, 0, 0)
    assert pulled["responses_by_status"] == {"submitted": 8, "draft": 1, "discarded": 1}
    again = collect_annotations_flow(config)
    assert (again["count_out"], again["unchanged"]) == (0, 10)  # re-pulling adds nothing

    with Store(config.store.path) as store:
        votes = store.con.sql("SELECT v.pair_id, v.annotator, v.winner, c.text AS chosen_text FROM annotation_votes AS v "
                              "JOIN pairs AS p USING (pair_id) JOIN candidates AS c ON c.candidate_id = "
                              "CASE v.winner WHEN 'a' THEN p.candidate_a ELSE p.candidate_b END").to_arrow_table().to_pylist()
        assert len(votes) == 8
        # Mapped back to the pair's orientation: every ann1 vote names the better text.
        assert all(v["chosen_text"] == truths[v["pair_id"]] for v in votes if v["annotator"] == "ann1")
        result = store.con.sql("SELECT * FROM annotation_agreement").to_arrow_table().to_pylist()[0]
        expected_votes = {}
        for v in votes:
            expected_votes.setdefault(v["pair_id"], []).append(v["winner"])
        alpha, kappa = reference_alpha_and_kappa(expected_votes)
        assert result["n_pairs"] == 4 and result["krippendorff_alpha"] == pytest.approx(alpha)
        assert result["fleiss_kappa"] == pytest.approx(kappa)
        assert result["observed_agreement"] == pytest.approx(0.75)

    config.curate.min_human_agreement = 1.0
    config.curate.dedup.near.enabled = False
    config.curate.splits.validation = 0.0
    config.curate.splits.test = 0.0
    curated = curate_flow(config)
    with Store(config.store.path) as store:
        kept = store.con.sql("SELECT c.pair_id, c.label_source, t.text AS chosen_text FROM curated_pairs AS c "
                             "JOIN candidates AS t ON t.candidate_id = c.chosen_candidate "
                             "WHERE curation_run_id = $run", params={"run": curated["curation_run_id"]}
                             ).to_arrow_table().to_pylist()
    human = {k["pair_id"]: k for k in kept if k["label_source"] == "human"}
    disputed_pair = record_pair[disputed[0]["id"]]
    assert disputed_pair not in human and len(human) == 3  # 1 of 2 annotators: below the 1.0 threshold
    assert all(k["chosen_text"] == truths[pair] for pair, k in human.items())

    # ann2 changes their mind in Argilla: the next pull replaces the stored answer, nothing else.
    right = shown_label_of(disputed[0], truths[disputed_pair])
    ann2.client.put(f"/api/v1/responses/{disputed[1]['id']}",
                    json={"values": {"preference": {"value": right}}, "status": "submitted"}).raise_for_status()
    edited = collect_annotations_flow(config)
    assert (edited["new"], edited["updated"]) == (0, 1)
    with Store(config.store.path) as store:
        assert store.scalar("SELECT agreement FROM annotation_pair_agreement WHERE pair_id = ?", [disputed_pair]) == 1.0
        assert store.count("annotations") == 10

    # The owner's key never reaches the store, the logs or the server's log.
    assert owner_key.encode() not in config.store.path.read_bytes()
    assert owner_key not in caplog.text
    assert owner_key not in ServerPaths(home).log.read_text(errors="replace")


def test_annotators_see_only_their_workspace_and_never_the_owner_key(argilla_server, annotation_config, monkeypatch):
    import argilla as rg

    argilla, home = argilla_server
    url = argilla.resolved_url
    client = connect(argilla, home)
    if client.users(username="outsider") is None:
        rg.User(username="outsider", password="outsider-password", role="annotator", client=client).create()
    monkeypatch.setitem(ANNOTATORS, "outsider", "outsider-password")
    from prefcurate.pipeline import annotate_push_stage

    build_store(annotation_config.store.path)
    annotate_push_stage(annotation_config)
    dataset = find_dataset(client, annotation_config.argilla)

    member, outsider = Annotator(url, "ann1"), Annotator(url, "outsider")
    owner_key = owner_api_key(argilla, home)
    assert member.api_key != owner_key
    assert str(dataset.id) in member.dataset_ids()
    assert outsider.dataset_ids() == []
    assert outsider.client.get(f"/api/v1/datasets/{dataset.id}").status_code == 403
    assert outsider.client.post(f"/api/v1/me/datasets/{dataset.id}/records/search", json={}).status_code == 403
    # Annotators cannot list users (and so cannot read anyone's key), nor read records as the owner does.
    assert member.client.get("/api/v1/users").status_code == 403
    assert member.client.get(f"/api/v1/datasets/{dataset.id}/records").status_code == 403

    # Loopback only: the listening socket is bound to 127.0.0.1.
    port_hex = f"{argilla.server.port:04X}"
    listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[1].endswith(f":{port_hex}") and line.split()[3] == "0A"]
    assert listening == [f"0100007F:{port_hex}"]
    # Secrets kept by the server are readable by their owner only.
    for name in ("owner_api_key", "owner_password", "auth_secret_key"):
        assert ServerPaths(home).secret(name).stat().st_mode & 0o077 == 0
    assert home.stat().st_mode & 0o077 == 0  # Argilla's database there holds users' API keys

    # Starting a running server is a no-op (same process).
    before = start_server(argilla, home)["pid"]
    assert start_server(argilla, home)["pid"] == before


def test_a_server_on_the_redis_stand_in_starts_logs_its_choice_and_stops(argilla_server, tmp_path, caplog):
    from prefcurate.curation.annotation.server import server_status, stop_server
    from tests.support.network import free_port

    caplog.set_level(logging.INFO, logger="prefcurate.argilla")
    config = argilla_server[0].model_copy(deep=True)
    config.server.port = free_port()
    config.server.redis = "fakeredis"
    home = tmp_path / "argilla"
    status = start_server(config, home)
    assert status["running"] and status["redis"] == "fakeredis" and status["search_engine"] == "sql"
    assert "in-process stand-in (fakeredis)" in caplog.text
    assert stop_server(home)
    assert not server_status(config, home)["running"]
    assert not stop_server(home)  # stopping twice is harmless


@pytest.mark.slow
def test_a_judge_cascade_sends_what_no_level_accepts_to_annotators_and_their_labels_win(annotation_config):
    """The human level of the cascade, in a real Argilla: the pairs the strong judge could not settle
    are pushed (reason cascade), answered by two annotators, pulled, and labelled by them."""
    from prefcurate.pipeline import annotate_pull_stage, annotate_push_stage
    from tests.support.judging import run_judge
    from tests.support.openai_server import Behaviour, OpenAICompatServer, always_a
    from tests.support.cascade import build_pairs, cascade_config, longer_wins, sure_when_far_apart

    with Store(annotation_config.store.path) as store:
        pairs = build_pairs(store)
        with OpenAICompatServer(Behaviour(judge_rule=longer_wins, judge_confidence_rule=sure_when_far_apart)) as cheap, \
                OpenAICompatServer(Behaviour(judge_rule=always_a, judge_confidence=0.95)) as strong:
            report = run_judge(store, cascade_config(cheap, strong))
    assert report.details["cascade"]["to_humans"] == 15
    hard_open = {pair for pair, info in pairs.items() if not info["easy"] and not info["gold"]}

    annotation_config.argilla.push = annotation_config.argilla.push.model_copy(update={  # the cascade's reason only
        "max_records": None, "max_agreement": None, "max_confidence": None, "position_inconsistent": False,
        "ensemble_disagreement": False, "suspect": False, "cascade": True})
    annotate_push_stage(annotation_config)
    with Store(annotation_config.store.path, read_only=True) as store:
        reasons = dict(store.con.execute("SELECT pair_id, reason FROM annotation_records").fetchall())
    assert set(reasons) == hard_open and set(reasons.values()) == {"cascade"}

    url = annotation_config.argilla.resolved_url
    dataset_id = str(find_dataset(connect(annotation_config.argilla, annotation_config.argilla.server.home),
                                  annotation_config.argilla).id)  # the server is shared: this test's dataset
    texts = {}
    with Store(annotation_config.store.path, read_only=True) as store:
        for pair, text_a, text_b in store.con.execute("SELECT pair_id, text_a, text_b FROM pair_texts").fetchall():
            texts[pair] = (text_a, text_b)
    for username in ("ann1", "ann2"):
        annotator = Annotator(url, username)
        by_texts = {frozenset(pair_texts): pair for pair, pair_texts in texts.items()}
        for record in annotator.pending(dataset_id):  # annotators see texts, not ids
            pair = by_texts[frozenset((record["fields"]["response_a"], record["fields"]["response_b"]))]
            if pair not in hard_open:
                continue
            right_text = texts[pair][0] if pairs[pair]["label"] == "a" else texts[pair][1]
            annotator.answer(record, shown_label_of(record, right_text))
    annotate_pull_stage(annotation_config)
    with Store(annotation_config.store.path, read_only=True) as store:
        rows = store.con.execute("SELECT pair_id, label_by_balanced, label_source_by_balanced FROM labelled_pairs "
                                 "WHERE list_contains(?, pair_id)", [sorted(hard_open)]).fetchall()
    assert len(rows) == 15 and all(source == "human" and label == pairs[pair]["label"] for pair, label, source in rows)
