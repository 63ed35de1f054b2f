-- candidate_flags (label layer): per candidate response, what the curation filters look at.
-- Reads: candidates (filled by generate; import-pairs; refresh rounds), candidate_text_keys (curate).
--   candidate_id, prompt_id    the response and its prompt
--   n_chars                    its length in characters, trimmed
--   is_empty                   nothing but whitespace
--   is_refusal                 only a refusal: a short answer (< 300 characters) that opens by declining
--   text_key                   md5_number_upper(normalized_text(text)): equal for responses equal but for case,
--                              punctuation and spacing (stored in candidate_text_keys, else computed)
CREATE OR REPLACE VIEW candidate_flags AS
SELECT
    c.candidate_id,
    c.prompt_id,
    length(trim(text)) AS n_chars,
    length(trim(text)) = 0 AS is_empty,
    length(trim(text)) < 300 AND regexp_matches(
        lower(trim(text)),
        '^(i''m sorry|i am sorry|sorry[,.!]|i apologi[sz]e|i can''t|i cannot|i can not|i won''t|i will not|i''m unable|i am unable|i''m not able|i am not able|as an ai|unfortunately,? i (can''t|cannot|am unable))'
    ) AS is_refusal,
    coalesce(k.text_key, md5_number_upper(normalized_text(c.text))) AS text_key  -- coalesce normalizes only the unkeyed
FROM candidates AS c
LEFT JOIN candidate_text_keys AS k ON k.candidate_id = c.candidate_id;
