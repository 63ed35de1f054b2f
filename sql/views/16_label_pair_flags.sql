-- pair_flags (label layer): per pair, what the curation filters read besides its label.
-- Reads: pairs (filled by pairs; import-pairs; refresh rounds), prompts, candidate_flags; round_pairs (filled
-- by refresh rounds).
--   pair_id           the pair
--   chars_a, chars_b  the two responses' lengths in characters, trimmed (candidate_flags.n_chars)
--   has_refusal       either response is only a refusal (candidate_flags.is_refusal)
--   identical_texts   the responses are equal under normalized_text (case, punctuation, spacing ignored;
--                     candidate_flags.text_key)
--   refresh_round     the first refresh round that selected the pair; NULL for pairs from the pipeline
--   refresh_heldout   a refresh round holds the pair out (on-policy accuracy; never trained on)
CREATE OR REPLACE VIEW pair_flags AS
-- the candidates' flags computed once for both sides (each side's join computed them again: length,
-- refusal pattern and text key of every response twice, ~25 s of 106 at 10M pairs); the pairs joined
-- on their prompt as pair_texts does, without its texts
WITH flags AS MATERIALIZED (SELECT candidate_id, prompt_id, n_chars, is_refusal, text_key FROM candidate_flags)
SELECT
    p.pair_id,
    fa.n_chars AS chars_a,
    fb.n_chars AS chars_b,
    fa.is_refusal OR fb.is_refusal AS has_refusal,
    fa.text_key = fb.text_key AS identical_texts,
    r.refresh_round,
    coalesce(r.refresh_heldout, false) AS refresh_heldout
FROM pairs AS p
JOIN prompts AS pr ON pr.prompt_id = p.prompt_id
JOIN flags AS fa ON fa.candidate_id = p.candidate_a AND fa.prompt_id = p.prompt_id
JOIN flags AS fb ON fb.candidate_id = p.candidate_b AND fb.prompt_id = p.prompt_id
LEFT JOIN (
    SELECT pair_id, min(round_index) AS refresh_round, bool_or(heldout) AS refresh_heldout
    FROM round_pairs
    GROUP BY pair_id
) AS r ON r.pair_id = p.pair_id;
