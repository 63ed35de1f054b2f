-- What can be checked about a prompt's answers (ingest columns reference_answer / tests /
-- constraints), what the checks found for each candidate, and where a verifier's label stands
-- among the label sources.
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
