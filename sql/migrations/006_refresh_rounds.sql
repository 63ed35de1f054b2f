-- On-policy refresh rounds: what each round drew, generated, selected, trained and decided.

-- The prompts a round drew from the pool (a prompt can be drawn again once the pool runs out).
CREATE TABLE round_prompts (
    round_index INTEGER NOT NULL,
    prompt_id   VARCHAR NOT NULL,
    heldout     BOOLEAN NOT NULL,       -- its pairs measure on-policy accuracy and are never trained on
    PRIMARY KEY (round_index, prompt_id)
);

-- The policy's responses in a round; for the built-in best-of-N policy each is the highest-reward
-- of best_of_n base samples (group), scored by the round's incumbent reward model.
CREATE TABLE round_candidates (
    round_index  INTEGER NOT NULL,
    candidate_id VARCHAR NOT NULL,
    prompt_id    VARCHAR NOT NULL,
    policy       VARCHAR NOT NULL,      -- best_of_n:<n> or the backend's identity
    reward       DOUBLE,                -- under the incumbent reward model
    reward_std   DOUBLE,                -- ensemble member spread
    PRIMARY KEY (round_index, candidate_id)
);

-- The pairs a round selected among its policy's responses.
CREATE TABLE round_pairs (
    round_index INTEGER NOT NULL,
    pair_id     VARCHAR NOT NULL,
    selection   VARCHAR NOT NULL,       -- max_min / ensemble_uncertain / random
    heldout     BOOLEAN NOT NULL,
    PRIMARY KEY (round_index, pair_id)
);

-- One row per round: its inputs, counts, both models' metrics, the decision and why.
CREATE TABLE refresh_rounds (
    round_index          INTEGER PRIMARY KEY,
    status               VARCHAR NOT NULL,   -- running / done
    incumbent_rm_run_id  VARCHAR,            -- the reward model the round started from
    candidate_rm_run_id  VARCHAR,            -- the model retrained this round
    curation_run_id      VARCHAR,
    counts               JSON,
    incumbent_metrics    JSON,
    candidate_metrics    JSON,
    decision             VARCHAR,            -- promoted / refused
    reason               VARCHAR,
    started_at           TIMESTAMP DEFAULT current_timestamp,
    finished_at          TIMESTAMP
);

-- The reward model in charge: the latest row wins. Round 0 is the model the loop started from.
CREATE TABLE rm_promotions (
    rm_run_id    VARCHAR NOT NULL,
    round_index  INTEGER NOT NULL,
    reason       VARCHAR NOT NULL,
    promoted_at  TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (round_index, rm_run_id)
);

-- The fixed held-out set: frozen when the loop starts (the test split of the first model's
-- curation run), so every round is measured on the same pairs.
CREATE TABLE refresh_fixed_heldout (
    pair_id            VARCHAR PRIMARY KEY,
    chosen_candidate   VARCHAR NOT NULL,
    rejected_candidate VARCHAR NOT NULL,
    source_curation_run_id VARCHAR NOT NULL
);
