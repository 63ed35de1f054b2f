-- Trust at the edges (issue 23).
--
-- prompts.in_pool: the prompts generation answers and refresh rounds draw from. Ingested prompts are
-- in it; the prompts of imported pairs (gold) are not, unless the import asks for it (gold.generate,
-- import-pairs --into-pool): they are there to measure judges and reward models, and answering them
-- would make every re-run of `prefcurate run` generate for the gold set. Stores from before keep
-- every prompt that has generated candidates in the pool.
ALTER TABLE prompts ADD COLUMN in_pool BOOLEAN DEFAULT true;
UPDATE prompts SET in_pool = false
WHERE prompt_id IN (SELECT prompt_id FROM candidates GROUP BY prompt_id HAVING bool_and(generator_key = 'import'));

-- judgments.cut_answer: the verdict was read from an answer the endpoint cut at the token limit
-- (finish_reason 'length'); kept by default, curate.cut_verdicts: drop leaves such labels out.
ALTER TABLE judgments ADD COLUMN cut_answer BOOLEAN DEFAULT false;
