"""An annotator in the real Argilla web UI (Playwright driving Debian's Chromium): sign in, open the
queue, pick a label, submit; the next pull sees the answer, mapped to the pair's orientation."""

from __future__ import annotations

import shutil
import uuid

import pytest

from prefcurate.core.config import PrefcurateConfig
from prefcurate.core.store import Store
from prefcurate.pipeline import annotate_pull_stage, annotate_push_stage
from tests.support.annotation import ANNOTATORS, build_store

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def chromium_page(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    if not shutil.which(CHROMIUM):
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; scripts/setup_test_services.sh does it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 900})
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_an_annotator_labels_a_record_in_the_web_ui(argilla_server, chromium_page, tmp_path):
    argilla, home = argilla_server
    settings = argilla.model_copy(deep=True)
    settings.dataset = f"ui-{uuid.uuid4().hex[:8]}"
    settings.server.home = home
    config = PrefcurateConfig(workdir=tmp_path / "out", store={"path": tmp_path / "store.duckdb"}, argilla=settings)
    truths = build_store(config.store.path)
    assert annotate_push_stage(config)["count_out"] == len(truths)

    page = chromium_page
    page.goto(f"{settings.resolved_url}/sign-in")
    page.get_by_label("Username").fill("ann3")
    page.get_by_label("Password").fill(ANNOTATORS["ann3"])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(settings.dataset).first.click()  # the home page lists the workspace's datasets
    page.wait_for_url("**/annotation-mode**")
    shown_a = page.locator(".text_field_component", has=page.get_by_text("Response A", exact=True)).inner_text()
    page.get_by_role("button", name="Response A is better").click()
    page.get_by_role("button", name="Submit").click()
    # The progress bar counts the submission once the server has it.
    page.wait_for_function("() => /Submitted\\s*1/.test(document.body.innerText)")

    pulled = annotate_pull_stage(config)
    assert pulled["new"] == 1 and pulled["responses_by_status"] == {"submitted": 1}
    with Store(config.store.path) as store:
        row = store.one("SELECT a.annotator, a.shown_winner, a.winner, c.text FROM annotations AS a "
                        "JOIN pairs AS p USING (pair_id) JOIN candidates AS c ON c.candidate_id = "
                        "CASE a.winner WHEN 'a' THEN p.candidate_a ELSE p.candidate_b END")
    annotator, shown_winner, _winner, chosen_text = row
    assert (annotator, shown_winner) == ("ann3", "a")
    assert chosen_text in shown_a  # the on-screen A, whichever candidate of the pair it was
