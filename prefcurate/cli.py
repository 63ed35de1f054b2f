"""The `prefcurate` command: one subcommand per stage, `run` for the whole pipeline."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Optional

import click
import typer
import yaml

from prefcurate import console
from prefcurate.core.config import ConfigError, PrefcurateConfig, load_config
from prefcurate.core.secrets import register_env_secrets

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn prompts into a curated preference set and a reward model.")


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Print tracebacks in the terminal too "
                                        "(they always go to <workdir>/logs/prefcurate.log).")) -> None:
    console.session.debug = debug


# Failures a user can act on: their message says what and where. Anything else is a bug of ours or
# a library's, shown as "unexpected <type>" (the traceback is in the log file either way).
_KNOWN_FAILURES = (ValueError, LookupError, OSError, RuntimeError)


def _user_errors(function):
    """Every failure becomes one line (`error: ... [log: FILE]`) and an exit code; no traceback."""

    @functools.wraps(function)
    def guarded(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (typer.Exit, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            _interrupted()
        except console.Terminated:
            typer.echo("terminated: what was answered is stored; run the same command to resume", err=True)
            raise typer.Exit(console.EXIT_TERMINATED) from None
        except ConfigError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(console.EXIT_USAGE) from None
        except Exception as error:  # noqa: BLE001 (the point: no traceback reaches the terminal)
            if console.is_interrupted_query(error):
                _interrupted()
            known = isinstance(error, _KNOWN_FAILURES) or type(error).__module__.lstrip("_").startswith("duckdb")
            typer.echo(console.failure_line(error, known=known), err=True)
            if console.session.debug:
                raise
            raise typer.Exit(console.EXIT_FAILED) from None

    return guarded


def _interrupted() -> None:
    typer.echo("interrupted: what was answered is stored; run the same command to resume", err=True)
    raise typer.Exit(console.EXIT_INTERRUPTED) from None


def command(typer_app: typer.Typer = app, name: str | None = None):
    """`@typer_app.command(name)` for a function whose failures print one line."""
    return lambda function: typer_app.command(name)(_user_errors(function))


def _config(path: Optional[Path], store: Optional[Path] = None) -> PrefcurateConfig:
    try:
        config = load_config(path)
    except ConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(console.EXIT_USAGE) from None
    if store is not None:
        config.store.path = store
    console.session.workdir = config.workdir
    register_env_secrets(config.secret_env_names())
    return config


def _check_config(path: Optional[Path]) -> Optional[Path]:
    """A bad config file fails while the arguments are read, before a command imports its flow
    (Prefect takes seconds to import)."""
    _config(path)
    return path


ConfigOption = typer.Option(None, "--config", "-c", help="YAML or TOML config file (defaults are embedded).",
                            callback=_check_config)
StoreOption = typer.Option(None, "--store", help="DuckDB store file (overrides store.path).")


def _setup_logging() -> None:
    """Call after Prefect is imported: its logging config resets the root logger."""
    console.setup_logging()


def _run(flow, config: PrefcurateConfig, **kwargs) -> dict:
    """Run a flow (each command imports its own, when called: importing Prefect would slow `--help`)
    against a Prefect server this command owns (or PREFECT_API_URL)."""
    from prefcurate.flows.temporary_server import prefect_api

    import os

    _setup_logging()
    console.handle_sigterm()
    console.session.temporary_api = not os.environ.get("PREFECT_API_URL")
    with prefect_api(console.log_path()):
        return flow(config, **kwargs)


def _print_summary(summary: dict) -> None:
    counts = f"in={summary['count_in']} out={summary['count_out']}"
    extras = {k: v for k, v in summary.items() if k not in ("stage", "count_in", "count_out")}
    typer.echo(f"{summary['stage']}: {counts}")
    for key, value in extras.items():
        typer.echo(f"  {key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")


@command()
def ingest(config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption,
           source: Optional[str] = typer.Option(None, help="Prompt file or dataset (overrides ingest.source)."),
           prompt_column: Optional[str] = typer.Option(None, help="Column holding the prompt text.")) -> None:
    """Load prompts (JSONL, Parquet, CSV, `datasets`) into the store; bad rows go to `rejects`."""
    cfg = _config(config, store)
    if source:
        cfg.ingest.source = source
    if prompt_column:
        cfg.ingest.prompt_column = prompt_column
    from prefcurate.flows.stages import ingest_flow

    _print_summary(_run(ingest_flow, cfg))


@command()
def generate(config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption,
             wait: bool = typer.Option(False, "--wait", help="A batch backend: poll until every submitted call is "
                                       "answered (default: submit, collect what is done, and return).")) -> None:
    """Generate N candidate responses per prompt."""
    from prefcurate.flows.stages import generate_flow

    _print_summary(_run(generate_flow, _config(config, store), wait=wait))


@command()
def pairs(config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption) -> None:
    """Build candidate pairs per prompt."""
    from prefcurate.flows.stages import pairs_flow

    _print_summary(_run(pairs_flow, _config(config, store)))


@command()
def judge(config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption,
          estimate: bool = typer.Option(False, "--estimate",
                                        help="Predict calls, tokens and cost; send nothing."),
          wait: bool = typer.Option(False, "--wait", help="Batch judges: poll until every submitted call is "
                                    "answered (default: submit, collect what is done, and return).")) -> None:
    """Judge pairs with the judge panel, in both orders, under sampled constitution principles; rating and
    ranking members (judge.panel[].mode) score the candidates instead."""
    cfg = _config(config, store)
    if not estimate:
        from prefcurate.flows.stages import judge_flow

        _print_summary(_run(judge_flow, cfg, wait=wait))
        return
    from prefcurate import pipeline

    predicted = pipeline.judge_estimate(cfg)
    typer.echo(f"pairs: {predicted['pairs']}  calls planned: {predicted['calls_planned']}  "
               f"cached: {predicted['calls_cached']}  to make: {predicted['calls_to_make']}")
    for name, judge_estimate in predicted["judges"].items():
        cost = judge_estimate["cost_usd"]
        basis = (f"calibrated on {judge_estimate['calibrated_on_calls']} stored calls"
                 if judge_estimate["calibrated_on_calls"] else "uncalibrated: chars/4, completion at max_new_tokens")
        typer.echo(f"  {name} [{judge_estimate['mode']}, {judge_estimate['output_format']}]: "
                   f"{judge_estimate['calls_to_make']} calls, "
                   f"~{judge_estimate['prompt_tokens']} prompt + ~{judge_estimate['completion_tokens']} completion "
                   f"tokens, cost {'unpriced (add it to judge.prices)' if cost is None else f'~${cost:.4f}'} ({basis})")
    total = predicted["cost_usd"]
    typer.echo(f"total: ~{predicted['prompt_tokens']} prompt + ~{predicted['completion_tokens']} completion tokens, "
               f"{'no priced judge' if total is None else f'~${total:.4f}'}")


@command(app, "judge-report")
def judge_report(config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption) -> None:
    """Write the judge quality report (gold agreement, position consistency, ties, invalid, principles, cost)."""
    from prefcurate import pipeline

    path, markdown = pipeline.judge_report(_config(config, store))
    typer.echo(markdown)
    typer.echo(f"written: {path} (and .md)")


@command(app, "import-pairs")
def import_pairs(source: str = typer.Argument(..., help="Preference file or dataset: prompt/chosen/rejected, "
                                                        "HH-RLHF transcripts, or ShareGPT/chat messages."),
                 config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption,
                 fmt: str = typer.Option("auto", "--format", help="auto | jsonl | parquet | csv | datasets"),
                 split: str = typer.Option("train", help="Split, for `datasets` sources."),
                 into_pool: bool = typer.Option(False, "--into-pool",
                                                help="Also generate candidates for these prompts (by default "
                                                     "imported prompts only measure judges and models).")) -> None:
    """Import an existing preference dataset as labelled pairs (gold for judges, data for training)."""
    from prefcurate.flows.stages import import_pairs_flow

    _print_summary(_run(import_pairs_flow, _config(config, store), source=source, fmt=fmt, split=split,
                        into_pool=into_pool))


def _check_layout(layout: str) -> str:
    from prefcurate.curation.intake.rated_completions import LAYOUTS

    if layout != "auto" and layout not in LAYOUTS:
        raise typer.BadParameter(f"{layout!r}: expected auto, {', '.join(LAYOUTS)}")
    return layout


def _check_scale(scale: str) -> str:
    from prefcurate.curation.intake.rated_completions import Scale

    try:
        Scale.parse(scale)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return scale


@command(app, "import-ratings")
def import_ratings(source: str = typer.Argument(..., help="Rated completions: UltraFeedback rows, distilabel's "
                                                          "UltraFeedback output, or prompt + completions with ratings "
                                                          "(JSONL, JSON, Parquet, CSV, or a `datasets` folder/name)."),
                   config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption,
                   layout: str = typer.Option("auto", "--format", callback=_check_layout,
                                              help="auto | ultrafeedback | flat | distilabel (auto: per row)"),
                   scale: str = typer.Option("1-5", "--scale", callback=_check_scale,
                                             help="MIN-MAX of the ratings; a rating off it rejects its row."),
                   split: str = typer.Option("train", help="Split, for `datasets` sources."),
                   into_pool: bool = typer.Option(False, "--into-pool",
                                                  help="Also generate candidates for these prompts (by default "
                                                       "imported prompts only measure judges and models).")) -> None:
    """Import completions with ratings as candidates and scores; no pairs yet.

    Then run `prefcurate pairs` with pairs.strategy best_vs_worst,
    best_vs_random_lower or all_with_margin: it pairs the candidates from
    these scores, and the ratings give each pair its reference label."""
    from prefcurate.flows.stages import import_ratings_flow

    _print_summary(_run(import_ratings_flow, _config(config, store), source=source, layout=layout, scale=scale,
                        split=split, into_pool=into_pool))


@command()
def suspect(config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption) -> None:
    """Check labels against reward models trained on the other folds; flag those they contradict."""
    from prefcurate.flows.stages import suspect_flow

    _print_summary(_run(suspect_flow, _config(config, store)))


@command()
def curate(config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption) -> None:
    """Filter, cap and split labelled pairs; export Parquet and a manifest."""
    from prefcurate.flows.stages import curate_flow

    _print_summary(_run(curate_flow, _config(config, store)))


@command()
def train(config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption,
          curation_run: Optional[str] = typer.Option(None, help="Curation run id (default: the latest)."),
          export: Optional[str] = typer.Option(None, help="The portable job: a curated export folder (path or fsspec "
                                               "URL, e.g. s3://bucket/curated/<run>); no store is opened."),
          output: Optional[str] = typer.Option(None, help="With --export: where the checkpoint, reports and "
                                               "result.json go (path or URL)."),
          base_model: Optional[str] = typer.Option(None, help="With --export: the base model (path, URL or hub "
                                                   "name; default train.base_model)."),
          evaluate_split: bool = typer.Option(True, "--evaluate/--no-evaluate",
                                              help="With --export: evaluate on the export's held-out split.")) -> None:
    """Train a Bradley-Terry reward model on a curated export.

    Without --export: the store's latest (or named) curation run, recorded in rm_runs. With --export
    and --output: the portable job, anywhere (a GPU machine): no store, duckdb or Prefect; record its
    output later with `prefcurate record-training`. Under `torchrun` / `accelerate launch` rank 0 runs
    it and the other ranks join its training."""
    from prefcurate.rm import distributed

    cfg = _config(config, store)
    if distributed.is_distributed() and distributed.rank() != 0:
        from prefcurate.core.local_models import pick_device
        from prefcurate.rm.train import follow_training

        follow_training(pick_device(cfg.train.device))
        return
    if export is not None:
        _train_job(cfg, export, output, base_model, evaluate_split)
        return
    from prefcurate.flows.stages import train_flow

    _print_summary(_run(train_flow, cfg, curation_run_id=curation_run))


def _train_job(cfg: PrefcurateConfig, export: str, output: Optional[str], base_model: Optional[str],
               evaluate_split: bool) -> None:
    from prefcurate.core.local_models import pick_device, resolve_model
    from prefcurate.rm.train_job import run_training_job

    if output is None:
        raise typer.BadParameter("--export needs --output (a path or URL for the checkpoint)")
    console.setup_logging()
    model = base_model or resolve_model(cfg.train.base_model, cfg.resolved_models_dir)
    result = run_training_job(export, model, output, cfg.train, pick_device(cfg.train.device),
                              cfg.evaluate if evaluate_split else None, cfg.workdir / "cache")
    if result is None:
        return
    evaluation = result.get("eval_metrics") or {}
    typer.echo(f"train: {'reused' if result['reused'] else 'trained'} {result['rm_run_id'][:16]} -> {output}")
    typer.echo(f"  train_pairs: {result['train_metrics']['train_pairs']}")
    if evaluation.get("accuracy") is not None:
        low, high = evaluation["accuracy_ci"]
        typer.echo(f"  held-out accuracy: {evaluation['accuracy']:.3f} [{low:.3f}, {high:.3f}] on {evaluation['pairs']} pairs")
    typer.echo(f"  record it in the store: prefcurate record-training {output}")


@command(app, "record-training")
def record_training_command(output: str = typer.Argument(..., help="A training job's output (path or URL)."),
                            config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption,
                            curation_run: Optional[str] = typer.Option(
                                None, help="Curation run the export came from (default: the one in result.json).")
                            ) -> None:
    """Record a finished training job's output in the store (rm_runs); recording twice adds nothing."""
    from prefcurate.pipeline import open_store
    from prefcurate.rm.train_job import record_training

    cfg = _config(config, store)
    with open_store(cfg) as opened:
        run_id = record_training(opened, output, curation_run)
    typer.echo(f"recorded: rm run {run_id[:16]} from {output}")


