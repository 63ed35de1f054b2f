-- score_votes (label layer): the preference each score rater's scores give on each pair whose two
-- candidates it scored, as a vote like a pairwise judge's (judgment_votes takes the judges',
-- annotation_votes the annotators', pair_labels the imported datasets' as reference labels).
-- A rating rater votes once per pair, from its mean scores; a ranking judge once per call, from the
-- places it gave the two candidates, with the order they were shown in (so its position consistency
-- is measured as a pairwise judge's is).
-- Reads: score_calls (filled by judge (rating, ranking)); pairs (filled by pairs; import-pairs; refresh
--    rounds).
--   vote_id                                   'score:' and a hash of (rater, call, pair)
--   pair_id, rater, rater_kind, mode          the pair, who scored, judge / human / import, rating / ranking
--   principle_id                              'rating' or 'ranking': the comparison's key in position checks
--   shown_order                               ranking: ab when candidate_a was shown before candidate_b, else
--                                             ba; rating: NULL (each response is scored alone)
--   winner                                    a, b, or tie when the scores are equal
--   score_a, score_b                          the two scores (rating: rater_scores.score; ranking: its points)
--   margin                                    score_a - score_b on the rater's scale
--   normalized_margin                         the same on the rater's normalized scale
--   confidence                                rating with log-probabilities: P(winner), the scores taken as
--                                             normal with their spread; NULL otherwise (none stated)
--   preference_logit                          log P(a) - log P(b) under the same reading (probit ~ 1.702 logit)
--   template_version, constitution_version    of the call(s) behind it (judges), NULL otherwise
--   cut_answer                                a call behind it was cut at the token limit
CREATE OR REPLACE VIEW score_votes AS
WITH rating AS (
    SELECT
        p.pair_id,
        sa.rater,
        sa.rater_kind,
        sa.score AS score_a,
        sb.score AS score_b,
        sa.normalized_score - sb.normalized_score AS normalized_margin,
        CASE WHEN sa.score_sd IS NOT NULL AND sb.score_sd IS NOT NULL
             THEN 1.702 * (sa.score - sb.score)
                  / sqrt(greatest(sa.score_sd * sa.score_sd + sb.score_sd * sb.score_sd, 1e-4)) END AS preference_logit
    FROM pairs AS p
    JOIN rater_scores AS sa ON sa.candidate_id = p.candidate_a AND sa.mode = 'rating'
    JOIN rater_scores AS sb ON sb.candidate_id = p.candidate_b AND sb.mode = 'rating' AND sb.rater = sa.rater
),
rating_calls AS (
    SELECT
        c.judge AS rater,
        cs.candidate_id,
        any_value(c.template_version) AS template_version,
        any_value(c.constitution_version) AS constitution_version,
        bool_or(c.cut_answer) AS cut_answer
    FROM score_calls AS c
    JOIN candidate_scores AS cs USING (call_id)
    WHERE c.mode = 'rating'
    GROUP BY ALL
),
ranking AS (
    SELECT
        p.pair_id,
        sa.rater,
        sa.rater_kind,
        sa.call_id,
        CASE WHEN sa.shown_position < sb.shown_position THEN 'ab' ELSE 'ba' END AS shown_order,
        sa.score AS score_a,
        sb.score AS score_b
    FROM pairs AS p
    JOIN candidate_scores AS sa ON sa.candidate_id = p.candidate_a AND sa.mode = 'ranking'
    JOIN candidate_scores AS sb ON sb.candidate_id = p.candidate_b AND sb.mode = 'ranking' AND sb.call_id = sa.call_id
                                   AND sb.rater = sa.rater
),
ranking_normalized AS (
    SELECT rater, candidate_id, normalized_score FROM rater_scores WHERE mode = 'ranking'
)
SELECT
    'score:' || md5(r.rater || ':rating:' || r.pair_id) AS vote_id,
    r.pair_id,
    r.rater,
    r.rater_kind,
    'rating' AS mode,
    'rating' AS principle_id,
    NULL::VARCHAR AS shown_order,
    CASE WHEN r.score_a > r.score_b THEN 'a' WHEN r.score_a < r.score_b THEN 'b' ELSE 'tie' END AS winner,
    r.score_a,
    r.score_b,
    r.score_a - r.score_b AS margin,
    r.normalized_margin,
    CASE WHEN r.preference_logit IS NOT NULL AND r.score_a <> r.score_b
         THEN 1.0 / (1.0 + exp(-abs(r.preference_logit))) END AS confidence,
    r.preference_logit,
    ca.template_version,
    ca.constitution_version,
    coalesce(ca.cut_answer OR cb.cut_answer, false) AS cut_answer
FROM rating AS r
JOIN pairs AS p USING (pair_id)
LEFT JOIN rating_calls AS ca ON ca.rater = r.rater AND ca.candidate_id = p.candidate_a
LEFT JOIN rating_calls AS cb ON cb.rater = r.rater AND cb.candidate_id = p.candidate_b
UNION ALL
SELECT
    'score:' || md5(k.rater || ':' || k.call_id || ':' || k.pair_id) AS vote_id,
    k.pair_id,
    k.rater,
    k.rater_kind,
    'ranking' AS mode,
    'ranking' AS principle_id,
    k.shown_order,
    CASE WHEN k.score_a > k.score_b THEN 'a' WHEN k.score_a < k.score_b THEN 'b' ELSE 'tie' END AS winner,
    k.score_a,
    k.score_b,
    k.score_a - k.score_b AS margin,
    na.normalized_score - nb.normalized_score AS normalized_margin,
    NULL::DOUBLE AS confidence,
    NULL::DOUBLE AS preference_logit,
    c.template_version,
    c.constitution_version,
    coalesce(c.cut_answer, false) AS cut_answer
FROM ranking AS k
JOIN pairs AS p USING (pair_id)
LEFT JOIN score_calls AS c USING (call_id)
LEFT JOIN ranking_normalized AS na ON na.rater = k.rater AND na.candidate_id = p.candidate_a
LEFT JOIN ranking_normalized AS nb ON nb.rater = k.rater AND nb.candidate_id = p.candidate_b;
