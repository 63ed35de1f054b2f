-- Raw layer: what each stage wrote. Every id is a content hash (see curation/hashing.py),
-- so writing the same thing twice is a no-op (INSERT OR IGNORE).

CREATE TABLE prompts (
    prompt_id     VARCHAR PRIMARY KEY,      -- hash of the normalized text
    text          VARCHAR NOT NULL,         -- first-seen original text
    source        VARCHAR NOT NULL,         -- file path or dataset name
    source_row    BIGINT,                   -- 1-based row/line in the source
    external_id   VARCHAR,                  -- the source's own id column, when mapped
    created_at    TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE candidates (
    candidate_id      VARCHAR PRIMARY KEY,  -- hash of (prompt_id, generator_key, sample_index)
    prompt_id         VARCHAR NOT NULL,
    generator_key     VARCHAR NOT NULL,     -- hash of model + sampling parameters
    generator         VARCHAR NOT NULL,     -- human-readable model identity
    sample_index      INTEGER NOT NULL,
    text              VARCHAR NOT NULL,
    finish_reason     VARCHAR,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    params            JSON,
    created_at        TIMESTAMP DEFAULT current_timestamp
);

-- Pairs are unordered: candidate_a < candidate_b by id. Verdicts are mapped onto this orientation.
CREATE TABLE pairs (
    pair_id       VARCHAR PRIMARY KEY,      -- hash of (candidate_a, candidate_b)
    prompt_id     VARCHAR NOT NULL,
    candidate_a   VARCHAR NOT NULL,
    candidate_b   VARCHAR NOT NULL,
    strategy      VARCHAR NOT NULL,
    created_at    TIMESTAMP DEFAULT current_timestamp,
    CHECK (candidate_a < candidate_b)
);

-- One row per judge call, valid or not. judgment_id is the hash of everything that determines the
-- call (model, template, constitution, principle, order, texts, sampling), so it doubles as a cache key.
CREATE TABLE judgments (
    judgment_id          VARCHAR PRIMARY KEY,
    pair_id              VARCHAR NOT NULL,
    judge                VARCHAR NOT NULL,  -- model identity
    principle_id         VARCHAR NOT NULL,
    shown_order          VARCHAR NOT NULL CHECK (shown_order IN ('ab', 'ba')),
    template_version     VARCHAR NOT NULL,
    constitution_version VARCHAR NOT NULL,
    raw_response         VARCHAR,
    verdict_shown        VARCHAR CHECK (verdict_shown IN ('A', 'B', 'tie')),  -- as the judge saw it
    winner               VARCHAR CHECK (winner IN ('a', 'b', 'tie')),         -- in the pair's orientation
    confidence           DOUBLE,             -- P(verdict) among the valid verdicts, from logprobs
    confidence_source    VARCHAR CHECK (confidence_source IN ('logprobs', 'none')),
    verdict_probs        JSON,               -- {"A": p, "B": p, "tie": p} as shown, when logprobs exist
    -- log P(a) - log P(b) in the pair's orientation; averaging both shown orders cancels a constant
    -- position bias (balanced position calibration)
    preference_logit     DOUBLE,
    valid                BOOLEAN NOT NULL,
    invalid_reason       VARCHAR,
    prompt_tokens        INTEGER,
    completion_tokens    INTEGER,
    latency_ms           DOUBLE,
    created_at           TIMESTAMP DEFAULT current_timestamp
);

-- Human labels (filled by the Argilla sync), already mapped to the pair's orientation.
CREATE TABLE annotations (
    annotation_id VARCHAR PRIMARY KEY,      -- hash of (pair_id, annotator, record response id)
    pair_id       VARCHAR NOT NULL,
    annotator     VARCHAR NOT NULL,
    winner        VARCHAR CHECK (winner IN ('a', 'b', 'tie')),
    strength      INTEGER,
    rationale     VARCHAR,
    status        VARCHAR NOT NULL,         -- submitted / discarded / draft
    source_record VARCHAR,
    created_at    TIMESTAMP DEFAULT current_timestamp
);

-- Anything a stage refused, with where it came from and why.
CREATE TABLE rejects (
    reject_id   VARCHAR PRIMARY KEY,        -- hash of (stage, source, row, field, reason)
    stage       VARCHAR NOT NULL,
    source      VARCHAR NOT NULL,
    source_row  BIGINT,
    field       VARCHAR,
    reason      VARCHAR NOT NULL,
    raw         VARCHAR,
    created_at  TIMESTAMP DEFAULT current_timestamp
);

-- Run log: one row per stage invocation with its counts in and out.
CREATE SEQUENCE stage_run_seq;
CREATE TABLE stage_runs (
    stage_run_id BIGINT PRIMARY KEY DEFAULT nextval('stage_run_seq'),
    stage        VARCHAR NOT NULL,
    started_at   TIMESTAMP NOT NULL,
    finished_at  TIMESTAMP NOT NULL,
    count_in     BIGINT NOT NULL,
    count_out    BIGINT NOT NULL,
    details      JSON
);

-- A curation run is keyed by the hash of its config and of the labels it read,
-- so curating unchanged data again is the same run.
CREATE TABLE curation_runs (
    curation_run_id VARCHAR PRIMARY KEY,
    created_at      TIMESTAMP DEFAULT current_timestamp,
    config          JSON NOT NULL,
    output_dir      VARCHAR NOT NULL,
    manifest_path   VARCHAR NOT NULL,
    counts          JSON NOT NULL
);

CREATE TABLE curation_funnel (
    curation_run_id VARCHAR NOT NULL,
    step_order      INTEGER NOT NULL,
    step            VARCHAR NOT NULL,
    count_in        BIGINT NOT NULL,
    count_out       BIGINT NOT NULL,
    PRIMARY KEY (curation_run_id, step_order)
);

CREATE TABLE curated_pairs (
    curation_run_id    VARCHAR NOT NULL,
    pair_id            VARCHAR NOT NULL,
    split              VARCHAR NOT NULL CHECK (split IN ('train', 'validation', 'test')),
    chosen_candidate   VARCHAR NOT NULL,
    rejected_candidate VARCHAR NOT NULL,
    label_source       VARCHAR NOT NULL,    -- balanced / vote: which label rule decided the pair
    confidence         DOUBLE,              -- the label's confidence under that rule
    PRIMARY KEY (curation_run_id, pair_id)
);

-- A reward-model run is keyed by the hash of its training data and config.
CREATE TABLE rm_runs (
    rm_run_id       VARCHAR PRIMARY KEY,
    curation_run_id VARCHAR NOT NULL,
    base_model      VARCHAR NOT NULL,
    checkpoint_dir  VARCHAR NOT NULL,
    config          JSON NOT NULL,
    status          VARCHAR NOT NULL,       -- trained / evaluated
    train_metrics   JSON,
    eval_metrics    JSON,
    created_at      TIMESTAMP DEFAULT current_timestamp,
    updated_at      TIMESTAMP DEFAULT current_timestamp
);
