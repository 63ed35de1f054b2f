-- The label precedence is passed where a label is read (labelled_pairs_by(precedence), from
-- curate.label_precedence), no longer a table curate rewrote from its config on every run; the
-- labelled_pairs view answers under the precedence the latest curation run recorded.
DROP TABLE label_precedence;
