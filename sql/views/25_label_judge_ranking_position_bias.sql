-- judge_ranking_position_bias (label layer): how much each ranking judge leans on the order it is
-- shown the responses in. A judge without a bias puts the first shown on top in 1/n of its calls;
-- one that always does is ranking positions, not responses. Asked in both orders, its two rankings
-- of a prompt agree on every pair of responses when position plays no part.
-- Reads: score_calls (filled by judge (ranking)); candidate_scores (filled by judge (ranking)).
--   judge                      the ranking judge
--   n_calls                    its valid ranking calls
--   first_shown_top_share      share of them that rank the response shown first as best
--   expected_top_share         the same for a judge blind to position: mean of 1 / responses shown
--   mean_first_shown_rank      mean rank given the response shown first (1 = best)
--   n_prompts_both_orders      prompts it ranked in both orders (valid both times)
--   order_agreement            share of response pairs on which its two orders agree (Kendall's
--                              concordance between the two rankings); NULL without both orders
CREATE OR REPLACE VIEW judge_ranking_position_bias AS
WITH ranks AS (
    SELECT c.judge, c.prompt_id, c.call_id, c.shown_order, s.candidate_id, s.stated_score AS rank, s.shown_position,
           s.scale_max AS n_shown
    FROM score_calls AS c
    JOIN candidate_scores AS s USING (call_id)
    WHERE c.valid AND c.mode = 'ranking'
),
per_call AS (
    SELECT judge, call_id,
           bool_or(shown_position = 1 AND rank = 1) AS first_on_top,
           any_value(rank) FILTER (WHERE shown_position = 1) AS first_shown_rank,
           1.0 / any_value(n_shown) AS blind_top_share
    FROM ranks
    GROUP BY judge, call_id
),
both_orders AS (
    SELECT f.judge, f.prompt_id, f.candidate_id, f.rank AS forward_rank, r.rank AS reversed_rank
    FROM ranks AS f
    JOIN ranks AS r ON r.judge = f.judge AND r.prompt_id = f.prompt_id AND r.candidate_id = f.candidate_id
                       AND r.shown_order = 'reversed'
    WHERE f.shown_order = 'forward'
),
agreement AS (
    SELECT x.judge,
           count(DISTINCT x.prompt_id) AS n_prompts_both_orders,
           avg((sign(x.forward_rank - y.forward_rank) = sign(x.reversed_rank - y.reversed_rank))::INTEGER)
               AS order_agreement
    FROM both_orders AS x
    JOIN both_orders AS y ON y.judge = x.judge AND y.prompt_id = x.prompt_id AND y.candidate_id > x.candidate_id
    GROUP BY x.judge
)
SELECT
    p.judge,
    count(*) AS n_calls,
    avg(p.first_on_top::INTEGER) AS first_shown_top_share,
    avg(p.blind_top_share) AS expected_top_share,
    avg(p.first_shown_rank) AS mean_first_shown_rank,
    coalesce(any_value(a.n_prompts_both_orders), 0) AS n_prompts_both_orders,
    any_value(a.order_agreement) AS order_agreement
FROM per_call AS p
LEFT JOIN agreement AS a USING (judge)
GROUP BY p.judge;
