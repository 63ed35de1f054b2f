-- verifier_verdicts (label layer): per pair, what the verifiers found (curation/verifiers/).
-- Reads: judgments (filled by judge).
--   pair_id                   the pair
--   n_verifier_verdicts       verifier judgments of the pair (one per domain checked)
--   n_decisive                those where exactly one response passed
--   verifier_label            a or b: the response that passed, when every decisive check agrees
--   verifier_domains          the domains that decided it (math, code, constraints)
CREATE OR REPLACE VIEW verifier_verdicts AS
SELECT
    pair_id,
    count(*) AS n_verifier_verdicts,
    count(*) FILTER (WHERE valid) AS n_decisive,
    CASE WHEN count(DISTINCT winner) FILTER (WHERE valid) = 1 THEN any_value(winner) FILTER (WHERE valid) END
        AS verifier_label,
    string_agg(DISTINCT principle_id, ',' ORDER BY principle_id) FILTER (WHERE valid) AS verifier_domains
FROM judgments
WHERE verdict_kind = 'verifier'
GROUP BY pair_id;
