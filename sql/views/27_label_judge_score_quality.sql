-- judge_score_quality (label layer): each rating and ranking judge (and annotator, and rated import)
-- as a rater of candidates: how its scores spread (what the normalization divides by), how sure its
-- log-probabilities made it, and how often its calls could not be read.
-- Reads: score_calls (filled by judge (rating, ranking)).
--   rater, rater_kind, mode      the rater; judge / human / import; rating / ranking
--   n_candidates                 candidates it scored
--   mean_score, sd_score         its scores' mean and standard deviation (rater_scores): a rater whose
--                                scores barely vary (all 4-5) has a small sd, and its normalized
--                                margins are scaled up by it
--   scale_min, scale_max         the scale it scored on
--   mean_score_sd                mean spread of a score under its log-probabilities (NULL without them)
--   n_calls, n_valid             its calls (judges only), and those that gave scores
--   invalid_rate, n_cut_answers  share of its calls without scores, and valid calls cut at the token limit
CREATE OR REPLACE VIEW judge_score_quality AS
WITH calls AS (
    SELECT judge AS rater, mode, count(*) AS n_calls, count(*) FILTER (WHERE valid) AS n_valid,
           count(*) FILTER (WHERE valid AND cut_answer) AS n_cut_answers
    FROM score_calls
    GROUP BY ALL
)
SELECT
    s.rater,
    any_value(s.rater_kind) AS rater_kind,
    s.mode,
    count(*) AS n_candidates,
    avg(s.score) AS mean_score,
    stddev_pop(s.score) AS sd_score,
    min(s.scale_min) AS scale_min,
    max(s.scale_max) AS scale_max,
    avg(s.score_sd) AS mean_score_sd,
    any_value(c.n_calls) AS n_calls,
    any_value(c.n_valid) AS n_valid,
    1 - any_value(c.n_valid) / any_value(c.n_calls) AS invalid_rate,
    any_value(c.n_cut_answers) AS n_cut_answers
FROM rater_scores AS s
LEFT JOIN calls AS c USING (rater, mode)
GROUP BY s.rater, s.mode;
