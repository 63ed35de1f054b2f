-- Rewards a reward model (or ensemble) gave candidates: for best-of-N, pair selection and reports.
CREATE TABLE candidate_rewards (
    rm_run_id     VARCHAR NOT NULL,
    candidate_id  VARCHAR NOT NULL,
    reward        DOUBLE NOT NULL,   -- the ensemble mean (the only member's reward for one model)
    reward_min    DOUBLE,            -- ensembles: the most pessimistic member
    reward_std    DOUBLE,            -- ensembles: disagreement between members
    created_at    TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (rm_run_id, candidate_id)
);
