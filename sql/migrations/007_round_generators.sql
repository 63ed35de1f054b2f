-- Which generator settings produced each refresh round's samples. The `pairs` stage leaves these
-- candidates alone: a round pairs its own responses (round_pairs), and pairing them again would
-- leak held-out prompts' responses into training.
CREATE TABLE round_generators (
    round_index   INTEGER NOT NULL,
    generator_key VARCHAR NOT NULL,
    PRIMARY KEY (round_index, generator_key)
);
