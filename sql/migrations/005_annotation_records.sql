-- Human annotation in Argilla: which pairs were sent to which dataset, and how they were shown.
CREATE TABLE annotation_records (
    record_id     VARCHAR PRIMARY KEY,   -- the Argilla record's id: hash of (workspace, dataset, pair_id)
    pair_id       VARCHAR NOT NULL,
    workspace     VARCHAR NOT NULL,
    dataset       VARCHAR NOT NULL,
    -- 'ab': response A on screen is the pair's candidate_a; 'ba': the two are swapped. Random per
    -- record (seeded), so annotators' own position bias cancels over the dataset.
    shown_order   VARCHAR NOT NULL CHECK (shown_order IN ('ab', 'ba')),
    round         INTEGER NOT NULL DEFAULT 0,
    reason        VARCHAR NOT NULL,      -- why it was sent: all, judge_disagreement, low_confidence, ...
    min_submitted INTEGER NOT NULL,      -- annotators wanted per record
    pushed_at     TIMESTAMP DEFAULT current_timestamp
);

-- Annotations keep the answer as the annotator saw it and when Argilla last changed it, so a
-- re-pull replaces an edited answer and adds nothing for an unchanged one.
ALTER TABLE annotations ADD COLUMN shown_winner VARCHAR;
ALTER TABLE annotations ADD COLUMN response_updated_at TIMESTAMP;
