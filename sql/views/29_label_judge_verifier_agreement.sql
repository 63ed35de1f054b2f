-- judge_verifier_agreement (label layer): each judge, and each of its principles, audited against
-- the verifiers for free: on pairs a check decided (exactly one response passed), how often the
-- judge's vote names the response that passed, per domain.
-- Reads: judgments (filled by judge).
--   judge, principle_id     the judge, and the principle it voted under
--   domain                  math, code or constraints (the check that decided the pair)
--   n_votes                 its valid votes on those pairs
--   agreement               share of them naming the passing response (a tie vote counts as a miss)
CREATE OR REPLACE VIEW judge_verifier_agreement AS
SELECT
    v.judge,
    v.principle_id,
    c.principle_id AS domain,
    count(*) AS n_votes,
    avg(CASE WHEN v.winner = c.winner THEN 1.0 ELSE 0.0 END) AS agreement
FROM judgment_votes AS v
JOIN judgments AS c ON c.pair_id = v.pair_id AND c.verdict_kind = 'verifier' AND c.valid
GROUP BY ALL;
