-- Report layer: what judging cost, per judge: calls, tokens, dollars (judge.prices), latency
-- percentiles and failures. judge_errors breaks the failures down by kind with an example.
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
