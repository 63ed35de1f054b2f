-- candidate_texts (raw layer): every candidate response with the prompt it answers, as a reward
-- model scores it. The one place the candidate-with-prompt join is written.
-- Reads: candidates (filled by generate; import-pairs; refresh rounds); prompts (filled by ingest;
--    import-pairs and the gold import).
--   candidate_id, prompt_id, generator_key, sample_index   as in `candidates`
--   prompt            the prompt's text (an imported multi-turn prompt: its flat transcript)
--   prompt_messages   the conversation before the answer as JSON chat messages (multi-turn prompts), else NULL
--   text              the response
CREATE OR REPLACE VIEW candidate_texts AS
SELECT
    c.candidate_id,
    c.prompt_id,
    c.generator_key,
    c.sample_index,
    p.text AS prompt,
    CAST(p.messages AS VARCHAR) AS prompt_messages,
    c.text
FROM candidates AS c
JOIN prompts AS p ON p.prompt_id = c.prompt_id;
