-- Curation at scale: ties kept as ties, sample rows each funnel step dropped, and the prompts that
-- deduplication and decontamination dropped, with what they matched.

ALTER TABLE curated_pairs ADD COLUMN is_tie BOOLEAN DEFAULT false;
-- The judges' agreement and vote count as curation saw them (the export reads these, not the live labels).
ALTER TABLE curated_pairs ADD COLUMN agreement DOUBLE;
ALTER TABLE curated_pairs ADD COLUMN n_votes BIGINT;

-- Up to curate.samples_per_step dropped pairs per funnel step, to see what a filter removes.
CREATE TABLE curation_funnel_samples (
    curation_run_id VARCHAR NOT NULL,
    step_order      INTEGER NOT NULL,
    pair_id         VARCHAR NOT NULL,
    PRIMARY KEY (curation_run_id, step_order, pair_id)
);

-- Prompts dropped by prompt-level steps: exact / near duplicates (related = the kept prompt of the
-- cluster, score = estimated similarity) and decontamination (related = the benchmark, score = overlap).
CREATE TABLE curation_prompt_drops (
    curation_run_id VARCHAR NOT NULL,
    step            VARCHAR NOT NULL,
    prompt_id       VARCHAR NOT NULL,
    related         VARCHAR,
    score           DOUBLE,
    PRIMARY KEY (curation_run_id, step, prompt_id)
);

-- Every curated prompt's cluster (near-duplicates share one); splits are assigned per cluster.
CREATE TABLE curation_prompt_clusters (
    curation_run_id VARCHAR NOT NULL,
    prompt_id       VARCHAR NOT NULL,
    cluster_id      VARCHAR NOT NULL,
    split           VARCHAR NOT NULL,
    PRIMARY KEY (curation_run_id, prompt_id)
);
