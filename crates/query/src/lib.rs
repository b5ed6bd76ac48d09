//! tarn's query engine: SQL and structured queries over every zone, on Apache
//! DataFusion.
//!
//! ```text
//! SQL text ──parse/plan──┐
//!                        ├─> LogicalPlan ─> QueryCache? ─hit─> batches
//! Query (structured) ────┘        │              └─miss─> DataFusion ─> stream (cached as it ends)
//!                                 └─ tables resolved by the `tarn` catalog from the Delta logs
//! ```
//!
//! - [`catalog`]: the `tarn` catalog, a schema per zone plus `system`; time
//!   travel with `table@v3` / `table@<timestamp>`.
//! - [`structured`]: the seed's [`Query`], built as a LogicalPlan.
//! - [`cache`]: the [`QueryCache`], keyed by plan, table versions, principal
//!   and settings.
//! - [`cost`]: the CostEstimator behind `--explain`.
//! - [`stats`]: the [`StatisticsManager`].
//! - [`lineage`]: the column lineage of a query.
//! - [`output`]: writing results as table, CSV, JSON lines, Parquet or Arrow IPC.

pub mod access;
mod barrier;
pub mod cache;
pub mod catalog;
pub mod cost;
mod engine;
mod error;
pub mod lineage;
pub mod output;
pub mod stats;
pub mod structured;
pub mod system;

pub use cache::{CacheStats, Principal, QueryCache};
pub use catalog::{TableId, TableVersionSpec};
pub use cost::Explanation;
pub use engine::{CacheStatus, QueryEngine, QueryStream};
pub use error::{Error, Result};
pub use output::OutputFormat;
pub use stats::StatisticsManager;
pub use structured::{Condition, PartitionDate, Predicate, Query};
