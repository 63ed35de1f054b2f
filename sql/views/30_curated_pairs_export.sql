-- Curated layer: the pairs each curation run kept, with texts, ready to export or inspect.
CREATE OR REPLACE VIEW curated_pairs_export AS
SELECT
    cp.curation_run_id,
    cp.split,
    cp.pair_id,
    p.prompt_id,
    pr.text AS prompt,
    CAST(pr.messages AS VARCHAR) AS prompt_messages,  -- JSON chat messages for multi-turn prompts, else NULL
    ch.text AS chosen,
    rj.text AS rejected,
    cp.chosen_candidate AS chosen_id,
    cp.rejected_candidate AS rejected_id,
    cp.confidence,
    cp.label_source,
    coalesce(cp.is_tie, false) AS tie,                -- kept as a tie (curate.ties = keep): no preference
    cp.agreement,
    cp.n_votes
FROM curated_pairs AS cp
JOIN pairs AS p USING (pair_id)
JOIN prompts AS pr ON pr.prompt_id = p.prompt_id
JOIN candidates AS ch ON ch.candidate_id = cp.chosen_candidate
JOIN candidates AS rj ON rj.candidate_id = cp.rejected_candidate;
