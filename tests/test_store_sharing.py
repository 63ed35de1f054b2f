"""Flows share the store (issue 26, part 2): a long judge run holds the file only while it commits,
so another writer (an annotation pull, an import) gets in between its commits instead of waiting
for the whole stage, and the judge loses nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from prefcurate.core.store import Store
from tests.support.judging import add_judgeable_pairs, judge_command
from tests.support.openai_server import Behaviour, OpenAICompatServer


@pytest.mark.slow  # a judge process of ~10 s beside a second writer
def test_another_writer_gets_in_between_a_long_judge_runs_commits(tmp_path, shared_prefect_server):
    _, env = shared_prefect_server
    store_path = tmp_path / "store.duckdb"
    with Store(store_path) as store:
        add_judgeable_pairs(store, 100)  # 200 calls at 4 in flight and 0.15 s: ~8 s of calls
    with OpenAICompatServer(Behaviour(latency_s=0.15)) as server:
        config_path = tmp_path / "judge.yaml"
        config_path.write_text(yaml.safe_dump({
            "workdir": str(tmp_path / "out"), "store": {"path": str(store_path), "lock_timeout_s": 30},
            "judge": {"commit_every": 16, "panel": [{"output_format": "json_schema", "backend": {
                "kind": "openai", "model": "test-model", "base_url": server.base_url, "max_concurrency": 4}}]}}))
        judge = subprocess.Popen(judge_command(config_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
        waits, written = [], 0
        while judge.poll() is None:
            if len(server.requests) < 20:  # the judge's calls have started (it let go of the file)
                time.sleep(0.05)
                continue
            started = time.monotonic()
            with Store(store_path, lock_timeout_s=20) as other:  # a second writer, e.g. an annotation pull
                waits.append(time.monotonic() - started)
                with other.transaction():
                    written += other.insert_new("rejects", pa.Table.from_pylist([{
                        "reject_id": f"other-writer-{written}", "stage": "test", "source": "other writer",
                        "reason": "written while the judge ran"}]))
            if len(waits) >= 5:
                break
            time.sleep(0.3)
        still_running = judge.poll() is None
        output, _ = judge.communicate(timeout=120)
    assert judge.returncode == 0, output[-3000:]
    assert len(waits) == 5 and written == 5 and still_running, "the second writer did not get in while the judge ran"
    assert max(waits) < 10, waits  # at commit granularity, not the stage's length
    with Store(store_path, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM judgments WHERE valid") == 200
        assert store.scalar("SELECT count(*) FROM rejects WHERE stage = 'test'") == 5


def test_a_store_says_whether_it_is_released_and_a_writer_commits_less_often_only_then(tmp_path):
    from prefcurate.curation.answer_writer import AnswerWriter

    with Store(tmp_path / "store.duckdb") as store:
        committed = []
        writer = AnswerWriter(store, lambda items: None, every=2, committed=committed.append)
        assert store.is_released is False
        for item in range(4):
            writer.add(item)
        assert committed == [[0, 1], [2, 3]]  # every 2, as asked
        with store.released():
            assert store.is_released is True
            for item in range(4, 8):
                writer.add(item)
            assert len(committed) == 2  # released: at most one commit a second
            writer.flush()
        assert committed[-1] == [4, 5, 6, 7] and store.is_released is False


def test_a_released_writer_spaces_its_commits_by_what_the_last_one_cost(tmp_path, monkeypatch):
    """At 20M judgments a released commit costs ~2 s (DuckDB loads and checkpoints the key index):
    commits then come at least ten times that apart, not every RELEASED_COMMIT_SECONDS."""
    from prefcurate.curation import answer_writer
    from prefcurate.curation.answer_writer import AnswerWriter

    monkeypatch.setattr(answer_writer, "RELEASED_COMMIT_SECONDS", 0.0)
    with Store(tmp_path / "store.duckdb") as store:
        committed = []
        writer = AnswerWriter(store, lambda items: None, every=1, committed=committed.append)
        with store.released():
            writer.add(0)
            assert committed == [[0]] and writer.commit_seconds > 0  # measured: the file taken, committed, let go
            writer.commit_seconds = 0.1  # as if that commit had cost 0.1 s: the next comes 1 s later at the earliest
            started = time.monotonic()
            writer.add(1)
            time.sleep(0.5)
            writer.add(2)
            assert committed == [[0]], "committed again before ten times the last commit's cost"
            time.sleep(max(0.0, 1.05 - (time.monotonic() - started)))
            writer.add(3)
            assert committed == [[0], [1, 2, 3]]


def test_a_commit_while_released_publishes_a_snapshot_as_new_as_the_store(tmp_path):
    """Checkpoint first, then publish: else the store file is newer than the snapshot just published,
    and the next writer and every reader take the snapshot for stale."""
    from prefcurate.core.store import _staleness, snapshot_path

    with Store(tmp_path / "store.duckdb", snapshot_every_s=0.0) as store:
        # publishes are spaced to 10x the last one's cost (publish_snapshot); past that, this commit publishes
        time.sleep(0.05 + 11 * store._publish_cost)
        with store.released():
            with store.transaction():
                store.insert_new("rejects", pa.Table.from_pylist([{
                    "reject_id": "r1", "stage": "test", "source": "test", "reason": "a write while released"}]))
            assert store._unpublished is False  # it did publish
            assert _staleness(store.path, snapshot_path(store.path)) is None


def test_a_writer_that_wrote_nothing_copies_nothing_and_writers_taking_turns_space_their_publishes(tmp_path):
    """The snapshot's own file time spaces publishes, so N writer processes taking turns publish no more
    often than one would; a writer that changed nothing leaves the snapshot as it is."""
    from prefcurate.core.store import _staleness, snapshot_path

    path = tmp_path / "store.duckdb"
    Store(path, snapshot_every_s=30.0).close()
    snapshot = snapshot_path(path)
    published = snapshot.stat().st_mtime_ns
    time.sleep(0.02)
    Store(path, snapshot_every_s=30.0).close()  # opened and closed, nothing written
    assert snapshot.stat().st_mtime_ns == published

    def write_one(store: Store, reject_id: str) -> None:
        with store.transaction():
            store.insert_new("rejects", pa.Table.from_pylist([{
                "reject_id": reject_id, "stage": "test", "source": "test", "reason": "a write"}]))

    with Store(path, snapshot_every_s=30.0) as other_process:
        write_one(other_process, "r1")
        assert not other_process.publish_snapshot()  # 30 s since the snapshot was made, whoever made it
        assert snapshot.stat().st_mtime_ns == published
    # its close publishes what it wrote, and the copy is the store as it is now
    assert _staleness(path, snapshot) is None
    with duckdb.connect(str(snapshot), read_only=True) as reader:
        assert reader.execute("SELECT reject_id FROM rejects").fetchall() == [("r1",)]


def _another_process_writes(path, reject_id: str) -> None:
    """A write from another process that will not wait for the store: it fails if anyone holds it."""
    ran = subprocess.run([sys.executable, "-c", (
        "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
        "con.execute(\"INSERT OR IGNORE INTO rejects (reject_id, stage, source, reason) VALUES (?, 'test', 'test', 'between')\", "
        "[sys.argv[2]]); con.close()"), str(path), reject_id], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr


def test_curate_holds_the_store_only_to_commit_and_another_writer_gets_in_between(tmp_path, monkeypatch):
    """The funnel runs on the read snapshot and the run's rows go in commits of COMMIT_ROWS: another
    process writes while the funnel runs and between two commits, and the run is still whole."""
    from prefcurate.core.config import config_from_dict
    from prefcurate.curation.funnel import curate as curate_module
    from prefcurate.pipeline import curate_stage
    from tests.support.builders import judged_store

    config = config_from_dict({"workdir": str(tmp_path / "out"), "store": {"path": str(tmp_path / "store.duckdb")},
                               "curate": {"dedup": {"near": {"enabled": False}}}})
    judged_store(config.store.path, 12)
    monkeypatch.setattr(curate_module, "COMMIT_ROWS", 5)
    select, commits = curate_module._select, []

    def select_while_another_writes(work, curate_config):
        _another_process_writes(config.store.path, "during the funnel")
        return select(work, curate_config)

    real_transaction = Store.transaction

    def counted_transaction(store, publish=False):
        if store.is_released and len(commits) == 1:
            _another_process_writes(config.store.path, "between two commits")
        commits.append(publish)
        return real_transaction(store, publish)

    monkeypatch.setattr(curate_module, "_select", select_while_another_writes)
    monkeypatch.setattr(Store, "transaction", counted_transaction)
    summary = curate_stage(config)

    assert len(commits) >= 4 and commits.count(True) == 1  # 12 pairs by 5 and the rest; the funnel's publishes
    with Store(config.store.path) as store:
        assert {row[0] for row in store.con.execute("SELECT reject_id FROM rejects").fetchall()} == {
            "during the funnel", "between two commits"}
        run = summary["curation_run_id"]
        assert store.scalar("SELECT count(*) FROM curated_pairs WHERE curation_run_id = ?", [run]) == 12
        assert store.scalar("SELECT count(*) FROM curation_runs WHERE curation_run_id = ?", [run]) == 1
    exported = sum(pq.read_metadata(path).num_rows for path in Path(summary["output_dir"]).glob("*.parquet"))
    assert exported == 12  # the export read the snapshot the last commit published
    again = curate_stage(config)
    assert again["curation_run_id"] == run and again["new_run"] is False


def test_while_another_flow_holds_the_store_answers_are_buffered_not_waited_for(tmp_path, monkeypatch):
    """A released writer that finds the file taken keeps its answers and tries again later, so the
    calls feeding it never stop for another flow's write; the last flush waits for the file."""
    from prefcurate.curation import answer_writer
    from prefcurate.curation.answer_writer import AnswerWriter

    monkeypatch.setattr(answer_writer, "RELEASED_COMMIT_SECONDS", 0.0)
    path = tmp_path / "store.duckdb"
    with Store(path, lock_timeout_s=30) as store:
        committed = []
        writer = AnswerWriter(store, lambda items: None, every=1, committed=committed.append)
        with store.released():
            holder = subprocess.Popen([sys.executable, "-c", (
                "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('held', flush=True); "
                "time.sleep(3); con.close()"), str(path)], stdout=subprocess.PIPE, text=True)
            try:
                assert holder.stdout.readline().strip() == "held"
                started = time.monotonic()
                for item in range(5):
                    writer.add(item)
                    time.sleep(0.3)  # past the retry delay: every add after the first tries the file again
                assert committed == [] and time.monotonic() - started < 2.5  # none of them waited for the file
                writer.flush()  # the last flush waits for the holder to let go
                assert committed == [[0, 1, 2, 3, 4]]
            finally:
                holder.kill()
                holder.wait()


