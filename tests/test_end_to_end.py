"""The whole pipeline, plain and through the Prefect flows: tiny local model for generation and
training, the suite's OpenAI-compatible server as the judge."""

import json
import subprocess
import sys

import pytest

TABLES = ("prompts", "candidates", "pairs", "judgments", "curation_runs", "curated_pairs", "rm_runs", "stage_runs")


def counts(path):
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        return {table: con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] for table in TABLES}


def judge_task_runs() -> int:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    async def count() -> int:
        async with get_client() as client:
            runs = await client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="judge-calls-")))
            return sum(1 for run in runs if run.state and run.state.is_completed())

    return asyncio.run(count())


RUN_PLAIN_PIPELINE = """
import json, sys
from prefcurate.core.config import config_from_dict
from prefcurate.pipeline import run_pipeline

done = run_pipeline(config_from_dict(json.load(open(sys.argv[1]))))
print(json.dumps({"curation_run_id": done["curate"]["curation_run_id"], "rm_run_id": done["train"]["rm_run_id"],
                  "stages": list(done), "prefect_imported": "prefect" in sys.modules}))
"""


def run_plain_pipeline(config, tmp_path) -> dict:
    """pipeline.run_pipeline in a fresh process, on its own store and workdir."""
    plain = config.model_copy(deep=True)
    plain.store.path = tmp_path / "plain.duckdb"
    plain.workdir = tmp_path / "plain-out"
    config_file = tmp_path / "plain-config.json"
    config_file.write_text(plain.model_dump_json())
    done = subprocess.run([sys.executable, "-c", RUN_PLAIN_PIPELINE, str(config_file)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # the whole pipeline three times, once in a fresh process (~30-55 s)
def test_pipeline_flow_fills_every_stage_and_reruns_as_a_no_op(pipeline_config, openai_server, prefect_harness,
                                                               tmp_path):
    import datasets

    from prefcurate.flows.stages import pipeline_flow
    from prefcurate.rm.score import RewardScorer

    # The order of stages lives in pipeline.run_pipeline, which needs no Prefect; the flow wraps it.
    plain = run_plain_pipeline(pipeline_config, tmp_path)
    assert plain["stages"] == ["ingest", "generate", "pairs", "judge", "curate", "train", "evaluate"]
    assert not plain["prefect_imported"]
    plain_requests = len(openai_server.requests)

    earlier_task_runs = judge_task_runs()  # the Prefect API is shared by the session's tests
    stages = pipeline_flow(pipeline_config)
    assert stages["curate"]["curation_run_id"] == plain["curation_run_id"]  # same data, same runs
    assert stages["train"]["rm_run_id"] == plain["rm_run_id"]
    filled = counts(pipeline_config.store.path)
    assert filled["prompts"] == 24 and filled["candidates"] == 72
    assert filled["pairs"] > 0 and filled["judgments"] == 2 * filled["pairs"]
    assert filled["curation_runs"] == 1 and filled["curated_pairs"] > 0 and filled["rm_runs"] == 1
    assert stages["judge"]["position_consistent_pairs"] > 0
    calls = len(openai_server.requests) - plain_requests
    # judge calls ran as a few Prefect tasks of up to 16 calls (the first one probed output formats)
    assert judge_task_runs() - earlier_task_runs == -(-(calls - 1) // 16)
    assert json.loads(open(stages["judge"]["judge_report"]).read())["judges"][0]["n_calls"] == calls

    curated = stages["curate"]["output_dir"]
    manifest = json.loads(open(f"{curated}/manifest.json").read())
    loaded = datasets.load_dataset("parquet", data_files={s: f"{curated}/{s}.parquet" for s in manifest["files"]})
    assert sum(len(split) for split in loaded.values()) == filled["curated_pairs"]
    assert manifest["funnel"][0]["in"] == filled["pairs"]

    scorer = RewardScorer(stages["train"]["checkpoint"])
    rewards = scorer.score(["Tell me fact number 1 about the sea."] * 2, ["Salt.", "It covers most of Earth."])
    assert len(rewards) == 2 and all(isinstance(r, float) for r in rewards)
    assert stages["evaluate"]["accuracy"] is not None

    again = pipeline_flow(pipeline_config)
    after = counts(pipeline_config.store.path)
    assert len(openai_server.requests) == plain_requests + calls  # no judge call repeated
    assert {t: n for t, n in after.items() if t != "stage_runs"} == {t: n for t, n in filled.items() if t != "stage_runs"}
    assert again["train"]["reused"] and again["curate"]["curation_run_id"] == stages["curate"]["curation_run_id"]


@pytest.mark.slow  # the whole pipeline with gold pairs
def test_human_gold_pairs_measure_the_judge_and_test_the_reward_model(pipeline_config, openai_server):
    """The default run's gold: a seeded sample of the shipped HH-RLHF pairs imported next to the
    generated ones; the judges see only a sample of them (their agreement with people), the rest
    train and test the reward model on human labels, reported with intervals and in plain words."""
    import pyarrow.parquet as pq

    from prefcurate.cli import plain_words
    from prefcurate.pipeline import judge_gold_agreement, open_store, run_pipeline

    config = pipeline_config.model_copy(deep=True)
    config.gold.source, config.gold.sample = "shipped:hh-rlhf-harmless", 40
    config.judge.max_imported_pairs = 8
    done = run_pipeline(config)
    assert list(done) == ["ingest", "generate", "pairs", "gold", "judge", "curate", "train", "evaluate"]
    assert done["gold"]["count_out"] >= 39  # a row or so of the sample may be a reject
    with open_store(config) as store:
        generated = store.scalar("SELECT count(*) FROM pairs WHERE pair_id NOT IN (SELECT pair_id FROM reference_labels)")
        judged_gold = store.scalar("SELECT count(DISTINCT pair_id) FROM judgments WHERE pair_id IN "
                                   "(SELECT pair_id FROM reference_labels)")
    assert judged_gold == 8 and done["judge"]["calls_planned"] == 2 * (generated + 8)
    agreement = judge_gold_agreement(config)
    figure = next(iter(agreement.values()))
    assert figure["n"] == 16 and figure["ci_low"] <= figure["estimate"] <= figure["ci_high"]
    curated = pq.read_table(f"{done['curate']['output_dir']}/train.parquet").column("label_source").to_pylist()
    assert curated.count("import") >= 15  # human labels train the reward model
    human = done["evaluate"]["human_labelled"]
    assert human["pairs"] >= 5 and human["ci_low"] <= human["accuracy"] <= human["ci_high"]
    said = plain_words(agreement, done["evaluate"])
    assert any("agrees with the human labels" in line for line in said)
    assert any(f"of {human['pairs']} held-out human-labelled pairs" in line for line in said)


@pytest.mark.slow  # the whole pipeline, twice
def test_the_main_job_run_twice_adds_no_row_and_makes_no_model_call(pipeline_config, openai_server):
    """With gold pairs imported after generation, a second run of an unchanged config is a no-op: the
    gold prompts are not prompts to answer (issue 23, item 0)."""
    import duckdb

    from prefcurate.pipeline import run_pipeline

    config = pipeline_config.model_copy(deep=True)
    config.gold.source, config.gold.sample = "shipped:hh-rlhf-harmless", 12
    config.judge.max_imported_pairs = 4
    first = run_pipeline(config)
    assert first["generate"]["count_in"] == 24  # the ingested prompts, not the gold ones
    tables = ("prompts", "candidates", "pairs", "judgments", "reference_labels", "curated_pairs", "rm_runs", "rejects")

    def rows() -> dict:
        with duckdb.connect(str(config.store.path), read_only=True) as con:
            return {table: con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] for table in tables}

    before, calls = rows(), len(openai_server.requests)
    second = run_pipeline(config)
    assert rows() == before and len(openai_server.requests) == calls
    assert second["generate"]["requested"] == 0 and second["judge"]["calls_made"] == 0
    assert second["train"]["reused"]


def test_gold_prompts_are_answered_only_when_the_config_says_so(pipeline_config, store):
    from prefcurate.curation.intake.preference_pairs import import_preference_pairs
    from prefcurate.curation.intake.prompts import ingest_prompts
    from prefcurate.pipeline import gold_source

    source = str(gold_source(pipeline_config.model_copy(update={"gold": pipeline_config.gold.model_copy(
        update={"source": "shipped:hh-rlhf-harmless"})})))
    import_preference_pairs(store, source)
    gold_prompts = store.scalar("SELECT count(*) FROM prompts")
    assert gold_prompts > 0 and store.scalar("SELECT count(*) FROM prompts WHERE in_pool") == 0
    ingest_prompts(store, pipeline_config.ingest)  # ingested prompts are in the pool, whatever came first
    assert store.scalar("SELECT count(*) FROM prompts WHERE in_pool") == 24
    import_preference_pairs(store, source, into_pool=True)
    assert store.scalar("SELECT count(*) FROM prompts WHERE in_pool") == 24 + gold_prompts


@pytest.mark.slow  # the whole pipeline, twice
def test_the_main_job_with_a_rating_judge_rates_pairs_from_scores_and_reruns_as_a_no_op(pipeline_config, openai_server):
    """judge.panel[].mode rating with pairs.strategy all_with_margin: the candidates are rated before
    they are paired, the pairs and labels come from the scores, the export carries them, and a second
    run asks nothing and adds nothing."""
    import duckdb

    from prefcurate.pipeline import run_pipeline

    config = pipeline_config.model_copy(deep=True)
    config.gold.source = None
    config.judge.panel[0] = config.judge.panel[0].model_copy(update={"mode": "rating", "output_format": "json_schema"})
    config.pairs.strategy = "all_with_margin"
    config.train.margin = "score"
    # scores that spread over the scale (the default rule gives the tiny model's long samples all 5s)
    openai_server.behaviour.rating_rule = lambda text, low, high: low + len(text) % (high - low + 1)
    first = run_pipeline(config)
    assert list(first)[:4] == ["ingest", "generate", "score", "pairs"]
    assert first["score"]["calls_made"] == first["score"]["candidates_to_score"] > 0
    assert first["judge"]["calls_made"] == 0  # everything was rated before the pairs existed
    tables = ("candidates", "pairs", "score_calls", "candidate_scores", "curated_pairs", "rm_runs")

    def rows() -> dict:
        with duckdb.connect(str(config.store.path), read_only=True) as con:
            return {table: con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] for table in tables}

    before, calls = rows(), len(openai_server.requests)
    with duckdb.connect(str(config.store.path), read_only=True) as con:
        exported = con.execute("SELECT count(*), count(chosen_score), bool_and(chosen_score > rejected_score) "
                               "FROM curated_pairs_export").fetchall()[0]
    assert exported[0] > 0 and exported[1] == exported[0] and exported[2]
    second = run_pipeline(config)
    assert rows() == before and len(openai_server.requests) == calls
    assert second["score"]["calls_made"] == 0 and second["train"]["reused"]
