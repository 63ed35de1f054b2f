-- pair_flags (label layer): per pair, what the curation filters read besides its label.
-- Reads: round_pairs (filled by refresh rounds).
--   pair_id           the pair
--   chars_a, chars_b  the two responses' lengths in characters, trimmed (candidate_flags.n_chars)
--   has_refusal       either response is only a refusal (candidate_flags.is_refusal)
--   identical_texts   the responses are equal under normalized_text (case, punctuation, spacing ignored;
--                     candidate_flags.text_key)
--   refresh_round     the first refresh round that selected the pair; NULL for pairs from the pipeline
--   refresh_heldout   a refresh round holds the pair out (on-policy accuracy; never trained on)
CREATE OR REPLACE VIEW pair_flags AS
SELECT
    t.pair_id,
    fa.n_chars AS chars_a,
    fb.n_chars AS chars_b,
    fa.is_refusal OR fb.is_refusal AS has_refusal,
    fa.text_key = fb.text_key AS identical_texts,
    r.refresh_round,
    coalesce(r.refresh_heldout, false) AS refresh_heldout
FROM pair_texts AS t
JOIN candidate_flags AS fa ON fa.candidate_id = t.candidate_a
JOIN candidate_flags AS fb ON fb.candidate_id = t.candidate_b
LEFT JOIN (
    SELECT pair_id, min(round_index) AS refresh_round, bool_or(heldout) AS refresh_heldout
    FROM round_pairs
    GROUP BY pair_id
) AS r ON r.pair_id = t.pair_id;