def test_publishing_the_snapshot_keeps_the_store_locked_against_other_writers(tmp_path):
    """DuckDB's lock is a POSIX record lock, lost when the process closes any descriptor of the file:
    a snapshot copied by opening and closing the store file let another writer in beside this one
    (bench/concurrent_flows.py found a WAL from an older checkpoint: two writers at once)."""
    path = tmp_path / "store.duckdb"
    with Store(path, snapshot_every_s=0.0) as store:
        with store.transaction():
            store.insert_new("rejects", pa.Table.from_pylist([{
                "reject_id": "r1", "stage": "test", "source": "test", "reason": "a write"}]))
        assert store.publish_snapshot(force=True)
        with pytest.raises(AssertionError, match="lock"):
            _another_process_writes(path, "while held")
        assert store.publish_snapshot(force=True)  # the copy descriptor is kept, and reused
        with pytest.raises(AssertionError, match="lock"):
            _another_process_writes(path, "while held")
    _another_process_writes(path, "after close")  # closing lets go of the file for real


@pytest.mark.parametrize("kernel_copies", ["all", "part, then refuses", "nothing"])
def test_the_snapshot_is_the_store_byte_for_byte_however_much_the_kernel_copies(tmp_path, monkeypatch,
                                                                                 kernel_copies):
    """Published with copy_file_range where the kernel can, by reading and writing where it cannot,
    from where the kernel stopped (an old kernel, another file system)."""
    import os

    real = os.copy_file_range
    calls = []

    def copy_file_range(source, target, count, offset_source, offset_target):
        calls.append(offset_source)
        if kernel_copies == "nothing" or (kernel_copies != "all" and offset_source > 0):  # every publish stops part way
            raise OSError(38, "Function not implemented")
        return real(source, target, count if kernel_copies == "all" else min(count, 12_345), offset_source,
                    offset_target)

    monkeypatch.setattr(os, "copy_file_range", copy_file_range)
    with Store(tmp_path / "store.duckdb", snapshot_every_s=5.0) as store:
        add_judgeable_pairs(store, 30)
        assert store.publish_snapshot(force=True)
        copied = (tmp_path / "store.duckdb.snapshot").read_bytes()
        assert copied == (tmp_path / "store.duckdb").read_bytes() and calls
    with duckdb.connect(str(tmp_path / "store.duckdb.snapshot"), read_only=True) as snapshot:
        assert snapshot.execute("SELECT count(*) FROM pairs").fetchone()[0] == 30


