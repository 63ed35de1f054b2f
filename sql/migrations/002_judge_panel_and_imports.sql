-- Judges at production grade: panel members, self-reported confidence, structured output,
-- token costs and error kinds per call; imported preference datasets as reference labels;
-- multi-turn context for prompts that come from conversations.
--
-- DuckDB cannot change a CHECK constraint in place, so judgments is rebuilt and its rows copied.

CREATE TABLE judgments_v2 (
    judgment_id          VARCHAR PRIMARY KEY,
    pair_id              VARCHAR NOT NULL,
    judge                VARCHAR NOT NULL,  -- panel member name (defaults to the model identity)
    judge_model          VARCHAR,           -- the backend's model identity
    principle_id         VARCHAR NOT NULL,
    principle_axis       VARCHAR,
    shown_order          VARCHAR NOT NULL CHECK (shown_order IN ('ab', 'ba')),
    template_version     VARCHAR NOT NULL,
    constitution_version VARCHAR NOT NULL,
    output_format        VARCHAR,           -- json_schema / json_object / text / choices
    sampling             JSON,              -- temperature, max_tokens, seed as sent
    raw_response         VARCHAR,
    verdict_shown        VARCHAR CHECK (verdict_shown IN ('A', 'B', 'tie')),  -- as the judge saw it
    winner               VARCHAR CHECK (winner IN ('a', 'b', 'tie')),         -- in the pair's orientation
    confidence           DOUBLE,            -- P(verdict): from logprobs, else the judge's own report
    confidence_source    VARCHAR CHECK (confidence_source IN ('logprobs', 'self_report', 'none')),
    self_confidence      DOUBLE,            -- what the judge said about itself, when it said anything
    verdict_probs        JSON,              -- {"A": p, "B": p, "tie": p} as shown, when logprobs exist
    -- log P(a) - log P(b) in the pair's orientation; averaging both shown orders cancels a constant
    -- position bias (balanced position calibration)
    preference_logit     DOUBLE,
    valid                BOOLEAN NOT NULL,
    invalid_reason       VARCHAR,
    error_kind           VARCHAR,           -- timeout / rate_limited / server_error / unparseable / ...
    request_chars        INTEGER,           -- characters sent: calibrates token estimates (judge --estimate)
    prompt_tokens        INTEGER,
    completion_tokens    INTEGER,
    cost_usd             DOUBLE,            -- from judge.prices; NULL when the model has no price
    latency_ms           DOUBLE,
    created_at           TIMESTAMP DEFAULT current_timestamp
);

INSERT INTO judgments_v2 (
    judgment_id, pair_id, judge, judge_model, principle_id, shown_order, template_version,
    constitution_version, output_format, raw_response, verdict_shown, winner, confidence,
    confidence_source, verdict_probs, preference_logit, valid, invalid_reason, error_kind,
    prompt_tokens, completion_tokens, latency_ms, created_at)
SELECT
    judgment_id, pair_id, judge, judge, principle_id, shown_order, template_version,
    constitution_version, NULL, raw_response, verdict_shown, winner, confidence,
    confidence_source, verdict_probs, preference_logit, valid, invalid_reason,
    CASE
        WHEN invalid_reason LIKE 'call_failed: %' THEN split_part(substr(invalid_reason, 14), ':', 1)
        WHEN invalid_reason LIKE 'unparseable%' THEN 'unparseable'
    END,
    prompt_tokens, completion_tokens, latency_ms, created_at
FROM judgments;

DROP TABLE judgments;
ALTER TABLE judgments_v2 RENAME TO judgments;

-- Labels that came with an imported preference dataset ("gold" for judge evaluation, and training
-- data in their own right). In the pair's orientation, like every other label.
CREATE TABLE reference_labels (
    reference_label_id VARCHAR PRIMARY KEY,  -- hash of (pair_id, dataset)
    pair_id            VARCHAR NOT NULL,
    winner             VARCHAR NOT NULL CHECK (winner IN ('a', 'b', 'tie')),
    source             VARCHAR NOT NULL DEFAULT 'import',
    dataset            VARCHAR NOT NULL,      -- file path or dataset name
    dataset_format     VARCHAR NOT NULL,      -- plain / hh / sharegpt / messages
    source_row         BIGINT,
    created_at         TIMESTAMP DEFAULT current_timestamp
);

-- The conversation before the final answer, for prompts imported from multi-turn data.
-- text stays the flat transcript (what dedup and judges read); messages is what chat templates use.
ALTER TABLE prompts ADD COLUMN messages JSON;
