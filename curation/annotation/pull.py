"""Bring annotators' answers back from Argilla into the store's annotations table.

Responses are read through Argilla's REST API (the SDK 2.8 crashes on a discarded response without
values). Each answer is mapped from the order it was shown in back to the pair's orientation and
kept under a key of (record, annotator): pulling again adds nothing, and an answer an annotator
changed since (a draft submitted, a label edited) replaces the stored one. Submitted, discarded and
draft answers are all kept with their status; only submitted ones count as votes. Answers that
cannot be read (a record prefcurate did not push, an unknown label) go to `rejects`.
"""

from __future__ import annotations

import logging
from datetime import datetime

import httpx
import pyarrow as pa

from prefcurate.core.hashing import content_hash
from prefcurate.core.stage_report import StageReport
from prefcurate.core.store import Store
from prefcurate.curation import orientation

log = logging.getLogger("prefcurate.argilla")

ANNOTATION_SCHEMA = pa.schema([
    ("annotation_id", pa.string()), ("pair_id", pa.string()), ("annotator", pa.string()),
    ("winner", pa.string()), ("shown_winner", pa.string()), ("strength", pa.int32()), ("rationale", pa.string()),
    ("status", pa.string()), ("source_record", pa.string()), ("response_updated_at", pa.timestamp("us")),
])
PAGE = 500


class ArgillaReader:
    """The owner's read access to one dataset's records and the server's users."""

    def __init__(self, url: str, api_key: str, timeout_s: float):
        self.client = httpx.Client(base_url=url, headers={"X-Argilla-Api-Key": api_key}, timeout=timeout_s)

    def __enter__(self) -> ArgillaReader:
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()

    def _get(self, path: str, **params) -> dict:
        response = self.client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def usernames(self) -> dict[str, str]:
        return {user["id"]: user["username"] for user in self._get("/api/v1/users")["items"]}

    def records(self, dataset_id: str):
        offset = 0
        while True:
            items = self._get(f"/api/v1/datasets/{dataset_id}/records", include="responses",
                              offset=offset, limit=PAGE)["items"]
            yield from items
            if len(items) < PAGE:
                return
            offset += PAGE


def _value(values: dict | None, question: str):
    return ((values or {}).get(question) or {}).get("value")


def annotation_rows(records, shown_orders: dict[str, tuple[str, str]], usernames: dict[str, str], source: str):
    """(rows, rejects): one row per response on a record prefcurate pushed."""
    rows, rejects = [], []
    for index, record in enumerate(records):
        pushed = shown_orders.get(record.get("external_id"))
        if pushed is None:
            if record.get("responses"):
                rejects.append({"source": source, "source_row": index, "field": "external_id",
                                "reason": f"record {record.get('external_id')!r} was not pushed by prefcurate",
                                "raw": str(record.get("id"))})
            continue
        pair_id, shown_order = pushed
        for response in record.get("responses") or []:
            annotator = usernames.get(response["user_id"], response["user_id"])
            status = response["status"]
            shown_winner = _value(response.get("values"), "preference")
            if shown_winner is not None and shown_winner not in ("a", "b", "tie"):
                rejects.append({"source": source, "source_row": index, "field": "values.preference",
                                "reason": f"unknown preference {shown_winner!r} from {annotator}",
                                "raw": str(response.get("id"))})
                continue
            strength = _value(response.get("values"), "strength")
            rows.append({
                "annotation_id": content_hash("annotation", record["external_id"], annotator),
                "pair_id": pair_id,
                "annotator": annotator,
                "winner": orientation.to_pair(shown_winner, shown_order),
                "shown_winner": shown_winner,
                "strength": None if strength is None else int(strength),
                "rationale": _value(response.get("values"), "rationale"),
                "status": status,
                "source_record": record["external_id"],
                "response_updated_at": datetime.fromisoformat(response["updated_at"]),
            })
    return rows, rejects


def pull_annotations(store: Store, reader: ArgillaReader, dataset_id: str, workspace: str, dataset: str) -> StageReport:
    report = StageReport("annotate-pull")
    pushed = store.con.execute(
        "SELECT record_id, pair_id, shown_order FROM annotation_records WHERE workspace = ? AND dataset = ?",
        [workspace, dataset]).fetchall()
    shown_orders = {record_id: (pair_id, order) for record_id, pair_id, order in pushed}
    rows, rejects = annotation_rows(reader.records(dataset_id), shown_orders, reader.usernames(),
                                    source=f"argilla:{workspace}/{dataset}")
    report.count_in = len(rows) + len(rejects)
    incoming = pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA)
    with store.transaction():
        store.con.register("_pulled", incoming)
        try:
            # New answers, and answers changed in Argilla since the last pull; unchanged ones are skipped.
            changed = store.con.sql("""
                SELECT p.* FROM _pulled AS p
                LEFT JOIN annotations AS a USING (annotation_id)
                WHERE a.annotation_id IS NULL
                   OR a.status IS DISTINCT FROM p.status OR a.winner IS DISTINCT FROM p.winner
                   OR a.strength IS DISTINCT FROM p.strength OR a.rationale IS DISTINCT FROM p.rationale
                   OR a.response_updated_at IS DISTINCT FROM p.response_updated_at""").to_arrow_table()
            new = store.scalar("SELECT count(*) FROM _pulled WHERE annotation_id NOT IN (SELECT annotation_id FROM annotations)")
        finally:
            store.con.unregister("_pulled")
        store.upsert("annotations", changed)
        store.add_rejects("annotate-pull", rejects)
    by_status = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    report.count_out = changed.num_rows
    report.details = {"new": new, "updated": changed.num_rows - new, "unchanged": len(rows) - changed.num_rows,
                      "rejected": len(rejects), "responses_by_status": by_status, "records_pushed": len(shown_orders)}
    log.info("annotate-pull: %d responses read; %d new, %d updated, %d unchanged, %d rejected",
             len(rows), new, changed.num_rows - new, len(rows) - changed.num_rows, len(rejects))
    return report.finish()
