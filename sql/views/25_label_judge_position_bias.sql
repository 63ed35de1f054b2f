-- judge_position_bias (label layer): how much each judge leans on position.
-- Reads views only (no table directly).
--   judge                            the judge
--   n_valid_calls                    its calls with a valid verdict
--   position_bias_logit              mean log P(first shown) - log P(second shown); 0 is unbiased
--   share_first_position_verdicts    share of its verdicts for the response shown first
--   n_comparisons                    its (pair, principle) comparisons asked in both orders
--   consistency_rate                 share of those whose two orders name the same winner
CREATE OR REPLACE VIEW judge_position_bias AS
WITH per_call AS (
    SELECT
        judge,
        pair_id,
        principle_id,
        shown_order,
        winner,
        CASE shown_order WHEN 'ab' THEN preference_logit ELSE -preference_logit END AS first_position_logit,
        verdict_shown
    FROM judge_calls
    WHERE valid
),
comparisons AS (
    SELECT judge, pair_id, principle_id,
           count(DISTINCT shown_order) = 2 AND count(DISTINCT winner) = 1 AS consistent,
           count(DISTINCT shown_order) = 2 AS complete
    FROM per_call
    GROUP BY ALL
)
SELECT
    c.judge,
    (SELECT count(*) FROM per_call p WHERE p.judge = c.judge) AS n_valid_calls,
    (SELECT avg(first_position_logit) FROM per_call p WHERE p.judge = c.judge) AS position_bias_logit,
    (SELECT avg(CASE WHEN verdict_shown = 'A' THEN 1.0 ELSE 0.0 END) FROM per_call p WHERE p.judge = c.judge)
        AS share_first_position_verdicts,
    count(*) FILTER (WHERE complete) AS n_comparisons,
    avg(CASE WHEN consistent THEN 1.0 ELSE 0.0 END) FILTER (WHERE complete) AS consistency_rate
FROM comparisons AS c
GROUP BY c.judge;
