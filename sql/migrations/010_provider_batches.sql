-- Calls sent through a provider's batch API (backend.kind: openai_batch): what was submitted
-- where, so that a run that stops (or is killed) after submitting polls those batches again
-- instead of paying for the same calls twice.
CREATE TABLE provider_batches (
    batch_id        VARCHAR PRIMARY KEY,   -- the provider's id
    backend         VARCHAR NOT NULL,      -- backend identity (as in judgments.judge_model)
    stage           VARCHAR NOT NULL,      -- judge | generate
    chunk_id        VARCHAR NOT NULL,      -- hash of the custom ids it carries (also the batch's metadata)
    input_file_id   VARCHAR NOT NULL,
    n_requests      INTEGER NOT NULL,
    status          VARCHAR NOT NULL,      -- the provider's: validating, in_progress, finalizing, completed, failed, expired, cancelled
    output_file_id  VARCHAR,
    error_file_id   VARCHAR,
    submitted_at    TIMESTAMP DEFAULT current_timestamp,
    collected_at    TIMESTAMP              -- set once its results are stored: the batch is done with
);

-- One row per call in a batch: custom_id is the call's own id (judgment_id), the same as online.
CREATE TABLE provider_batch_requests (
    custom_id   VARCHAR NOT NULL,
    batch_id    VARCHAR NOT NULL,
    PRIMARY KEY (custom_id, batch_id)
);
