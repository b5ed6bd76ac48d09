-- Table and column statistics kept by the query engine's StatisticsManager:
-- one row per table (zone, dataset), replaced on each refresh.
-- `stats` is the JSON form of tarn_governance::TableStatistics.

CREATE TABLE table_statistics (
    zone          TEXT NOT NULL,
    dataset       TEXT NOT NULL,
    delta_version BIGINT NOT NULL,
    computed_at   TEXT NOT NULL,
    stats         TEXT NOT NULL,
    PRIMARY KEY (zone, dataset)
);