@command()
def evaluate(config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption,
             rm_run: Optional[str] = typer.Option(None, help="Reward-model run id (default: the latest)."),
             benchmark: Optional[Path] = typer.Option(None, help="A preference benchmark file (JSONL or Parquet): "
                                                      "prompt/chosen/rejected pairs, or rejected lists (best-of-n)."),
             checkpoint: Optional[str] = typer.Option(None, help="With --benchmark: any sequence-classification "
                                                      "checkpoint (folder or hub name) instead of one of ours."),
             sections: Optional[Path] = typer.Option(None, help="With --benchmark: a JSON map of section -> subsets "
                                                     "for a section-weighted score.")) -> None:
    """Evaluate a reward model on the held-out split, or (--benchmark) on a benchmark file."""
    if benchmark is None:
        from prefcurate.flows.stages import evaluate_flow

        _print_summary(_run(evaluate_flow, _config(config, store), rm_run_id=rm_run))
        return
    from prefcurate.flows.stages import benchmark_flow

    _print_summary(_run(benchmark_flow, _config(config, store), benchmark=str(benchmark), rm_run_id=rm_run,
                        checkpoint=checkpoint, sections=None if sections is None else str(sections)))


@command()
def score(config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption,
          rm_run: Optional[str] = typer.Option(None, help="Reward-model run id (default: the latest).")) -> None:
    """Score stored candidates with a reward model (or ensemble) into `candidate_rewards`."""
    from prefcurate.flows.stages import score_flow

    _print_summary(_run(score_flow, _config(config, store), rm_run_id=rm_run))


