-- judgment_votes (label layer): one row per valid judge vote, in the pair's orientation.
-- Reads views only (no table directly).
--   judgment_id                               the judge call (judgments)
--   pair_id, judge, principle_id              what was judged, by whom, under which principle
--   shown_order                               ab (a shown first) or ba
--   winner                                    a, b or tie, mapped back from the shown order
--   confidence                                P(verdict) from log-probabilities, else the judge's stated confidence
--   preference_logit                          log P(a) - log P(b) from log-probabilities, NULL without them
--   template_version, constitution_version    the judge prompt and constitution it was asked under
--   cut_answer                                the verdict was read from an answer cut at the token limit
CREATE OR REPLACE VIEW judgment_votes AS
SELECT
    j.judgment_id,
    j.pair_id,
    j.judge,
    j.principle_id,
    j.shown_order,
    j.winner,
    j.confidence,
    j.preference_logit,
    j.template_version,
    j.constitution_version,
    j.cut_answer
FROM judge_calls AS j
WHERE j.valid;