def test_a_curate_whose_commit_finds_the_store_busy_says_so(tmp_path, monkeypatch):
    """The run's rows stream from the snapshot into commits: when one cannot take the store (another
    writer held it past store.lock_timeout_s), that is the error, not the snapshot connection's
    "open result" from the stream left open, which the funnel's clean-up on it used to raise."""
    from prefcurate.core.config import config_from_dict
    from prefcurate.core.store import StoreBusyError
    from prefcurate import pipeline
    from prefcurate.curation.funnel import curate as curate_module
    from prefcurate.pipeline import curate_stage
    from tests.support.builders import judged_store

    config = config_from_dict({"workdir": str(tmp_path / "out"), "store": {"path": str(tmp_path / "store.duckdb")},
                               "curate": {"dedup": {"near": {"enabled": False}}}})
    judged_store(config.store.path, 12)
    monkeypatch.setattr(curate_module, "COMMIT_ROWS", 5)
    real_transaction, real_store_curation, commits = Store.transaction, curate_module.store_curation, []

    def storing(store, work, result):
        commits.append("storing")
        return real_store_curation(store, work, result)

    def busy_on_the_second_commit_of_the_run(store, publish=False):
        if commits:
            commits.append(publish)
            if len(commits) == 3:  # the run's rows half stored
                raise StoreBusyError(f"cannot open the store {store.path}: another writer holds it")
        return real_transaction(store, publish)

    monkeypatch.setattr(pipeline, "store_curation", storing)
    monkeypatch.setattr(Store, "transaction", busy_on_the_second_commit_of_the_run)
    with pytest.raises(StoreBusyError, match="another writer holds it"):
        curate_stage(config)
    assert len(commits) == 3
    monkeypatch.setattr(Store, "transaction", real_transaction)
    summary = curate_stage(config)  # run again: completes the run
    with Store(config.store.path) as store:
        assert store.scalar("SELECT count(*) FROM curated_pairs WHERE curation_run_id = ?",
                            [summary["curation_run_id"]]) == 12
