-- rater_scores (label layer): each rater's score for each candidate it scored, averaged over aspects
-- and calls (a ranking judge's two orders average out its preference for a position), with the
-- score normalized per rater: a rater who gives everything 4-5 is not more sure than one who
-- spreads 1-5, so pairs and labels compare raters on their own spread.
-- Reads: candidate_scores (filled by judge (rating, ranking), annotate pull, import-ratings).
--   rater, rater_kind            the judge, annotator or imported dataset; judge / human / import
--   mode                         rating or ranking
--   prompt_id, candidate_id      the candidate scored
--   score                        mean score over aspects and calls, higher is better, on the rater's scale
--   score_sd                     its standard deviation from log-probabilities (NULL without them)
--   scale_min, scale_max         the scale (a ranking's: 1 to the number of candidates ranked)
--   n_scores, n_calls            scores and calls (or records) behind it
--   normalized_score             (score - the rater's mean) / the rater's standard deviation, over every
--                                candidate it scored in this mode; 0 when it never varies
CREATE OR REPLACE VIEW rater_scores AS
WITH per_candidate AS (
    SELECT
        rater,
        any_value(rater_kind) AS rater_kind,
        mode,
        any_value(prompt_id) AS prompt_id,
        candidate_id,
        avg(score) AS score,
        -- the mean of independent scores: its variance is the sum of theirs over n^2
        CASE WHEN count(score_sd) = count(*) THEN sqrt(sum(score_sd * score_sd)) / count(*) END AS score_sd,
        min(scale_min) AS scale_min,
        max(scale_max) AS scale_max,
        count(*) AS n_scores,
        count(DISTINCT call_id) AS n_calls
    FROM candidate_scores
    GROUP BY rater, mode, candidate_id
)
SELECT
    *,
    coalesce((score - avg(score) OVER rater_mode) / nullif(stddev_pop(score) OVER rater_mode, 0), 0.0)
        AS normalized_score
FROM per_candidate
WINDOW rater_mode AS (PARTITION BY rater, mode);
