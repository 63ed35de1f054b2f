"""The suspect-label step: pairs whose label `prefcurate suspect` flagged (the pair_suspicion view),
while that label is still the pair's label and not a human's, are dropped, flipped (the models'
side wins; label_source gains `+flipped` and the confidence is the models' probability of the new
label) or held out of the curated set for annotators (`annotate push` sends them with the reason
`suspect`). Every pair acted on is recorded with its evidence (curation_suspects)."""

from __future__ import annotations

from prefcurate.core.config import CurateConfig
from prefcurate.core.store import Store
from prefcurate.curation.funnel.step import StepOutcome

STEP_NAMES = {"drop": "suspect_labels_dropped", "flip": "suspect_labels_flipped",
              "push": "suspect_labels_held_for_annotators"}


def act_on_suspects(store: Store, config: CurateConfig) -> StepOutcome:
    con = store.con
    con.execute("""
        INSERT INTO _curation_suspects
        SELECT w.pair_id, s.suspicion_run_id, $action, w.label, s.p_label
        FROM _curation_prev AS w
        JOIN pair_suspicion AS s ON s.pair_id = w.pair_id
        WHERE s.flagged AND s.label = w.label AND w.label_source <> 'human'""", {"action": config.suspect_labels})
    if config.suspect_labels == "flip":
        con.execute("""
            CREATE TEMP TABLE _curation_step AS
            SELECT * EXCLUDE (flip_p) REPLACE (
                CASE WHEN flip_p IS NULL THEN label WHEN label = 'a' THEN 'b' ELSE 'a' END AS label,
                CASE WHEN flip_p IS NULL THEN label_source ELSE label_source || '+flipped' END AS label_source,
                CASE WHEN flip_p IS NULL THEN confidence ELSE 1 - flip_p END AS confidence)
            FROM (SELECT w.*, x.p_label AS flip_p FROM _curation_prev AS w
                  LEFT JOIN _curation_suspects AS x ON x.pair_id = w.pair_id)""")
    else:
        con.execute("CREATE TEMP TABLE _curation_step AS SELECT * FROM _curation_prev "
                    "WHERE pair_id NOT IN (SELECT pair_id FROM _curation_suspects)")
    acted, runs = store.one("SELECT count(*), list(DISTINCT suspicion_run_id) FROM _curation_suspects")
    return StepOutcome({config.suspect_labels: acted, "suspicion_runs": sorted(runs or [])})
