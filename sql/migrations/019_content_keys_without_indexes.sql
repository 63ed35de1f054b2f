-- The tables that grow with the pairs keep their content keys without a key index (issue 26,
-- part 3). DuckDB holds a table's key index in memory whole (about 140 bytes a key with our
-- 32-character ids), so under store.memory_limit 2GB a store had room for about 6M imported pairs,
-- every commit of keys in random order loaded the index it touched, and the index was most of the
-- file the read snapshot copies. Store.insert_new skips stored keys with an anti-join instead
-- (core/content_keys.py names each table's key): a scan of the key column, ~0.2 s at 10M keys,
-- memory that does not grow with the store. DuckDB cannot drop a constraint, so each table is
-- rebuilt: same columns, defaults and checks, no PRIMARY KEY.

CREATE TABLE prompts_019 (
    prompt_id   VARCHAR NOT NULL,           -- hash of the normalized text (the key)
    text        VARCHAR NOT NULL,
    source      VARCHAR NOT NULL,
    source_row  BIGINT,
    external_id VARCHAR,
    created_at  TIMESTAMP DEFAULT current_timestamp,
    messages    JSON,
    in_pool     BOOLEAN DEFAULT true
);
INSERT INTO prompts_019 BY NAME SELECT * FROM prompts;
DROP TABLE prompts;
ALTER TABLE prompts_019 RENAME TO prompts;

CREATE TABLE candidates_019 (
    candidate_id      VARCHAR NOT NULL,     -- hash of (prompt_id, generator_key, sample_index) (the key)
    prompt_id         VARCHAR NOT NULL,
    generator_key     VARCHAR NOT NULL,
    generator         VARCHAR NOT NULL,
    sample_index      INTEGER NOT NULL,
    text              VARCHAR NOT NULL,
    finish_reason     VARCHAR,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    params            JSON,
    created_at        TIMESTAMP DEFAULT current_timestamp
);
INSERT INTO candidates_019 BY NAME SELECT * FROM candidates;
DROP TABLE candidates;
ALTER TABLE candidates_019 RENAME TO candidates;

CREATE TABLE pairs_019 (
    pair_id     VARCHAR NOT NULL,           -- hash of (candidate_a, candidate_b) (the key)
    prompt_id   VARCHAR NOT NULL,
    candidate_a VARCHAR NOT NULL,
    candidate_b VARCHAR NOT NULL,
    strategy    VARCHAR NOT NULL,
    created_at  TIMESTAMP DEFAULT current_timestamp,
    CHECK (candidate_a < candidate_b)
);
INSERT INTO pairs_019 BY NAME SELECT * FROM pairs;
DROP TABLE pairs;
ALTER TABLE pairs_019 RENAME TO pairs;

CREATE TABLE reference_labels_019 (
    reference_label_id VARCHAR NOT NULL,    -- hash of (pair_id, dataset) (the key)
    pair_id            VARCHAR NOT NULL,
    winner             VARCHAR NOT NULL CHECK (winner IN ('a', 'b', 'tie')),
    source             VARCHAR NOT NULL DEFAULT 'import',
    dataset            VARCHAR NOT NULL,
    dataset_format     VARCHAR NOT NULL,
    source_row         BIGINT,
    created_at         TIMESTAMP DEFAULT current_timestamp
);
INSERT INTO reference_labels_019 BY NAME SELECT * FROM reference_labels;
DROP TABLE reference_labels;
ALTER TABLE reference_labels_019 RENAME TO reference_labels;

CREATE TABLE candidate_text_keys_019 (
    candidate_id VARCHAR NOT NULL,          -- the key
    text_key     UBIGINT NOT NULL           -- md5_number_upper(normalized_text(text)): 64 bits of its md5
);
INSERT INTO candidate_text_keys_019 BY NAME SELECT * FROM candidate_text_keys;
DROP TABLE candidate_text_keys;
ALTER TABLE candidate_text_keys_019 RENAME TO candidate_text_keys;

-- A curation run's rows: keyed by the run and the row, written once per run.
CREATE TABLE curated_pairs_019 (
    curation_run_id    VARCHAR NOT NULL,
    pair_id            VARCHAR NOT NULL,
    split              VARCHAR NOT NULL CHECK (split IN ('train', 'validation', 'test')),
    chosen_candidate   VARCHAR NOT NULL,
    rejected_candidate VARCHAR NOT NULL,
    label_source       VARCHAR NOT NULL,
    confidence         DOUBLE,
    is_tie             BOOLEAN DEFAULT false,
    agreement          DOUBLE,
    n_votes            BIGINT
);
INSERT INTO curated_pairs_019 BY NAME SELECT * FROM curated_pairs;
DROP TABLE curated_pairs;
ALTER TABLE curated_pairs_019 RENAME TO curated_pairs;

CREATE TABLE curation_prompt_clusters_019 (
    curation_run_id VARCHAR NOT NULL,
    prompt_id       VARCHAR NOT NULL,
    cluster_id      VARCHAR NOT NULL,
    split           VARCHAR NOT NULL
);
INSERT INTO curation_prompt_clusters_019 BY NAME SELECT * FROM curation_prompt_clusters;
DROP TABLE curation_prompt_clusters;
ALTER TABLE curation_prompt_clusters_019 RENAME TO curation_prompt_clusters;

CREATE TABLE curation_prompt_drops_019 (
    curation_run_id VARCHAR NOT NULL,
    step            VARCHAR NOT NULL,
    prompt_id       VARCHAR NOT NULL,
    related         VARCHAR,
    score           DOUBLE
);
INSERT INTO curation_prompt_drops_019 BY NAME SELECT * FROM curation_prompt_drops;
DROP TABLE curation_prompt_drops;
ALTER TABLE curation_prompt_drops_019 RENAME TO curation_prompt_drops;

CREATE TABLE curation_suspects_019 (
    curation_run_id  VARCHAR NOT NULL,
    pair_id          VARCHAR NOT NULL,
    suspicion_run_id VARCHAR NOT NULL,
    action           VARCHAR NOT NULL CHECK (action IN ('drop', 'flip', 'push')),
    label            VARCHAR NOT NULL,
    p_label          DOUBLE NOT NULL
);
INSERT INTO curation_suspects_019 BY NAME SELECT * FROM curation_suspects;
DROP TABLE curation_suspects;
ALTER TABLE curation_suspects_019 RENAME TO curation_suspects;

CREATE TABLE curation_funnel_samples_019 (
    curation_run_id VARCHAR NOT NULL,
    step_order      INTEGER NOT NULL,
    pair_id         VARCHAR NOT NULL
);
INSERT INTO curation_funnel_samples_019 BY NAME SELECT * FROM curation_funnel_samples;
DROP TABLE curation_funnel_samples;
ALTER TABLE curation_funnel_samples_019 RENAME TO curation_funnel_samples;

-- One row per judge call (two per pair per judge in both orders): the largest table of a judged
-- store. A commit of answers into 20M rows cost ~2 s of CPU with the key (loading the part of the
-- index their random ids touch, then checkpointing it). An answer that replaces a stored row (a
-- call asked again) is a delete and an insert in one transaction (Store.upsert).
CREATE TABLE judgments_019 (
    judgment_id          VARCHAR NOT NULL,  -- the key: hash of everything that determines the call
    pair_id              VARCHAR NOT NULL,
    judge                VARCHAR NOT NULL,
    judge_model          VARCHAR,
    principle_id         VARCHAR NOT NULL,
    principle_axis       VARCHAR,
    shown_order          VARCHAR NOT NULL CHECK (shown_order IN ('ab', 'ba')),
    template_version     VARCHAR NOT NULL,
    constitution_version VARCHAR NOT NULL,
    output_format        VARCHAR,
    sampling             JSON,
    raw_response         VARCHAR,
    verdict_shown        VARCHAR CHECK (verdict_shown IN ('A', 'B', 'tie')),
    winner               VARCHAR CHECK (winner IN ('a', 'b', 'tie')),
    confidence           DOUBLE,
    confidence_source    VARCHAR CHECK (confidence_source IN ('logprobs', 'self_report', 'none', 'verifier')),
    self_confidence      DOUBLE,
    verdict_probs        JSON,
    preference_logit     DOUBLE,
    valid                BOOLEAN NOT NULL,
    invalid_reason       VARCHAR,
    error_kind           VARCHAR,
    request_chars        INTEGER,
    prompt_tokens        INTEGER,
    completion_tokens    INTEGER,
    cost_usd             DOUBLE,
    latency_ms           DOUBLE,
    created_at           TIMESTAMP DEFAULT current_timestamp,
    cut_answer           BOOLEAN DEFAULT false,
    verdict_kind         VARCHAR DEFAULT 'judge'
);
INSERT INTO judgments_019 BY NAME SELECT * FROM judgments;
DROP TABLE judgments;
ALTER TABLE judgments_019 RENAME TO judgments;
