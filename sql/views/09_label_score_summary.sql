-- candidate_score_summary (label layer): each scored candidate's score over all its raters, what the
-- pair strategies built on scores (pairs.strategy best_vs_worst, best_vs_random_lower, all_with_margin)
-- and the export's chosen_score / rejected_score read.
-- Reads views only (no table directly).
--   prompt_id, candidate_id   the candidate
--   score                     mean of its raters' scores (rater_scores.score), on their scale
--   normalized_score          mean of its raters' normalized scores
--   scale_min, scale_max      the scale's ends, over its raters
--   n_raters                  raters that scored it
--   raters                    their names
CREATE OR REPLACE VIEW candidate_score_summary AS
SELECT
    prompt_id,
    candidate_id,
    avg(score) AS score,
    avg(normalized_score) AS normalized_score,
    min(scale_min) AS scale_min,
    max(scale_max) AS scale_max,
    count(*) AS n_raters,
    list(rater ORDER BY rater) AS raters
FROM rater_scores
GROUP BY prompt_id, candidate_id;
