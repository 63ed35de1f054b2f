-- pair_panel_agreement (label layer): how much the judge panel agrees on each judged pair, across
-- judges x principles x orders.
-- Reads views only (no table directly).
--   pair_id, prompt_id     the pair
--   n_judges               judges with a valid vote on it
--   n_votes, vote_label    valid votes and their strict majority (pair_labels)
--   agreement              share of all valid votes that name the pair's most common winner
--   judge_agreement        share of judges whose own majority names the panel's majority (vote_label)
--   unanimous              every valid vote names the same winner
--   judge_labels           each judge's own majority, as ['judge=a', 'other=split', ...]
CREATE OR REPLACE VIEW pair_panel_agreement AS
WITH per_judge AS (
    SELECT
        pair_id,
        judge,
        count(*) AS n_votes,
        CASE
            WHEN count(*) FILTER (WHERE winner = 'a') > count(*) FILTER (WHERE winner <> 'a') THEN 'a'
            WHEN count(*) FILTER (WHERE winner = 'b') > count(*) FILTER (WHERE winner <> 'b') THEN 'b'
            WHEN count(*) FILTER (WHERE winner = 'tie') > count(*) FILTER (WHERE winner <> 'tie') THEN 'tie'
        END AS judge_label
    FROM judgment_votes
    GROUP BY ALL
)
SELECT
    l.pair_id,
    l.prompt_id,
    count(j.judge) AS n_judges,
    l.n_votes,
    l.vote_label,
    l.agreement,
    avg(CASE WHEN j.judge_label = l.vote_label THEN 1.0 ELSE 0.0 END) AS judge_agreement,
    l.n_votes > 0 AND greatest(l.votes_a, l.votes_b, l.votes_tie) = l.n_votes AS unanimous,
    list(j.judge || '=' || coalesce(j.judge_label, 'split') ORDER BY j.judge) AS judge_labels
FROM pair_labels AS l
JOIN per_judge AS j USING (pair_id)
GROUP BY l.pair_id, l.prompt_id, l.n_votes, l.vote_label, l.agreement, l.votes_a, l.votes_b, l.votes_tie;
