-- Each response's text under normalized_text (case, punctuation and spacing ignored) as a 64-bit
-- key, computed once (issue 26, part 3): comparing two responses (pair_flags.identical_texts) was
-- normalizing both texts of every pair at every curation run, most of the time the funnel's input
-- took at millions of pairs. Each curation run keys the responses added since the last one
-- (curation/funnel/text_keys.py); candidate_flags normalizes any response not keyed yet, so the key
-- is never missing, only slower. A change to the normalized_text macro must empty this table.
CREATE TABLE candidate_text_keys (
    candidate_id VARCHAR PRIMARY KEY,
    text_key     UBIGINT NOT NULL  -- md5_number_upper(normalized_text(text)): 64 bits of its md5
);
