-- Label layer: one row per valid judge vote, in the pair's orientation.
CREATE OR REPLACE VIEW judgment_votes AS
SELECT
    j.judgment_id,
    j.pair_id,
    j.judge,
    j.principle_id,
    j.shown_order,
    j.winner,
    j.confidence,
    j.preference_logit,
    j.template_version,
    j.constitution_version
FROM judgments AS j
WHERE j.valid;
