-- Report layer: one row per refresh round with the figures the round report plots.
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
    CAST(counts ->> 'judge_agreement' AS DOUBLE) AS judge_agreement,
    CAST(counts ->> 'pairs' AS INTEGER) AS pairs,
    CAST(counts ->> 'heldout_pairs' AS INTEGER) AS heldout_pairs,
    started_at,
    finished_at
FROM refresh_rounds;

-- The reward model in charge now.
CREATE OR REPLACE VIEW current_reward_model AS
SELECT p.rm_run_id, p.round_index, p.reason, p.promoted_at, r.checkpoint_dir
FROM rm_promotions AS p
JOIN rm_runs AS r USING (rm_run_id)
ORDER BY p.promoted_at DESC, p.round_index DESC
LIMIT 1;
