-- The label model (curate.label_rule: dawid_skene): every judge and annotator a rater with its own
-- estimated reliability (curation/label_model.py). Refitted whenever curate runs under that rule.
CREATE TABLE label_model_labels (
    pair_id     VARCHAR PRIMARY KEY,
    label       VARCHAR NOT NULL CHECK (label IN ('a', 'b', 'tie')),
    confidence  DOUBLE NOT NULL           -- the posterior probability of that label
);

CREATE TABLE label_model_raters (
    rater     VARCHAR PRIMARY KEY,        -- judge:<name> or annotator:<username>
    n_votes   BIGINT NOT NULL,
    accuracy  DOUBLE NOT NULL             -- estimated P(its vote is the true label), over the labels' priors
);