@command()
def run(config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption) -> None:
    """Run every stage: prompts -> candidates -> pairs -> labels -> curated set -> reward model -> report."""
    cfg = _config(config, store)
    from prefcurate.flows.stages import pipeline_flow

    stages = _run(pipeline_flow, cfg)
    for summary in stages.values():
        _print_summary(summary)
    from prefcurate import pipeline

    report = {
        "store": str(Path(cfg.store.path).resolve()),
        "curated_dataset": stages["curate"]["output_dir"],
        "checkpoint": stages["train"]["checkpoint"],
        "eval_report": stages["evaluate"]["report"],
        "accuracy": stages["evaluate"]["accuracy"],
        "judge_gold_agreement": pipeline.judge_gold_agreement(cfg),
        "stages": stages,
    }
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    (cfg.workdir / "run_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    typer.echo("\nDone.")
    typer.echo(f"  store:           {report['store']}")
    typer.echo(f"  curated dataset: {report['curated_dataset']}")
    typer.echo(f"  reward model:    {report['checkpoint']}")
    typer.echo(f"  eval report:     {report['eval_report']} (held-out accuracy: {report['accuracy']})")
    typer.echo(f"  run report:      {(cfg.workdir / 'run_report.json').resolve()}")
    typer.echo("\nWhat the numbers say:")
    for line in plain_words(report["judge_gold_agreement"], stages["evaluate"]):
        typer.echo(f"  {line}")


def _percent(figure: dict, key: str = "estimate") -> str:
    return f"{figure[key]:.0%} [{figure['ci_low']:.0%}, {figure['ci_high']:.0%}]"


def plain_words(judge_agreement: dict, evaluation: dict) -> list[str]:
    """The run's figures in sentences a newcomer can act on (intervals: 95% bootstrap)."""
    lines = []
    for judge, figure in judge_agreement.items():
        verdict = ("better than chance" if figure["ci_low"] > 0.5 else
                   "no better than chance: this judge carries no signal here; point judge.panel at a capable model")
        lines.append(f"Judge {judge} agrees with the human labels on {_percent(figure)} of its {figure['n']} votes on "
                     f"gold pairs (chance: 50%): {verdict}.")
    human = evaluation.get("human_labelled")
    if human:
        verdict = ("a real signal: better than chance (human labels on this data agree with each other ~65-70% of "
                   "the time, so that is about the ceiling)" if human["ci_low"] > 0.5 else
                   "not distinguishable from chance on this many pairs")
        lines.append(f"The reward model ranks {_percent(human, 'accuracy')} of {human['pairs']} held-out "
                     f"human-labelled pairs the way people did (chance: 50%): {verdict}.")
    elif evaluation.get("accuracy") is not None:
        lines.append(f"The reward model ranks {evaluation['accuracy']:.0%} of {evaluation.get('count_out')} held-out pairs "
                     "as their labels do; no held-out pair has a human label, so this measures agreement with the judges.")
    for alarm in evaluation.get("alarms") or []:
        lines.append(f"Alarm: the reward model {alarm}" if alarm.startswith("rewards ") else f"Alarm: {alarm}")
    return lines


@command()
def query(sql: str = typer.Argument(..., help="SQL to run against the store, e.g. \"SELECT * FROM store_counts\"."),
          config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption,
          allow_files: bool = typer.Option(False, "--allow-files",
                                           help="Let the query read and write other files (read_csv, COPY ... TO).")
          ) -> None:
    """Run a read-only SQL query on the store's read snapshot (it never blocks a stage that writes the
    store) and print the result; says so when a stage has written since. Other files are out of
    reach unless --allow-files."""
    import duckdb

    from prefcurate.core.store import open_for_reading

    cfg = _config(config, store)
    con, note = open_for_reading(cfg.store.path, allow_files=allow_files)
    if note:
        typer.echo(f"note: {note}", err=True)
    try:
        con.sql(sql).show(max_rows=200, max_width=200)
    except duckdb.Error as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    finally:
        con.close()


argilla_app = typer.Typer(no_args_is_help=True, help="Run the Argilla server annotators work in.")
app.add_typer(argilla_app, name="argilla")
annotate_app = typer.Typer(no_args_is_help=True, help="Send pairs to annotators and collect their answers.")
app.add_typer(annotate_app, name="annotate")


@command(argilla_app, "start")
def argilla_start(config: Optional[Path] = ConfigOption) -> None:
    """Start argilla-server (its own venv, migrations, owner, workspace, annotators); reuse it if running."""
    from prefcurate.curation.annotation.dataset import connect, ensure_team
    from prefcurate.curation.annotation.server import start_server

    _setup_logging()
    settings = _config(config)
    status = start_server(settings.argilla, settings.resolved_argilla_home)
    ensure_team(connect(settings.argilla, settings.resolved_argilla_home), settings.argilla)
    typer.echo(json.dumps(status, indent=2))
    typer.echo(f"annotators sign in at {status['url']} (workspace {settings.argilla.workspace!r})")


@command(argilla_app, "stop")
def argilla_stop(config: Optional[Path] = ConfigOption) -> None:
    """Stop the server (and the redis-server it started)."""
    from prefcurate.curation.annotation.server import stop_server

    stopped = stop_server(_config(config).resolved_argilla_home)
    typer.echo("stopped" if stopped else "not running")


@command(argilla_app, "status")
def argilla_status(config: Optional[Path] = ConfigOption) -> None:
    """Whether the server answers, where it keeps its data, which search engine and Redis it uses."""
    from prefcurate.curation.annotation.server import server_status

    settings = _config(config)
    status = server_status(settings.argilla, settings.resolved_argilla_home)
    typer.echo(json.dumps(status, indent=2))
    raise typer.Exit(0 if status["running"] else 1)


@command(argilla_app, "add-annotators")
def argilla_add_annotators(config: Optional[Path] = ConfigOption) -> None:
    """Create the annotators listed in argilla.annotators (passwords from their env vars) and add them
    to the workspace; existing ones are kept."""
    from prefcurate.curation.annotation.dataset import connect, ensure_team

    _setup_logging()
    settings = _config(config)
    workspace = ensure_team(connect(settings.argilla, settings.resolved_argilla_home), settings.argilla)
    typer.echo(f"workspace {workspace.name!r}: {sorted(user.username for user in workspace.users)}")


@command(annotate_app, "push")
def annotate_push(config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption,
                  round_index: int = typer.Option(0, "--round", help="Refresh round the pairs belong to.")) -> None:
    """Send pairs (argilla.push.policy: all or uncertain) to the Argilla dataset."""
    from prefcurate.flows.stages import push_for_annotation_flow

    _print_summary(_run(push_for_annotation_flow, _config(config, store), round_index=round_index))


@command(annotate_app, "pull")
def annotate_pull(config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption) -> None:
    """Collect submitted, discarded and draft answers into the store; print agreement."""
    from prefcurate.flows.stages import collect_annotations_flow

    _print_summary(_run(collect_annotations_flow, _config(config, store)))


@command()
def refresh(config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption,
            round_index: Optional[int] = typer.Option(None, "--round", help="Round to run (default: the next one). "
                                                      "A finished round is returned as stored.")) -> None:
    """One on-policy refresh round: generate, score, select, judge, re-curate, retrain, gate."""
    cfg = _config(config, store)
    from prefcurate.flows.refresh import refresh_flow

    summary = _run(refresh_flow, cfg, round_index=round_index)
    for key in ("round", "decision", "reason", "incumbent_rm_run_id", "candidate_rm_run_id", "round_report", "reused"):
        if key in summary:
            typer.echo(f"{key}: {summary[key]}")


@command()
def serve(config: Optional[Path] = ConfigOption,
          limit: Optional[int] = typer.Option(None, help="Most flow runs at once (default: no limit).")) -> None:
    """Serve the scheduled deployments of serve.schedules against the Prefect server at PREFECT_API_URL."""
    from prefcurate.flows.deployments import ServeError, serve_deployments

    _setup_logging()
    settings = _config(config)
    try:
        serve_deployments(settings, limit)
    except ServeError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


@command(app, "serve-rm")
def serve_rm(checkpoint: Optional[str] = typer.Option(None, help="A reward model folder or URL (default: the "
                                                      "store's latest reward model)."),
             config: Optional[Path] = ConfigOption, store: Optional[Path] = StoreOption,
             host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback unless you mean to expose it)."),
             port: int = typer.Option(8765, help="Port (0: any free one, printed)."),
             token_env: Optional[str] = typer.Option(None, help="Environment variable holding a bearer token that "
                                                     "every request must carry."),
             max_batch: int = typer.Option(64, help="Most items scored in one batched pass."),
             max_wait_ms: float = typer.Option(5.0, help="How long a batch waits for more requests to join it."),
             max_queue: int = typer.Option(1024, help="Requests waiting at most; beyond, 503.")) -> None:
    """Serve a reward model (or ensemble) over HTTP: POST /score, OpenRLHF's POST /get_reward, GET /health."""
    from prefcurate.core.local_models import pick_device
    from prefcurate.core.secrets import secret_from_env
    from prefcurate.rm.score import RewardScorer
    from prefcurate.rm.serving import BatchingScorer, RewardServer

    cfg = _config(config, store)
    console.setup_logging()
    folder = _served_checkpoint(cfg, checkpoint)
    token = secret_from_env(token_env)
    if token_env and not token:
        raise typer.BadParameter(f"--token-env: ${token_env} is not set")
    device = pick_device(cfg.train.device)
    scorer = RewardScorer(folder, device, cfg.train.max_length, cfg.evaluate.precision, cfg.evaluate.compile)
    batcher = BatchingScorer(scorer, max_batch, max_wait_ms, max_queue, cfg.evaluate.batch_size)
    if batcher.warm_up():
        typer.echo("compiled the model's blocks (evaluate.compile) before serving")
    server = RewardServer((host, port), batcher, token)
    console.handle_sigterm()
    typer.echo(f"serving {folder} ({len(scorer.members)} member(s), {device}, {scorer.precision}) at "
               f"http://{host}:{server.server_address[1]}", err=False)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, console.Terminated):
        typer.echo("stopped")
    finally:
        server.server_close()


