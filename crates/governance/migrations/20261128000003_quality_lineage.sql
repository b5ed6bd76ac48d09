-- Results of the curated zone's quality expectations, one row per expectation
-- per stage run, and the lineage facts of every stage run (its inputs and
-- outputs with their Delta versions, and the column mapping where derivable).
-- `inputs`, `outputs` and `columns` are JSON.

CREATE TABLE quality_results (
    run_id         TEXT NOT NULL,
    dataset        TEXT NOT NULL,
    stage          TEXT NOT NULL,
    expectation    TEXT NOT NULL,
    check_kind     TEXT NOT NULL,
    severity       TEXT NOT NULL,
    passed         BIGINT NOT NULL,
    evaluated_rows BIGINT NOT NULL,
    failed_rows    BIGINT NOT NULL,
    observed       TEXT,
    recorded_at    TEXT NOT NULL,
    PRIMARY KEY (run_id, expectation)
);

CREATE INDEX quality_results_by_dataset ON quality_results (dataset, recorded_at);

CREATE TABLE lineage_facts (
    run_id      TEXT PRIMARY KEY,
    job         TEXT NOT NULL,
    inputs      TEXT NOT NULL,
    outputs     TEXT NOT NULL,
    columns     TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
