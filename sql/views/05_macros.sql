-- Shared expressions for the views.

-- The strict majority of three vote counts: 'a', 'b' or 'tie' when one count beats both others,
-- NULL on a tie for first place (or no votes).
CREATE OR REPLACE MACRO strict_majority(votes_a, votes_b, votes_tie) AS
    CASE
        WHEN votes_a > votes_b AND votes_a > votes_tie THEN 'a'
        WHEN votes_b > votes_a AND votes_b > votes_tie THEN 'b'
        WHEN votes_tie > votes_a AND votes_tie > votes_b THEN 'tie'
    END;

-- A label from a mean preference logit (log P(a) - log P(b)): its sign, tie at exactly 0, NULL without one.
CREATE OR REPLACE MACRO margin_label(margin) AS
    CASE WHEN margin > 0 THEN 'a' WHEN margin < 0 THEN 'b' WHEN margin = 0 THEN 'tie' END;

-- P(label) under Bradley-Terry with the mean preference logit as the logit.
CREATE OR REPLACE MACRO margin_confidence(margin) AS
    1.0 / (1.0 + exp(-abs(margin)));

-- The confidence of a label the votes give: the mean confidence its votes state (1.0 where they state
-- none) times its share of the votes, so that dissent lowers it. NULL without a label.
CREATE OR REPLACE MACRO vote_share_confidence(label, votes_a, votes_b, votes_tie, confidence_a, confidence_b,
                                              confidence_tie) AS
    coalesce(CASE label WHEN 'a' THEN confidence_a WHEN 'b' THEN confidence_b WHEN 'tie' THEN confidence_tie END, 1.0)
    * CASE label WHEN 'a' THEN votes_a WHEN 'b' THEN votes_b WHEN 'tie' THEN votes_tie END
    / (votes_a + votes_b + votes_tie);

-- A text as the curation filters compare it: lower case, every run of non-alphanumerics one space,
-- trimmed. Two responses equal under it are the same answer; exact prompt dedup and shingling read it too.
CREATE OR REPLACE MACRO normalized_text(text) AS
    trim(regexp_replace(lower(text), '[^[:alnum:]]+', ' ', 'g'));

-- The first of several candidate labels that exists: each a {rank, source, label, confidence}
-- struct, the lowest rank winning (the place of its source in the label precedence). NULL when none has a label.
CREATE OR REPLACE MACRO first_label(candidates) AS
    list_sort(list_filter(candidates, lambda x: x.label IS NOT NULL))[1];

-- The label precedence curation ran under last (curate.label_precedence, as its curation run recorded
-- it), or the default before any: what the labelled_pairs view answers with.
CREATE OR REPLACE MACRO recorded_label_precedence() AS
    coalesce((SELECT from_json(config->'label_precedence', '["VARCHAR"]') FROM curation_runs
              ORDER BY created_at DESC LIMIT 1),
             ['verifier', 'human', 'import', 'judges']);

-- A judges' figure under a judge cascade: the panel's when the cascade has not decided the pair
-- (or none is configured), the accepting level's when it accepted it, none while it waits for humans.
CREATE OR REPLACE MACRO cascaded(decision, cascade_value, panel_value) AS
    CASE WHEN decision IS NULL THEN panel_value WHEN decision = 'accepted' THEN cascade_value END;
