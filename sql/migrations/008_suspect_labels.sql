-- Suspect labels (`prefcurate suspect`): out-of-fold evidence against pairs' labels, and what each
-- curation run did with it.

-- One detection: which models (method, backbone features, folds), on which labelled pool. Keyed by
-- the hash of its settings and of every (pair, label) it saw: the same pool and settings are one run.
CREATE TABLE suspicion_runs (
    suspicion_run_id  VARCHAR PRIMARY KEY,
    method            VARCHAR NOT NULL,      -- heads | finetune
    settings          JSON NOT NULL,         -- suspicion config (features, folds, repeats, l2, threshold, seed)
    label_rule        VARCHAR NOT NULL,      -- the curate.label_rule whose labels were checked
    n_pairs           INTEGER NOT NULL,      -- labelled pairs in the pool (models trained on their folds)
    n_flagged         INTEGER NOT NULL,
    oof_accuracy      DOUBLE,                -- share of the pool whose label the held-out models agree with
    seconds           DOUBLE,
    created_at        TIMESTAMP DEFAULT current_timestamp
);

-- Per pair of a run: the label checked, and the out-of-fold models' view of it.
CREATE TABLE pair_label_suspicion (
    suspicion_run_id  VARCHAR NOT NULL,
    pair_id           VARCHAR NOT NULL,
    label             VARCHAR NOT NULL CHECK (label IN ('a', 'b')),   -- the label checked (pair orientation)
    label_source      VARCHAR NOT NULL,      -- import / balanced / vote / human
    oof_margin        DOUBLE NOT NULL,       -- mean reward(a) - reward(b) of the models that did not see the pair
    p_label           DOUBLE NOT NULL,       -- sigmoid of that margin toward the label
    flagged           BOOLEAN NOT NULL,      -- p_label <= max_label_probability (human labels are never flagged)
    PRIMARY KEY (suspicion_run_id, pair_id)
);

-- What a curation run did with flagged pairs: dropped, flipped, or held for annotators.
CREATE TABLE curation_suspects (
    curation_run_id   VARCHAR NOT NULL,
    pair_id           VARCHAR NOT NULL,
    suspicion_run_id  VARCHAR NOT NULL,
    action            VARCHAR NOT NULL CHECK (action IN ('drop', 'flip', 'push')),
    label             VARCHAR NOT NULL,      -- the label the evidence contradicted
    p_label           DOUBLE NOT NULL,
    PRIMARY KEY (curation_run_id, pair_id)
);
