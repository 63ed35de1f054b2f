-- curation_run_funnel (report layer): the funnel of every curation run, step by step.
-- Reads: annotations (filled by annotate pull); candidates (filled by generate; import-pairs; refresh
--    rounds); curation_funnel (filled by curate); curation_runs (filled by curate); judgments (filled
--    by judge); pairs (filled by pairs; import-pairs; refresh rounds); prompts (filled by ingest;
--    import-pairs and the gold import); rejects (filled by every stage that refuses input); rm_runs
--    (filled by train (and record-training)); stage_runs (filled by every stage).
--   curation_run_id, created_at      the run and when it was recorded
--   step_order, step                 the step's position and name (e.g. agreement>=0.5, near_dedup>=0.7)
--   count_in, count_out, dropped     pairs before and after it, and the difference
--   kept_pct                         count_out as a percentage of count_in
CREATE OR REPLACE VIEW curation_run_funnel AS
SELECT
    f.curation_run_id,
    r.created_at,
    f.step_order,
    f.step,
    f.count_in,
    f.count_out,
    f.count_in - f.count_out AS dropped,
    round(100.0 * f.count_out / nullif(f.count_in, 0), 1) AS kept_pct
FROM curation_funnel AS f
JOIN curation_runs AS r USING (curation_run_id)
ORDER BY r.created_at, f.step_order;

-- stage_run_counts (report layer): every stage invocation with its counts.
--   stage_run_id, stage              the invocation and its stage (ingest, generate, judge, ...)
--   started_at, duration             when it started, and how long it took
--   count_in, count_out              what it read and what it wrote (each stage says what it counts)
--   details                          its report as JSON
CREATE OR REPLACE VIEW stage_run_counts AS
SELECT stage_run_id, stage, started_at, finished_at - started_at AS duration, count_in, count_out, details
FROM stage_runs
ORDER BY stage_run_id;

-- store_counts (report layer): how many rows the main tables hold, a quick health check.
--   table_name, n_rows    the table and its row count
CREATE OR REPLACE VIEW store_counts AS
SELECT 'prompts' AS table_name, count(*) AS n_rows FROM prompts
UNION ALL SELECT 'candidates', count(*) FROM candidates
UNION ALL SELECT 'pairs', count(*) FROM pairs
UNION ALL SELECT 'judgments', count(*) FROM judgments
UNION ALL SELECT 'annotations', count(*) FROM annotations
UNION ALL SELECT 'rejects', count(*) FROM rejects
UNION ALL SELECT 'curation_runs', count(*) FROM curation_runs
UNION ALL SELECT 'rm_runs', count(*) FROM rm_runs;
