"""Flows share the store (issue 26, part 2): a long judge run holds the file only while it commits,
so another writer (an annotation pull, an import) gets in between its commits instead of waiting
for the whole stage, and the judge loses nothing."""

from __future__ import annotations

import subprocess
import time

import duckdb
import pyarrow as pa
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
