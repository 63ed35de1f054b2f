-- annotation_agreement (label layer): human agreement over the whole annotation set, one row, over
-- pairs with at least two votes (a single vote cannot agree or disagree with anything). Categories:
-- a, b, tie. Both coefficients are 1 for perfect agreement, about 0 for agreement at chance, below 0
-- for systematic disagreement; NULL when undefined (no pair with two votes, or every vote in one category).
-- Reads: annotations (filled by annotate pull).
--   n_pairs              pairs with at least two submitted votes
--   n_annotators         annotators with a submitted vote anywhere
--   n_votes              votes on those pairs (n: every pairable vote)
--   observed_agreement   Fleiss' P-bar: the chance that two votes on the same pair agree
--   expected_agreement   Fleiss' P_e: the same chance if votes fell at the overall category rates
--   fleiss_kappa         (P-bar - P_e) / (1 - P_e), with per-pair vote counts allowed to differ
--   krippendorff_alpha   nominal alpha: 1 - (n - 1) * (n - sum_c o_cc) / (n^2 - sum_c n_c^2), from the
--                        coincidence matrix o (o_cc = sum over pairs of n_uc (n_uc - 1) / (m_u - 1)) and
--                        n_c the votes in category c
CREATE OR REPLACE VIEW annotation_agreement AS
WITH units AS (
    SELECT pair_id, count(*) AS m
    FROM annotation_votes
    GROUP BY pair_id
    HAVING count(*) >= 2
),
cells AS (
    SELECT v.pair_id, v.winner, count(*) AS n_uc, any_value(u.m) AS m
    FROM annotation_votes AS v
    JOIN units AS u USING (pair_id)
    GROUP BY v.pair_id, v.winner
),
per_unit AS (
    SELECT pair_id, m,
           sum(n_uc * (n_uc - 1)) / (m * (m - 1)) AS p_agree,
           sum(n_uc * (n_uc - 1)) / (m - 1) AS o_diagonal
    FROM cells
    GROUP BY pair_id, m
),
categories AS (
    SELECT winner, sum(n_uc) AS n_c FROM cells GROUP BY winner
),
totals AS (
    SELECT sum(n_c) AS n, sum(n_c * n_c) AS sum_sq FROM categories
),
observed AS (
    SELECT count(*) AS n_pairs, avg(p_agree) AS p_bar, sum(o_diagonal) AS o_diagonal FROM per_unit
)
SELECT
    o.n_pairs,
    (SELECT count(DISTINCT annotator) FROM annotation_votes) AS n_annotators,
    t.n AS n_votes,
    o.p_bar AS observed_agreement,
    t.sum_sq / (t.n * t.n) AS expected_agreement,
    CASE WHEN t.sum_sq < t.n * t.n
         THEN (o.p_bar - t.sum_sq / (t.n * t.n)) / (1 - t.sum_sq / (t.n * t.n)) END AS fleiss_kappa,
    CASE WHEN t.sum_sq < t.n * t.n
         THEN 1 - (t.n - 1) * (t.n - o.o_diagonal) / (t.n * t.n - t.sum_sq) END AS krippendorff_alpha
FROM observed AS o, totals AS t;

-- annotator_quality (label layer): per annotator, how much they answer and how often they side with
-- the other annotators' majority (leave-one-out) and with the judges, to spot careless or confused raters.
--   annotator                          the Argilla username
--   n_submitted, n_discarded, n_draft  answers by status
--   agreement_with_peers               share of their votes that match the strict majority of the other
--                                      annotators on the same pair (where the others have one)
--   n_peer_comparisons                 how many votes that share is over
--   agreement_with_judges              share of their votes that match the judges' label under the
--                                      balanced rule (labelled_pairs.judge_label_by_balanced)
CREATE OR REPLACE VIEW annotator_quality AS
WITH answers AS (
    SELECT annotator,
           count(*) FILTER (WHERE status = 'submitted') AS n_submitted,
           count(*) FILTER (WHERE status = 'discarded') AS n_discarded,
           count(*) FILTER (WHERE status = 'draft') AS n_draft
    FROM annotations
    GROUP BY annotator
),
peers AS (
    SELECT v.annotator, v.pair_id, v.winner,
           a.votes_a - (v.winner = 'a')::INT AS others_a,
           a.votes_b - (v.winner = 'b')::INT AS others_b,
           a.votes_tie - (v.winner = 'tie')::INT AS others_tie
    FROM annotation_votes AS v
    JOIN annotation_pair_agreement AS a USING (pair_id)
),
with_peer_majority AS (
    SELECT *, strict_majority(others_a, others_b, others_tie) AS peer_majority
    FROM peers
)
SELECT
    a.annotator,
    a.n_submitted,
    a.n_discarded,
    a.n_draft,
    avg((w.winner = w.peer_majority)::INT) FILTER (WHERE w.peer_majority IS NOT NULL) AS agreement_with_peers,
    count(w.peer_majority) AS n_peer_comparisons,
    avg((w.winner = l.judge_label_by_balanced)::INT)
        FILTER (WHERE l.judge_label_by_balanced IS NOT NULL) AS agreement_with_judges
FROM answers AS a
LEFT JOIN with_peer_majority AS w USING (annotator)
LEFT JOIN labelled_pairs AS l ON l.pair_id = w.pair_id
GROUP BY ALL;
