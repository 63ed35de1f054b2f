-- A reward model on an external preference benchmark file (`prefcurate evaluate --benchmark FILE`).
CREATE TABLE benchmark_evaluations (
    evaluation_id     VARCHAR PRIMARY KEY,   -- hash of (model, benchmark file hash, section map)
    model             VARCHAR NOT NULL,      -- our rm_run_id, or the checkpoint (folder or hub name) scored
    rm_run_id         VARCHAR,               -- when the model is one of ours
    benchmark         VARCHAR NOT NULL,      -- the file, as given
    benchmark_sha256  VARCHAR NOT NULL,
    layout            VARCHAR NOT NULL,      -- pairs | best-of-n
    n_rows            INTEGER NOT NULL,
    accuracy          DOUBLE NOT NULL,       -- overall, over rows
    ci_low            DOUBLE NOT NULL,       -- 95% percentile bootstrap over rows
    ci_high           DOUBLE NOT NULL,
    section_weighted  DOUBLE,                -- mean of the sections' accuracies, with a section map
    report            JSON NOT NULL,         -- per subset and section, with intervals; skipped rows
    created_at        TIMESTAMP DEFAULT current_timestamp
);
