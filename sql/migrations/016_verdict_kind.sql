-- judgments.verdict_kind: what made the verdict, a column of its own instead of a type tag in
-- confidence_source: 'judge' (an LLM judge's answer) or 'verifier' (a check that passed exactly one
-- response). Verifier verdicts keep confidence_source 'verifier' (their confidence is the check's).
ALTER TABLE judgments ADD COLUMN verdict_kind VARCHAR DEFAULT 'judge';
UPDATE judgments SET verdict_kind = 'verifier' WHERE confidence_source = 'verifier';
