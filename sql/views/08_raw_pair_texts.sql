-- pair_texts (raw layer): every pair with the texts it compares, in the pair's orientation. The one
-- place the pair-with-texts join is written; read it instead of joining prompts and candidates again.
-- Reads: candidates (filled by generate; import-pairs; refresh rounds); pairs (filled by pairs;
--    import-pairs; refresh rounds); prompts (filled by ingest; import-pairs and the gold import).
--   pair_id, prompt_id, candidate_a, candidate_b, strategy   as in `pairs` (candidate_a < candidate_b by id)
--   prompt            the prompt's text (an imported multi-turn prompt: its flat transcript)
--   prompt_messages   the conversation before the answers as JSON chat messages (multi-turn prompts), else NULL
--   text_a, text_b    the responses of candidate_a and candidate_b
CREATE OR REPLACE VIEW pair_texts AS
SELECT
    p.pair_id,
    p.prompt_id,
    p.candidate_a,
    p.candidate_b,
    p.strategy,
    pr.text AS prompt,
    CAST(pr.messages AS VARCHAR) AS prompt_messages,
    ca.text AS text_a,
    cb.text AS text_b
FROM pairs AS p
JOIN prompts AS pr ON pr.prompt_id = p.prompt_id
-- a pair's responses answer its prompt: joined on the prompt too, a filter on prompt_id reaches the
-- candidates (the export stages millions of pairs in ranges of prompt_id)
JOIN candidates AS ca ON ca.candidate_id = p.candidate_a AND ca.prompt_id = p.prompt_id
JOIN candidates AS cb ON cb.candidate_id = p.candidate_b AND cb.prompt_id = p.prompt_id;