def _served_checkpoint(cfg: PrefcurateConfig, checkpoint: Optional[str]) -> str:
    from prefcurate.pipeline import local_checkpoint

    if checkpoint is None:
        from prefcurate.core.store import open_for_reading

        from prefcurate.rm.runs import find_rm_run

        con, _note = open_for_reading(cfg.store.path)
        try:
            run = find_rm_run(con)
        finally:
            con.close()
        if run is None:
            raise LookupError(f"{cfg.store.path}: no reward model yet; train one, or name it with --checkpoint")
        checkpoint = run.checkpoint_dir
    return str(local_checkpoint(cfg, checkpoint))


@command()
def deploy(work_pool: Optional[str] = typer.Option(None, "--work-pool", help="The work pool for the serve.schedules "
                                                   "deployments (e.g. `prefect work-pool create cpu --type process`)."),
           config: Optional[Path] = ConfigOption) -> None:
    """Register the serve.schedules deployments on a work pool (its workers run them), and the
    training deployment train-job/<pool> on train.work_pool when that is set."""
    from prefcurate.flows.deployments import ServeError, deploy_to_work_pool

    _setup_logging()
    try:
        deployed = deploy_to_work_pool(_config(config), work_pool)
    except ServeError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    for pool in sorted(set(deployed.values())):
        names = sorted(name for name, on in deployed.items() if on == pool)
        typer.echo(f"work pool {pool!r}: {', '.join(names)}; start a worker: prefect worker start --pool {pool}")


@command(app, "show-config")
def show_config(config: Optional[Path] = ConfigOption) -> None:
    """Print the effective configuration (defaults merged with the file) as YAML."""
    typer.echo(yaml.safe_dump(_config(config).model_dump(mode="json"), sort_keys=False))


def main() -> None:
    """The `prefcurate` entry point."""
    app()


if __name__ == "__main__":
    main()
