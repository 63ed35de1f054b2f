-- judge_calls (label layer): the judges' calls, that is every judgment but the verifiers' (which are
-- checks, not opinions: they label a pair through verifier_verdicts, never as votes).
-- Reads: judgments (filled by judge).
--   * judgments   every column of judgments
CREATE OR REPLACE VIEW judge_calls AS
SELECT * FROM judgments WHERE verdict_kind = 'judge';
