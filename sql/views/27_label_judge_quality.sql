-- judge_quality (label layer): how good each judge is, for the judge quality report.
-- Reads views only (no table directly).
--   judge, judge_model                         the panel member and the model behind it
--   n_calls, n_valid                           its calls, and those with a valid verdict
--   invalid_rate                               share of calls without a valid verdict (failed or unreadable)
--   unparseable_rate                           share of calls answered but unreadable (unparseable or truncated)
--   n_cut_verdicts                             valid verdicts read from an answer cut at the token limit (cut_answer)
--   tie_rate                                   share of valid verdicts that are ties
--   consistency_rate, position_bias_logit,
--   share_first_position_verdicts              from judge_position_bias
--   mean_confidence                            mean confidence of its valid verdicts
--   n_logprob_confidence                       calls whose confidence came from log-probabilities
--   n_self_reported_confidence                 calls whose confidence the judge stated itself
--   n_gold_votes                               valid votes on pairs with a decisive imported label (gold)
--   gold_agreement                             share of those that match it; a tie vote counts as a miss
CREATE OR REPLACE VIEW judge_quality AS
WITH calls AS (
    SELECT
        j.judge,
        any_value(j.judge_model) AS judge_model,
        count(*) AS n_calls,
        count(*) FILTER (WHERE j.valid) AS n_valid,
        count(*) FILTER (WHERE NOT j.valid) AS n_invalid,
        count(*) FILTER (WHERE j.error_kind IN ('unparseable', 'truncated')) AS n_unreadable,
        count(*) FILTER (WHERE j.valid AND j.winner = 'tie') AS n_ties,
        count(*) FILTER (WHERE j.valid AND j.cut_answer) AS n_cut_verdicts,
        avg(j.confidence) FILTER (WHERE j.valid) AS mean_confidence,
        count(*) FILTER (WHERE j.confidence_source = 'logprobs') AS n_logprob_confidence,
        count(*) FILTER (WHERE j.confidence_source = 'self_report') AS n_self_reported_confidence
    FROM judge_calls AS j
    GROUP BY j.judge
),
gold AS (
    SELECT
        v.judge,
        count(*) AS n_gold_votes,
        avg(CASE WHEN v.winner = l.reference_label THEN 1.0 ELSE 0.0 END) AS gold_agreement
    FROM judgment_votes AS v
    JOIN pair_labels AS l USING (pair_id)
    WHERE l.reference_label IN ('a', 'b')
    GROUP BY v.judge
)
SELECT
    c.judge,
    c.judge_model,
    c.n_calls,
    c.n_valid,
    c.n_invalid / c.n_calls AS invalid_rate,
    c.n_unreadable / c.n_calls AS unparseable_rate,
    c.n_cut_verdicts,
    c.n_ties / nullif(c.n_valid, 0) AS tie_rate,
    b.consistency_rate,
    b.position_bias_logit,
    b.share_first_position_verdicts,
    c.mean_confidence,
    c.n_logprob_confidence,
    c.n_self_reported_confidence,
    coalesce(g.n_gold_votes, 0) AS n_gold_votes,
    g.gold_agreement
FROM calls AS c
LEFT JOIN judge_position_bias AS b USING (judge)
LEFT JOIN gold AS g USING (judge);

-- judge_principle_quality (label layer): each principle as each judge applies it.
--   judge, principle_id, principle_axis   the judge, and the principle with its axis
--   n_votes                               valid votes under it
--   tie_rate                              share of them that are ties
--   panel_agreement                       share that name the pair's panel majority (vote_label)
--   longer_win_rate                       share of decisive votes won by the longer response (texts of
--                                         different length): a principle far above 0.5 rewards length
--   first_position_rate                   share of decisive verdicts for the response shown first
--   gold_agreement                        share that match a decisive imported label, where there is one
CREATE OR REPLACE VIEW judge_principle_quality AS
SELECT
    v.judge,
    v.principle_id,
    any_value(j.principle_axis) AS principle_axis,
    count(*) AS n_votes,
    avg(CASE WHEN v.winner = 'tie' THEN 1.0 ELSE 0.0 END) AS tie_rate,
    avg(CASE WHEN v.winner = l.vote_label THEN 1.0 ELSE 0.0 END) AS panel_agreement,
    avg(CASE WHEN (v.winner = 'a') = (length(t.text_a) > length(t.text_b)) THEN 1.0 ELSE 0.0 END)
        FILTER (WHERE v.winner <> 'tie' AND length(t.text_a) <> length(t.text_b)) AS longer_win_rate,
    avg(CASE WHEN j.verdict_shown = 'A' THEN 1.0 ELSE 0.0 END) FILTER (WHERE v.winner <> 'tie') AS first_position_rate,
    avg(CASE WHEN v.winner = l.reference_label THEN 1.0 ELSE 0.0 END)
        FILTER (WHERE l.reference_label IN ('a', 'b')) AS gold_agreement
FROM judgment_votes AS v
JOIN judge_calls AS j USING (judgment_id)
JOIN pair_labels AS l ON l.pair_id = v.pair_id
JOIN pair_texts AS t ON t.pair_id = v.pair_id
GROUP BY v.judge, v.principle_id;
