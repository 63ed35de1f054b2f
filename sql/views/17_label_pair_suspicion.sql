-- pair_suspicion (label layer): per pair, the latest `prefcurate suspect` evidence about its label.
-- Curation and annotation push act on it only while the pair's label is still the one checked.
-- Reads: pair_label_suspicion (filled by suspect); suspicion_runs (filled by suspect).
--   pair_id, suspicion_run_id   the pair, and the detection that last saw it
--   label, label_source         the label checked, and where it came from
--   oof_margin                  mean reward(a) - reward(b) of the fold models that did not see the pair
--   p_label                     their probability of the label (sigmoid of the margin toward it)
--   flagged                     p_label at most suspicion.max_label_probability (never for human labels)
--   checked_at                  when the detection ran
CREATE OR REPLACE VIEW pair_suspicion AS
SELECT
    s.pair_id,
    s.suspicion_run_id,
    s.label,
    s.label_source,
    s.oof_margin,
    s.p_label,
    s.flagged,
    r.created_at AS checked_at
FROM pair_label_suspicion AS s
JOIN suspicion_runs AS r USING (suspicion_run_id)
QUALIFY row_number() OVER (PARTITION BY s.pair_id ORDER BY r.created_at DESC, s.suspicion_run_id) = 1;
