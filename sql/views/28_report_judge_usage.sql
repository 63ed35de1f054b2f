-- judge_usage (report layer): what judging cost, per judge.
-- Reads: judgments (filled by judge).
--   judge, judge_model                                 the panel member and its model
--   n_calls, n_valid, n_errors                         calls, valid verdicts, calls with an error kind
--   prompt_tokens, completion_tokens                   tokens the endpoint reported
--   cost_usd                                           at judge.prices
--   n_unpriced_calls                                   calls with no price (no judge.prices entry, or no token counts)
--   latency_p50_ms, latency_p90_ms, latency_p99_ms     call latency percentiles
CREATE OR REPLACE VIEW judge_usage AS
SELECT
    judge,
    any_value(judge_model) AS judge_model,
    count(*) AS n_calls,
    count(*) FILTER (WHERE valid) AS n_valid,
    count(*) FILTER (WHERE error_kind IS NOT NULL) AS n_errors,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(cost_usd) AS cost_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS n_unpriced_calls,
    quantile_cont(latency_ms, 0.5) AS latency_p50_ms,
    quantile_cont(latency_ms, 0.9) AS latency_p90_ms,
    quantile_cont(latency_ms, 0.99) AS latency_p99_ms
FROM judgments
GROUP BY judge;

-- judge_errors (report layer): judge failures by kind, with an example.
--   judge, error_kind     the judge and the kind (timeout, rate_limited, unparseable, truncated, ...)
--   n_calls               calls that failed that way
--   n_to_retry            of those, transport failures: asked again on the next run
--   example_reason        one stored reason
CREATE OR REPLACE VIEW judge_errors AS
SELECT
    judge,
    error_kind,
    count(*) AS n_calls,
    count(*) FILTER (WHERE invalid_reason LIKE 'call_failed%') AS n_to_retry,
    any_value(invalid_reason) AS example_reason
FROM judgments
WHERE error_kind IS NOT NULL
GROUP BY judge, error_kind;
