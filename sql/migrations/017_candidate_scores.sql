-- Rating and ranking (issue 25): judges that score each candidate alone, or rank a prompt's
-- candidates in one call; annotators who do the same in Argilla; rated datasets imported as they are.
-- Scores live per candidate; pairs and their labels are derived from them (sql/views/09_*).

-- One row per rating or ranking call, valid or not, like judgments for pairwise calls. call_id hashes
-- everything that determines the answer (model, template, constitution, scale, texts in the order
-- shown, sampling), so it doubles as the cache key.
CREATE TABLE score_calls (
    call_id              VARCHAR PRIMARY KEY,
    prompt_id            VARCHAR NOT NULL,
    mode                 VARCHAR NOT NULL CHECK (mode IN ('rating', 'ranking')),
    judge                VARCHAR NOT NULL,  -- panel member name
    judge_model          VARCHAR,           -- the backend's model identity
    candidates_shown     VARCHAR[] NOT NULL,  -- candidate ids in the order shown (one for a rating)
    shown_order          VARCHAR NOT NULL CHECK (shown_order IN ('single', 'forward', 'reversed')),
    aspects              VARCHAR[] NOT NULL,  -- principle ids asked about
    scale_min            INTEGER,           -- rating: the scale asked for
    scale_max            INTEGER,
    template_version     VARCHAR NOT NULL,
    constitution_version VARCHAR NOT NULL,
    output_format        VARCHAR,           -- json_schema / json_object / text / choices
    sampling             JSON,
    raw_response         VARCHAR,
    valid                BOOLEAN NOT NULL,
    invalid_reason       VARCHAR,
    error_kind           VARCHAR,           -- timeout / unparseable / off_scale / bad_ranking / truncated / ...
    cut_answer           BOOLEAN DEFAULT false,
    request_chars        INTEGER,
    prompt_tokens        INTEGER,
    completion_tokens    INTEGER,
    cost_usd             DOUBLE,
    latency_ms           DOUBLE,
    created_at           TIMESTAMP DEFAULT current_timestamp
);

-- One row per candidate and aspect a rater scored: a rating judge's score on one aspect, a ranking
-- judge's place for the candidate in one call, an annotator's rating or ranking, an imported rating.
CREATE TABLE candidate_scores (
    score_id       VARCHAR PRIMARY KEY,     -- hash of (call or record, rater, candidate, aspect)
    call_id        VARCHAR NOT NULL,        -- score_calls.call_id, the Argilla response, or the import row
    prompt_id      VARCHAR NOT NULL,
    candidate_id   VARCHAR NOT NULL,
    rater          VARCHAR NOT NULL,        -- judge name, annotator, or the dataset a rating came with
    rater_kind     VARCHAR NOT NULL CHECK (rater_kind IN ('judge', 'human', 'import')),
    mode           VARCHAR NOT NULL CHECK (mode IN ('rating', 'ranking')),
    aspect         VARCHAR NOT NULL,        -- rating: the aspect (principle id, or 'overall'); ranking: 'rank'
    score          DOUBLE NOT NULL,         -- higher is better. Rating: the expected score under the
                                            -- log-probabilities over the scale's tokens, else the stated one;
                                            -- ranking: n_ranked + 1 - rank
    stated_score   DOUBLE,                  -- rating: the score the answer states; ranking: the rank (1 = best)
    score_sd       DOUBLE,                  -- the score's standard deviation under those probabilities
    score_probs    JSON,                    -- {"1": p, ..., "5": p} when log-probabilities exist
    scale_min      DOUBLE NOT NULL,         -- ranking: 1
    scale_max      DOUBLE NOT NULL,         -- ranking: the number of candidates ranked
    shown_position INTEGER,                 -- ranking: 1-based place in the order shown
    score_source   VARCHAR NOT NULL CHECK (score_source IN ('logprobs', 'stated', 'rank')),
    created_at     TIMESTAMP DEFAULT current_timestamp
);
