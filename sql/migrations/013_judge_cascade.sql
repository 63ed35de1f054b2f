-- The judge cascade (judge.cascade): per pair, the level that settled it (or that it went on to
-- humans), rewritten by every judge run; and each level's fitted threshold.
CREATE TABLE cascade_decisions (
    pair_id     VARCHAR PRIMARY KEY,
    level       INTEGER NOT NULL,         -- 1 = the cheapest judge; the level that decided
    judge       VARCHAR,                  -- that level's judge (NULL past the last judge)
    decision    VARCHAR NOT NULL CHECK (decision IN ('accepted', 'to_humans', 'unlabelled')),
    label       VARCHAR CHECK (label IN ('a', 'b', 'tie')),
    confidence  DOUBLE,                   -- the judge's confidence in its label for the pair
    threshold   DOUBLE                    -- the level's fitted threshold (accepted at or above it)
);

CREATE TABLE cascade_levels (
    level            INTEGER PRIMARY KEY,
    judge            VARCHAR NOT NULL,
    threshold        DOUBLE,              -- NULL when none reaches the target
    gold_pairs       INTEGER NOT NULL,    -- gold pairs this judge has a label for
    gold_accepted    INTEGER,             -- of those, at or above the threshold
    agreement        DOUBLE,              -- with gold, on those
    agreement_low    DOUBLE,              -- its one-sided lower confidence bound (Clopper-Pearson)
    pairs_seen       INTEGER NOT NULL,    -- pairs this level judged (escalated to it)
    pairs_accepted   INTEGER NOT NULL,
    note             VARCHAR              -- why no threshold, when there is none
);
