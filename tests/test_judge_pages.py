"""Past judge.page_pairs pairs, the judge plans and asks a page at a time (streamed from the read
snapshot, the store let go while calls are out): the same calls, answers and report as in one go."""

from prefcurate.core.store import Store
from prefcurate.curation.judging.constitution import load_constitution
from prefcurate.curation.judging.judge import judge_pairs
from prefcurate.curation.judging.panel import open_panel
from tests.support.judging import add_judgeable_pairs, judge_config

COUNTED = ("calls_planned", "calls_cached", "calls_made", "valid", "invalid", "position_consistent_pairs")


def judge(store: Store, config, labels: list[str]):
    """The judge stage, noting the label of each batch of calls it asks."""
    def run_batch(label, work):
        labels.append(label)
        work()

    with open_panel(store, config, "unused-models-dir") as panel:
        return judge_pairs(store, panel, load_constitution(None), config, run_batch)


def judged(store: Store) -> set[tuple]:
    return set(store.con.execute("SELECT judgment_id, pair_id, shown_order, winner, valid FROM judgments").fetchall())


def test_pages_of_five_pairs_ask_and_store_what_one_go_does(tmp_path, openai_server):
    config = judge_config(openai_server, principle_sampling="all")  # several calls per pair and order
    results = []
    for page_pairs in (10**6, 5):
        with Store(tmp_path / f"store-{page_pairs}.duckdb", snapshot_every_s=5.0) as store:
            add_judgeable_pairs(store, 12)
            labels = []
            report = judge(store, config.model_copy(update={"page_pairs": page_pairs}), labels)
            again = judge(store, config.model_copy(update={"page_pairs": page_pairs}), [])
            results.append((judged(store), report, labels, again))
    (whole, whole_report, whole_labels, _), (paged, paged_report, paged_labels, paged_again) = results
    assert paged == whole and len(whole) == whole_report.details["calls_planned"] > 12 * 2
    assert {key: paged_report.details[key] for key in COUNTED} == {key: whole_report.details[key] for key in COUNTED}
    assert (paged_report.count_in, paged_report.count_out) == (whole_report.count_in, whole_report.count_out) == (12, 12)
    assert not any(label.startswith("page-") for label in whole_labels)
    assert {label.split("-")[1] for label in paged_labels} == {"1", "2", "3"}  # 12 pairs: pages of 5, 5 and 2
    assert paged_again.details["calls_made"] == 0 and paged_again.details["calls_cached"] == len(paged)


def test_a_store_without_a_read_snapshot_is_judged_in_one_go(tmp_path, openai_server):
    """The pages stream from the snapshot while the store is let go: without one, one go as before."""
    with Store(tmp_path / "store.duckdb") as store:
        add_judgeable_pairs(store, 6)
        labels = []
        report = judge(store, judge_config(openai_server, page_pairs=2), labels)
    assert report.details["calls_made"] == 12 and not any(label.startswith("page-") for label in labels)
