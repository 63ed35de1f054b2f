-- Reports: the funnel of every curation run, and the counts of every stage invocation.
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

CREATE OR REPLACE VIEW stage_run_counts AS
SELECT stage_run_id, stage, started_at, finished_at - started_at AS duration, count_in, count_out, details
FROM stage_runs
ORDER BY stage_run_id;

-- How many rows each table of the store holds: a quick health check.
CREATE OR REPLACE VIEW store_counts AS
SELECT 'prompts' AS table_name, count(*) AS n_rows FROM prompts
UNION ALL SELECT 'candidates', count(*) FROM candidates
UNION ALL SELECT 'pairs', count(*) FROM pairs
UNION ALL SELECT 'judgments', count(*) FROM judgments
UNION ALL SELECT 'annotations', count(*) FROM annotations
UNION ALL SELECT 'rejects', count(*) FROM rejects
UNION ALL SELECT 'curation_runs', count(*) FROM curation_runs
UNION ALL SELECT 'rm_runs', count(*) FROM rm_runs;
