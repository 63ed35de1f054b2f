-- judgment_votes (label layer): one row per valid judge vote, in the pair's orientation: pairwise
-- judges' verdicts, and the preferences rating and ranking judges' scores give (score_votes), so every
-- label rule, the cascade and the label model count them like any other judge's.
-- Reads views only (no table directly).
--   judgment_id                               the judge call (judgments), or the score vote (score_votes.vote_id)
--   pair_id, judge, principle_id              what was judged, by whom, under which principle
--   shown_order                               ab (a shown first) or ba; NULL for a rating judge (each response
--                                             scored alone: no position to lean on)
--   winner                                    a, b or tie, mapped back from the shown order
--   confidence                                P(verdict) from log-probabilities, else the judge's stated confidence
--   preference_logit                          log P(a) - log P(b) from log-probabilities, NULL without them
--   template_version, constitution_version    the judge prompt and constitution it was asked under
--   cut_answer                                the verdict was read from an answer cut at the token limit
--   mode                                      pairwise, rating or ranking
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
    j.cut_answer,
    'pairwise' AS mode
FROM judge_calls AS j
WHERE j.valid
UNION ALL
SELECT
    s.vote_id,
    s.pair_id,
    s.rater,
    s.principle_id,
    s.shown_order,
    s.winner,
    s.confidence,
    s.preference_logit,
    s.template_version,
    s.constitution_version,
    s.cut_answer,
    s.mode
FROM score_votes AS s
WHERE s.rater_kind = 'judge';
