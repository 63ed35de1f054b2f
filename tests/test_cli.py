import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from prefcurate.cli import app

runner = CliRunner()


def test_bad_config_exits_2_naming_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: -1\n")
    result = runner.invoke(app, ["show-config", "--config", str(bad)])
    assert result.exit_code == 2
    assert "train.epochs" in result.output and "greater than 0" in result.output


def test_a_bad_config_stops_a_flow_command_before_prefect_is_imported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("generate:\n  n_candidates: 0\n")
    script = ("import sys\nfrom prefcurate.cli import app\ntry:\n    app(sys.argv[1:])\nexcept SystemExit as done:\n"
              "    print('exit', done.code, 'prefect' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script, "generate", "--config", str(bad)], capture_output=True,
                          text=True, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "exit 2 False"
    assert "generate.n_candidates" in done.stderr and "Traceback" not in done.stderr


def test_show_config_prints_the_effective_config(tmp_path):
    good = tmp_path / "c.toml"
    good.write_text("[pairs]\nmax_pairs_per_prompt = 5\n")
    result = runner.invoke(app, ["show-config", "--config", str(good)])
    assert result.exit_code == 0 and "max_pairs_per_prompt: 5" in result.output


def test_query_prints_results_and_refuses_bad_sql(tmp_path):
    # CliRunner only for commands that run no flow: Prefect's console handler would keep
    # CliRunner's swapped stream after it closes. Flow commands run as real processes below.
    from prefcurate.core.config import IngestConfig
    from prefcurate.core.store import Store
    from prefcurate.curation.intake.prompts import ingest_prompts

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"text": "hello there"}) + "\n" + json.dumps({"text": ""}) + "\n")
    with Store(tmp_path / "s.duckdb") as store:
        ingest_prompts(store, IngestConfig(source=str(prompts), prompt_column="text"))
    result = runner.invoke(app, ["query", "SELECT stage, source_row, reason FROM rejects", "--store",
                                 str(tmp_path / "s.duckdb")])
    assert result.exit_code == 0 and "empty prompt" in result.output
    bad = runner.invoke(app, ["query", "SELECT nope FROM prompts", "--store", str(tmp_path / "s.duckdb")])
    assert bad.exit_code == 1 and "nope" in bad.output
    copy = runner.invoke(app, ["query", f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'", "--store", str(tmp_path / "s.duckdb")])
    assert copy.exit_code == 1 and not (tmp_path / "out.csv").exists()  # read-only for real
    allowed = runner.invoke(app, ["query", f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'", "--allow-files",
                                  "--store", str(tmp_path / "s.duckdb")])
    assert allowed.exit_code == 0 and (tmp_path / "out.csv").exists()


@pytest.mark.slow
def test_a_failure_is_one_line_naming_the_log_that_has_the_traceback(tmp_path):
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    config = tmp_path / "c.yaml"
    config.write_text(f"workdir: {tmp_path / 'out'}\nstore:\n  path: {tmp_path / 's.duckdb'}\n")
    cli = [sys.executable, "-m", "prefcurate.cli"]
    failed = subprocess.run(cli + ["ingest", "--config", str(config), "--source", str(empty)],
                            capture_output=True, text=True, timeout=300)
    log = tmp_path / "out" / "logs" / "prefcurate.log"
    assert failed.returncode == 1
    assert [line for line in failed.stderr.splitlines() if "error" in line.lower()] == [
        f"error: {empty}: file is empty [log: {log}]"]
    assert "Traceback" not in failed.stderr and "Traceback" in log.read_text()

    debug = subprocess.run(cli + ["--debug", "ingest", "--config", str(config), "--source", str(empty)],
                           capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr

    damaged = tmp_path / "damaged.duckdb"
    damaged.write_bytes(b"not a database at all " * 1000)
    opened = subprocess.run(cli + ["ingest", "--config", str(config), "--store", str(damaged)],
                            capture_output=True, text=True, timeout=300)
    assert opened.returncode == 1 and "Traceback" not in opened.stderr
    [line] = [line for line in opened.stderr.splitlines() if "error" in line.lower()]
    assert line.startswith(f"error: cannot open the store {damaged}: ")


@pytest.mark.slow
def test_a_missing_source_fails_with_its_path_and_keeps_the_store(tmp_path):
    # A real process: Prefect's console handler outlives CliRunner's captured streams.
    store = tmp_path / "s.duckdb"
    good = tmp_path / "p.jsonl"
    good.write_text(json.dumps({"prompt": "kept"}) + "\n")
    cli = [sys.executable, "-m", "prefcurate.cli", "ingest", "--store", str(store), "--source"]
    ingested = subprocess.run(cli + [str(good)], capture_output=True, text=True, timeout=300)
    assert ingested.returncode == 0 and "ingest: in=1 out=1" in ingested.stdout
    missing = subprocess.run(cli + [str(tmp_path / "nope.jsonl")], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1
    assert f"error: {tmp_path / 'nope.jsonl'}: file not found" in missing.stderr
    query = subprocess.run([sys.executable, "-m", "prefcurate.cli", "query", "SELECT text FROM prompts",
                            "--store", str(store)], capture_output=True, text=True, timeout=60)
    assert "kept" in query.stdout


@pytest.mark.slow
def test_main_command_on_the_embedded_model(tmp_path):
    """`prefcurate run` as a user runs it, on the real embedded SmolLM2 (converted once, ~1 min)."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in
                               ["Name a color.", "Say hello.", "What is 2+2?", "Name a fruit.", "Name an animal."]))
    config = tmp_path / "c.yaml"
    config.write_text(
        f"workdir: {tmp_path / 'out'}\nstore: {{path: {tmp_path / 's.duckdb'}}}\ningest: {{source: {prompts}}}\n"
        "generate: {n_candidates: 2, max_new_tokens: 24}\n"  # a pair a prompt: what the checks below need
        "gold: {sample: 30}\njudge: {max_imported_pairs: 6}\n"
        "curate: {splits: {validation: 0.0, test: 0.4}}\n"
        "train: {epochs: 1, trainable_layers: 1, max_length: 128}\n")
    env = {**os.environ, "PREFCURATE_MODELS_CACHE": ""}
    done = subprocess.run([sys.executable, "-m", "prefcurate.cli", "run", "--config", str(config)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reward model:" in done.stdout and "curated dataset:" in done.stdout
    report = json.loads((tmp_path / "out" / "run_report.json").read_text())
    assert report["stages"]["judge"]["valid"] == report["stages"]["judge"]["calls_planned"]
    assert os.path.isfile(os.path.join(report["checkpoint"], "model.safetensors"))
    # 30 human-labelled gold pairs came with it: 6 judged (agreement measured), the rest train and test
    assert report["stages"]["gold"]["count_out"] >= 29
    assert list(report["judge_gold_agreement"].values())[0]["n"] == 12  # 6 pairs x 2 orders
    said = done.stdout.split("What the numbers say:")[1]
    assert "agrees with the human labels on" in said and "held-out human-labelled pairs" in said


def test_judge_estimate_predicts_without_calling_and_the_report_prints(tmp_path, openai_server):
    from prefcurate.core.store import Store
    from tests.support.judging import add_judgeable_pairs, judge_config, run_judge

    store_path = tmp_path / "s.duckdb"
    with Store(store_path) as store:
        add_judgeable_pairs(store, 5)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"workdir: {tmp_path / 'out'}\nstore: {{path: {store_path}}}\n"
        f"judge:\n  panel:\n    - backend: {{kind: openai, model: gpt-test, base_url: '{openai_server.base_url}'}}\n"
        "  prices: {gpt-test: {input_per_million: 1.0, output_per_million: 4.0}}\n")
    estimate = runner.invoke(app, ["judge", "--estimate", "--config", str(config)])
    assert estimate.exit_code == 0, estimate.output
    assert "calls planned: 10" in estimate.output and "to make: 10" in estimate.output
    assert "gpt-test [pairwise, json_schema]: 10 calls" in estimate.output and "uncalibrated" in estimate.output
    assert openai_server.requests == []

    with Store(store_path) as store:
        run_judge(store, judge_config(openai_server, members=[{"backend": {"model": "gpt-test"}}]))
    report = runner.invoke(app, ["judge-report", "--config", str(config)])
    assert report.exit_code == 0, report.output
    assert "# Judge quality report" in report.output and "| gpt-test | 10 | 10 |" in report.output
    assert (tmp_path / "out" / "reports" / "judge_report.json").is_file()
