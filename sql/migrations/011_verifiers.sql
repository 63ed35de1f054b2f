-- What can be checked about a prompt's answers (ingest columns reference_answer / tests /
-- constraints), what the checks found for each candidate, and where a verifier's label stands
-- among the label sources. A verifier's verdicts are judgments with confidence_source 'verifier':
-- DuckDB cannot change a CHECK constraint in place, so judgments is rebuilt and its rows copied.
CREATE TABLE prompt_checks (
    prompt_id         VARCHAR NOT NULL,
    domain            VARCHAR NOT NULL,   -- math | code | constraints
    reference_answer  VARCHAR,            -- math: the final answer
    tests             VARCHAR,            -- code: Python run after the response's code (asserts)
    constraints       JSON,               -- constraints: {min_words, max_words, must_include, format, ...}
    check_hash        VARCHAR NOT NULL,   -- of the check's content: part of every verdict's id
    PRIMARY KEY (prompt_id, domain)
);

CREATE TABLE candidate_checks (
    candidate_id  VARCHAR NOT NULL,
    domain        VARCHAR NOT NULL,
    check_hash    VARCHAR NOT NULL,
    passed        BOOLEAN NOT NULL,
    status        VARCHAR NOT NULL,       -- ok | failed | timeout | memory | crashed | unparseable | violated
    detail        VARCHAR,                -- why it did not pass, in one line
    seconds       DOUBLE,
    created_at    TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (candidate_id, domain, check_hash)
);

-- The order in which label sources win (1 first), written by `curate` from curate.label_precedence.
CREATE TABLE label_precedence (
    source  VARCHAR PRIMARY KEY,          -- verifier | human | import | judges
    rank    INTEGER NOT NULL
);
INSERT INTO label_precedence VALUES ('verifier', 1), ('human', 2), ('import', 3), ('judges', 4);

CREATE TABLE judgments_v3 (
    judgment_id          VARCHAR PRIMARY KEY,
    pair_id              VARCHAR NOT NULL,
    judge                VARCHAR NOT NULL,  -- panel member name (defaults to the model identity)
    judge_model          VARCHAR,           -- the backend's model identity (verifier:<check version>)
    principle_id         VARCHAR NOT NULL,  -- a verifier's: the domain (math, code, constraints)
    principle_axis       VARCHAR,
    shown_order          VARCHAR NOT NULL CHECK (shown_order IN ('ab', 'ba')),
    template_version     VARCHAR NOT NULL,
    constitution_version VARCHAR NOT NULL,
    output_format        VARCHAR,           -- json_schema / json_object / text / choices / verifier
    sampling             JSON,              -- temperature, max_tokens, seed as sent
    raw_response         VARCHAR,
    verdict_shown        VARCHAR CHECK (verdict_shown IN ('A', 'B', 'tie')),  -- as the judge saw it
    winner               VARCHAR CHECK (winner IN ('a', 'b', 'tie')),         -- in the pair's orientation
    confidence           DOUBLE,            -- P(verdict): from logprobs, else the judge's own report
    confidence_source    VARCHAR CHECK (confidence_source IN ('logprobs', 'self_report', 'none', 'verifier')),
    self_confidence      DOUBLE,            -- what the judge said about itself, when it said anything
    verdict_probs        JSON,              -- {"A": p, "B": p, "tie": p} as shown, when logprobs exist
    -- log P(a) - log P(b) in the pair's orientation; averaging both shown orders cancels a constant
    -- position bias (balanced position calibration)
    preference_logit     DOUBLE,
    valid                BOOLEAN NOT NULL,
    invalid_reason       VARCHAR,
    error_kind           VARCHAR,           -- timeout / rate_limited / ... / both_pass / neither_passes
    request_chars        INTEGER,           -- characters sent: calibrates token estimates (judge --estimate)
    prompt_tokens        INTEGER,
    completion_tokens    INTEGER,
    cost_usd             DOUBLE,            -- from judge.prices; NULL when the model has no price
    latency_ms           DOUBLE,
    created_at           TIMESTAMP DEFAULT current_timestamp
);
INSERT INTO judgments_v3 SELECT * FROM judgments;
DROP TABLE judgments;
ALTER TABLE judgments_v3 RENAME TO judgments;
