//! Pull connectors (REST APIs, databases): each reads records in a cursor
//! range and sends them as [`Chunk`]s down a channel; the pipeline validates
//! and lands them exactly as it does file records.
//!
//! A cursor is an integer, or a timestamp as microseconds since the epoch
//! (UTC). The highest cursor value a run lands is committed as the version of
//! the source's `txn` action in the raw table, in the same commit as the rows,
//! and the next run reads only records above it.

pub(crate) mod database;
pub(crate) mod rest;

use tokio::sync::mpsc;

use crate::reader::Chunk;

/// The records of a read: those with a cursor value in `(after, up_to]`.
/// `None` bounds are open. Without a cursor field every record is in range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CursorRange {
    /// Exclusive lower bound (the committed cursor).
    pub after: Option<i64>,
    /// Inclusive upper bound (set only when re-reading a range already quarantined).
    pub up_to: Option<i64>,
}

impl CursorRange {
    /// Whether `value` falls in the range.
    pub(crate) fn contains(&self, value: i64) -> bool {
        self.after.is_none_or(|a| value > a) && self.up_to.is_none_or(|u| value <= u)
    }
}

/// What a connector read.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ReadStats {
    /// Records sent (parsed rows plus rejects).
    pub records: u64,
    /// Bytes received from the source (response bodies; for databases, an
    /// estimate from the values' sizes).
    pub bytes: u64,
    /// The highest cursor value among the records sent.
    pub max_cursor: Option<i64>,
    /// Requests made (HTTP requests including retries; database queries).
    pub requests: u64,
}

/// Where connectors send chunks.
pub(crate) type ChunkSender = mpsc::Sender<Chunk>;
