-- judge_agreement (label layer): how often two judges name the same winner on the pairs both labelled,
-- whatever their modes: a rating judge against the pairwise judge on the same pairs, a ranking judge
-- against either. Each judge's label on a pair is its own verdict over all its votes there
-- (judge_pair_verdicts); ties count as labels.
-- Reads views only (no table directly).
--   judge, other_judge         the two judges (judge < other_judge)
--   judge_mode, other_mode     pairwise, rating or ranking
--   n_pairs                    pairs both gave a label
--   agreement                  share of them where the labels are the same
--   n_decisive, decisive_agreement   the same over the pairs where neither label is a tie
CREATE OR REPLACE VIEW judge_agreement AS
WITH modes AS (
    SELECT judge, any_value(mode) AS mode FROM judgment_votes GROUP BY judge
)
SELECT
    x.judge,
    y.judge AS other_judge,
    mx.mode AS judge_mode,
    my.mode AS other_mode,
    count(*) AS n_pairs,
    avg((x.label = y.label)::INTEGER) AS agreement,
    count(*) FILTER (WHERE x.label <> 'tie' AND y.label <> 'tie') AS n_decisive,
    avg((x.label = y.label)::INTEGER) FILTER (WHERE x.label <> 'tie' AND y.label <> 'tie') AS decisive_agreement
FROM judge_pair_verdicts AS x
JOIN judge_pair_verdicts AS y ON y.pair_id = x.pair_id AND y.judge > x.judge
JOIN modes AS mx ON mx.judge = x.judge
JOIN modes AS my ON my.judge = y.judge
WHERE x.label IS NOT NULL AND y.label IS NOT NULL
GROUP BY x.judge, y.judge, mx.mode, my.mode;
