-- curated_pairs_export (curated layer): the pairs each curation run kept, with texts, as exported.
-- Reads: curated_pairs (filled by curate).
--   curation_run_id, split                  the run and the split (train, validation, test)
--   pair_id, prompt_id                      the pair and its prompt
--   prompt, prompt_messages                 the prompt's text; the conversation as JSON chat messages for
--                                           multi-turn prompts, else NULL
--   chosen, rejected                        the preferred and the other response
--   chosen_id, rejected_id                  their candidate ids
--   confidence                              the label's confidence (human agreement, none for imports, the judges')
--   label_source                            human, import, balanced or vote
--   tie                                     kept as a tie (curate.ties = keep): no preference
--   agreement, n_votes                      judge agreement and valid judge votes
--   chosen_score, rejected_score            the responses' scores (candidate_score_summary.score: the mean over
--                                           their raters), NULL when a response has none
--   score_margin                            chosen_score - rejected_score as a share of the scale's span
CREATE OR REPLACE VIEW curated_pairs_export AS
SELECT
    cp.curation_run_id,
    cp.split,
    cp.pair_id,
    t.prompt_id,
    t.prompt,
    t.prompt_messages,
    CASE cp.chosen_candidate WHEN t.candidate_a THEN t.text_a ELSE t.text_b END AS chosen,
    CASE cp.chosen_candidate WHEN t.candidate_a THEN t.text_b ELSE t.text_a END AS rejected,
    cp.chosen_candidate AS chosen_id,
    cp.rejected_candidate AS rejected_id,
    cp.confidence,
    cp.label_source,
    coalesce(cp.is_tie, false) AS tie,                -- kept as a tie (curate.ties = keep): no preference
    cp.agreement,
    cp.n_votes,
    sc.score AS chosen_score,
    sr.score AS rejected_score,
    (sc.score - sr.score) / nullif(greatest(sc.scale_max, sr.scale_max) - least(sc.scale_min, sr.scale_min), 0)
        AS score_margin
FROM curated_pairs AS cp
JOIN pair_texts AS t ON t.pair_id = cp.pair_id
LEFT JOIN candidate_score_summary AS sc ON sc.candidate_id = cp.chosen_candidate
LEFT JOIN candidate_score_summary AS sr ON sr.candidate_id = cp.rejected_candidate;
