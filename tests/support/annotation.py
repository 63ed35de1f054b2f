"""Annotation test data: annotator accounts and an annotator's REST client, a store of pairs for
them, and reference agreement figures computed from their definitions."""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx

from prefcurate.core.store import Store
from tests.support.builders import add_call, add_candidates, add_pair, add_prompt

ANNOTATORS = {"ann1": "ann1-password", "ann2": "ann2-password", "ann3": "ann3-password"}

# The web UI's "pending" queue: no answer of mine yet, and the record still needs answers.
PENDING_FOR_ME = {"filters": {"and": [
    {"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["pending"]},
    {"type": "terms", "scope": {"entity": "record", "property": "status"}, "values": ["pending"]},
]}}


class Annotator:
    """An annotator acting through the REST API with their own credentials, as the web UI does."""

    def __init__(self, url: str, username: str):
        token = httpx.post(f"{url}/api/v1/token", data={"username": username, "password": ANNOTATORS[username]})
        token.raise_for_status()
        me = httpx.get(f"{url}/api/v1/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"}).json()
        assert me["role"] == "annotator"
        self.api_key = me["api_key"]
        self.client = httpx.Client(base_url=url, headers={"X-Argilla-Api-Key": self.api_key}, timeout=30)

    def dataset_ids(self) -> list[str]:
        return [d["id"] for d in self.client.get("/api/v1/me/datasets").json()["items"]]

    def pending(self, dataset_id: str) -> list[dict]:
        response = self.client.post(f"/api/v1/me/datasets/{dataset_id}/records/search",
                                    params={"include": "responses", "limit": 50}, json=PENDING_FOR_ME)
        response.raise_for_status()
        return [item["record"] for item in response.json()["items"]]

    def respond(self, record: dict, values: dict | None, status: str = "submitted") -> dict:
        """Answer a record: values as {question: {"value": ...}}, None for a discard without any."""
        response = self.client.post(f"/api/v1/records/{record['id']}/responses",
                                    json={"values": values, "status": status})
        response.raise_for_status()
        return response.json()

    def answer(self, record: dict, label: str | None, status: str = "submitted") -> dict:
        """A preference record's answer: label a / b / tie (strength 2), None for no values."""
        values = None if label is None else {"preference": {"value": label}, "strength": {"value": 2}}
        return self.respond(record, values, status)


def build_store(path: Path) -> dict[str, str]:
    """Four pairs the judges are unsure about (the first position always wins) and two they are
    sure about; returns the better response's text per uncertain pair (what annotators know)."""
    truths = {}
    with Store(path) as store:
        for index in range(6):
            prompt = add_prompt(store, f"Question {'ABCDEF'[index]}: how do {'wxyzuv'[index]}-trees balance?")
            good, bad = f"A careful answer about tree {index}.", f"No idea, tree {index}."
            first, second = add_candidates(store, prompt, [good, bad])
            key, a, _ = add_pair(store, prompt, first, second)
            good_is_a = a == first
            if index < 4:
                add_call(store, key, "ab", "A", p_first=0.6)
                add_call(store, key, "ba", "A", p_first=0.6)
                truths[key] = good
            else:
                add_call(store, key, "ab", "A" if good_is_a else "B", p_first=0.95 if good_is_a else 0.05)
                add_call(store, key, "ba", "B" if good_is_a else "A", p_first=0.05 if good_is_a else 0.95)
    return truths


def reference_alpha_and_kappa(votes: dict[str, list[str | None]]) -> tuple[float, float]:
    """Krippendorff's alpha from its definition over ordered pairs of values (D_o / D_e), and
    Fleiss' kappa from per-item agreeing pairs: independent of the view's closed forms."""
    units = [[v for v in values if v is not None] for values in votes.values()]
    units = [u for u in units if len(u) >= 2]
    pooled = [v for u in units for v in u]
    n = len(pooled)
    d_o = sum(sum(a != b for a, b in itertools.permutations(u, 2)) / (len(u) - 1) for u in units) / n
    d_e = sum(a != b for a, b in itertools.permutations(pooled, 2)) / (n * (n - 1))
    alpha = 1 - d_o / d_e
    p_bar = sum(sum(a == b for a, b in itertools.permutations(u, 2)) / (len(u) * (len(u) - 1)) for u in units) / len(units)
    p_e = sum((pooled.count(c) / n) ** 2 for c in set(pooled))
    return alpha, (p_bar - p_e) / (1 - p_e)
