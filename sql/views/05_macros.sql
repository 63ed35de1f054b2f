-- Shared expressions for the views.

-- The strict majority of three vote counts: 'a', 'b' or 'tie' when one count beats both others,
-- NULL on a tie for first place (or no votes).
CREATE OR REPLACE MACRO strict_majority(votes_a, votes_b, votes_tie) AS
    CASE
        WHEN votes_a > votes_b AND votes_a > votes_tie THEN 'a'
        WHEN votes_b > votes_a AND votes_b > votes_tie THEN 'b'
        WHEN votes_tie > votes_a AND votes_tie > votes_b THEN 'tie'
    END;

-- A text as the curation filters compare it: lower case, every run of non-alphanumerics one space,
-- trimmed. Two responses equal under it are the same answer; exact prompt dedup and shingling read it too.
CREATE OR REPLACE MACRO normalized_text(text) AS
    trim(regexp_replace(lower(text), '[^[:alnum:]]+', ' ', 'g'));

-- The first of several candidate labels that exists: each a {rank, source, label, confidence}
-- struct, the lowest rank winning (label_precedence). NULL when none has a label.
CREATE OR REPLACE MACRO first_label(candidates) AS
    list_sort(list_filter(candidates, lambda x: x.label IS NOT NULL))[1];

-- A label source's place in label_precedence (1 wins first).
CREATE OR REPLACE MACRO precedence_rank(name) AS
    (SELECT rank FROM label_precedence WHERE source = name);

-- A judges' figure under a judge cascade: the panel's when the cascade has not decided the pair
-- (or none is configured), the accepting level's when it accepted it, none while it waits for humans.
CREATE OR REPLACE MACRO cascaded(decision, cascade_value, panel_value) AS
    CASE WHEN decision IS NULL THEN panel_value WHEN decision = 'accepted' THEN cascade_value END;
