-- refresh_round_metrics (report layer): one row per refresh round, with the figures its report plots.
-- Reads: refresh_rounds (filled by refresh rounds); rm_promotions (filled by refresh rounds); rm_runs
--    (filled by train (and record-training)).
--   round_index, status                                           the round, running or done
--   decision, reason                                              promoted or refused, and why
--   incumbent_rm_run_id, candidate_rm_run_id                      the model in charge and the retrained one
--   incumbent_fixed_accuracy, candidate_fixed_accuracy            accuracy on the fixed held-out set
--   incumbent_on_policy_accuracy, candidate_on_policy_accuracy    accuracy on the round's on-policy held-out pairs
--   reward_variance                                               the new model's mean within-prompt reward
--                                                                 variance on the round's policy responses
--   reward_length_correlation                                     its reward-length correlation on them
--   on_policy_gain, on_policy_gain_ci_low, on_policy_gain_ci_high  candidate minus incumbent on-policy accuracy, with
--                                                                 the gate's paired bootstrap interval
--   fixed_change, fixed_change_ci_low, fixed_change_ci_high       the same on the fixed held-out set
--   incumbent_normalized_spread, candidate_normalized_spread      within-prompt reward std over the policy's responses
--                                                                 divided by the reward std on the fixed held-out set
--   judge_agreement                                               mean judge agreement on the round's pairs
--   pairs, heldout_pairs                                          pairs selected, and on-policy held-out pairs labelled
--   started_at, finished_at                                       when the round started and finished
CREATE OR REPLACE VIEW refresh_round_metrics AS
SELECT
    round_index,
    status,
    decision,
    reason,
    incumbent_rm_run_id,
    candidate_rm_run_id,
    CAST(incumbent_metrics ->> 'fixed_accuracy' AS DOUBLE) AS incumbent_fixed_accuracy,
    CAST(candidate_metrics ->> 'fixed_accuracy' AS DOUBLE) AS candidate_fixed_accuracy,
    CAST(incumbent_metrics ->> 'on_policy_accuracy' AS DOUBLE) AS incumbent_on_policy_accuracy,
    CAST(candidate_metrics ->> 'on_policy_accuracy' AS DOUBLE) AS candidate_on_policy_accuracy,
    CAST(candidate_metrics ->> 'reward_variance' AS DOUBLE) AS reward_variance,
    CAST(candidate_metrics ->> 'reward_length_correlation' AS DOUBLE) AS reward_length_correlation,
    CAST(candidate_metrics -> 'gate' -> 'on_policy_gain' ->> 'estimate' AS DOUBLE) AS on_policy_gain,
    CAST(candidate_metrics -> 'gate' -> 'on_policy_gain' ->> 'ci_low' AS DOUBLE) AS on_policy_gain_ci_low,
    CAST(candidate_metrics -> 'gate' -> 'on_policy_gain' ->> 'ci_high' AS DOUBLE) AS on_policy_gain_ci_high,
    CAST(candidate_metrics -> 'gate' -> 'fixed_change' ->> 'estimate' AS DOUBLE) AS fixed_change,
    CAST(candidate_metrics -> 'gate' -> 'fixed_change' ->> 'ci_low' AS DOUBLE) AS fixed_change_ci_low,
    CAST(candidate_metrics -> 'gate' -> 'fixed_change' ->> 'ci_high' AS DOUBLE) AS fixed_change_ci_high,
    CAST(incumbent_metrics ->> 'normalized_spread' AS DOUBLE) AS incumbent_normalized_spread,
    CAST(candidate_metrics ->> 'normalized_spread' AS DOUBLE) AS candidate_normalized_spread,
    CAST(counts ->> 'judge_agreement' AS DOUBLE) AS judge_agreement,
    CAST(counts ->> 'pairs' AS INTEGER) AS pairs,
    CAST(counts ->> 'heldout_pairs' AS INTEGER) AS heldout_pairs,
    started_at,
    finished_at
FROM refresh_rounds;

-- current_reward_model (report layer): the reward model in charge now, the latest promoted.
--   rm_run_id, checkpoint_dir    the model and where its checkpoint is
--   round_index, reason          the round that promoted it (0: the initial model) and why
--   promoted_at                  when
CREATE OR REPLACE VIEW current_reward_model AS
SELECT p.rm_run_id, p.round_index, p.reason, p.promoted_at, r.checkpoint_dir
FROM rm_promotions AS p
JOIN rm_runs AS r USING (rm_run_id)
ORDER BY p.promoted_at DESC, p.round_index DESC
LIMIT 1;
