//! QueryCache: query results in memory, LRU within a byte bound.
//!
//! An entry is keyed by a hash of everything that decides a result:
//! - the logical plan, as planned from the query (so spelling and whitespace
//!   of the SQL text do not matter, and a structured query and the same SQL
//!   share entries);
//! - the Delta version of every table the plan reads;
//! - the principal and the fingerprint of the policies that apply to it;
//! - the session settings.
//!
//! A commit to any input table changes its version and so the key: the old
//! entry is never found again and ages out. Plans with volatile functions
//! (`now()`, `random()`) or that read non-Delta tables (`system.*`,
//! `information_schema`) are not cached.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use lru::LruCache;
use serde::Serialize;

use crate::catalog::TableId;

/// Who runs a query, as far as results depend on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Principal {
    /// The principal's name.
    pub name: String,
    /// A hash of the grants, masks and row filters that apply to it.
    pub policy_fingerprint: String,
}

impl Principal {
    /// The administrator, to whom no policy applies.
    pub fn admin() -> Self {
        Self {
            name: "admin".into(),
            policy_fingerprint: String::new(),
        }
    }
}

/// The key of a cached result (a BLAKE3 hash of its parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of `plan` (its normalized text) reading `tables`, run by
    /// `principal` with `settings`.
    pub fn new(plan: &str, tables: &[TableId], principal: &Principal, settings: &str) -> Self {
        let mut h = blake3::Hasher::new();
        let mut part = |s: &str| {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        part(plan);
        let mut tables: Vec<&TableId> = tables.iter().collect();
        tables.sort_by(|a, b| (&a.url, a.version).cmp(&(&b.url, b.version)));
        tables.dedup();
        for t in tables {
            part(&t.url);
            part(&t.version.to_string());
        }
        part(&principal.name);
        part(&principal.policy_fingerprint);
        part(settings);
        CacheKey(*h.finalize().as_bytes())
    }
}

/// A cached result.
#[derive(Debug)]
pub struct CachedResult {
    /// Result schema.
    pub schema: SchemaRef,
    /// Result rows.
    pub batches: Vec<RecordBatch>,
    /// The tables (and versions) it was computed from.
    pub tables: Vec<TableId>,
    /// The columns it read, as `zone/dataset.column` (for the audit log).
    pub columns: Vec<String>,
    /// Memory held.
    pub bytes: usize,
}

/// Counters and size of the cache (`system.cache`, `tarn query --stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Lookups that found a result.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Queries that could not be cached (volatile functions, system tables).
    pub bypassed: u64,
    /// Entries dropped to stay within the byte bound.
    pub evictions: u64,
    /// Results too large to cache.
    pub too_large: u64,
    /// Entries held.
    pub entries: u64,
    /// Bytes held.
    pub bytes: u64,
    /// The byte bound.
    pub max_bytes: u64,
    /// The largest entry that is cached.
    pub max_entry_bytes: u64,
}

#[derive(Debug)]
struct Entries {
    lru: LruCache<CacheKey, Arc<CachedResult>>,
    bytes: usize,
}

/// The result cache: an LRU of results within `max_bytes`, each at most
/// `max_entry_bytes`.
#[derive(Debug)]
pub struct QueryCache {
    entries: Mutex<Entries>,
    max_bytes: usize,
    max_entry_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    bypassed: AtomicU64,
    evictions: AtomicU64,
    too_large: AtomicU64,
}

impl QueryCache {
    /// A cache of at most `max_bytes`, caching results of at most
    /// `max_entry_bytes`. `max_bytes == 0` disables it.
    pub fn new(max_bytes: usize, max_entry_bytes: usize) -> Self {
        Self {
            entries: Mutex::new(Entries {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            max_bytes,
            max_entry_bytes: max_entry_bytes.min(max_bytes),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
        }
    }

    /// Whether results are cached at all.
    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// The largest result that is cached.
    pub fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    /// The result for `key`, counting a hit or a miss.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<CachedResult>> {
        let found = self.lock().lru.get(key).cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Counts a query that was not looked up because it cannot be cached.
    pub fn note_bypass(&self) {
        self.bypassed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a result that was too large to keep.
    pub fn note_too_large(&self) {
        self.too_large.fetch_add(1, Ordering::Relaxed);
    }

    /// Stores a result, evicting the least recently used entries to make room.
    /// Results larger than the entry bound are not stored.
    pub fn put(&self, key: CacheKey, result: CachedResult) {
        if result.bytes > self.max_entry_bytes || !self.enabled() {
            self.note_too_large();
            return;
        }
        let mut e = self.lock();
        if let Some(old) = e.lru.pop(&key) {
            e.bytes -= old.bytes;
        }
        while e.bytes + result.bytes > self.max_bytes {
            match e.lru.pop_lru() {
                Some((_, old)) => {
                    e.bytes -= old.bytes;
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        e.bytes += result.bytes;
        e.lru.put(key, Arc::new(result));
    }

    /// Drops every entry computed from the table at `url` (after an erasure,
    /// which rewrites history).
    pub fn invalidate_table(&self, url: &str) -> usize {
        let mut e = self.lock();
        let stale: Vec<CacheKey> = e
            .lru
            .iter()
            .filter(|(_, r)| r.tables.iter().any(|t| t.url == url))
            .map(|(k, _)| *k)
            .collect();
        for k in &stale {
            if let Some(old) = e.lru.pop(k) {
                e.bytes -= old.bytes;
            }
        }
        stale.len()
    }

    /// Counters and size.
    pub fn stats(&self) -> CacheStats {
        let e = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bypassed: self.bypassed.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            too_large: self.too_large.load(Ordering::Relaxed),
            entries: e.lru.len() as u64,
            bytes: e.bytes as u64,
            max_bytes: self.max_bytes as u64,
            max_entry_bytes: self.max_entry_bytes as u64,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Memory held by `batches`.
pub fn batches_size(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::get_array_memory_size).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use tarn_common::Zone;

    fn result(rows: i64) -> CachedResult {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .unwrap();
        let bytes = batch.get_array_memory_size();
        CachedResult {
            schema,
            batches: vec![batch],
            tables: vec![table("t", 1)],
            columns: Vec::new(),
            bytes,
        }
    }

    fn table(name: &str, version: i64) -> TableId {
        TableId {
            zone: Zone::Raw,
            name: name.into(),
            version,
            url: format!("file:///lake/raw/{name}"),
        }
    }

    #[test]
    fn key_changes_with_version_principal_and_settings() {
        let admin = Principal::admin();
        let k = CacheKey::new("plan", &[table("t", 1)], &admin, "s");
        assert_eq!(k, CacheKey::new("plan", &[table("t", 1)], &admin, "s"));
        assert_ne!(k, CacheKey::new("plan", &[table("t", 2)], &admin, "s"));
        assert_ne!(k, CacheKey::new("plan2", &[table("t", 1)], &admin, "s"));
        assert_ne!(k, CacheKey::new("plan", &[table("t", 1)], &admin, "s2"));
        let alice = Principal {
            name: "alice".into(),
            policy_fingerprint: "f1".into(),
        };
        assert_ne!(k, CacheKey::new("plan", &[table("t", 1)], &alice, "s"));
        let alice2 = Principal {
            policy_fingerprint: "f2".into(),
            ..alice.clone()
        };
        assert_ne!(
            CacheKey::new("plan", &[], &alice, "s"),
            CacheKey::new("plan", &[], &alice2, "s")
        );
        // Parts are length-prefixed: moving a boundary changes the key.
        assert_ne!(
            CacheKey::new("ab", &[], &admin, "c"),
            CacheKey::new("a", &[], &admin, "bc")
        );
    }

    #[test]
    fn lru_stays_within_its_byte_bound() {
        let one = result(1000).bytes;
        let cache = QueryCache::new(one * 2 + one / 2, one * 2);
        let key = |i: u8| CacheKey([i; 32]);
        cache.put(key(1), result(1000));
        cache.put(key(2), result(1000));
        assert!(cache.get(&key(1)).is_some(), "1 is now most recently used");
        cache.put(key(3), result(1000));
        assert!(cache.get(&key(2)).is_none(), "2 was least recently used");
        assert!(cache.get(&key(1)).is_some());
        assert!(cache.get(&key(3)).is_some());
        let s = cache.stats();
        assert_eq!((s.entries, s.evictions, s.hits, s.misses), (2, 1, 3, 1));
        assert!(s.bytes <= s.max_bytes);

        cache.put(key(4), result(10_000));
        assert!(cache.get(&key(4)).is_none(), "larger than an entry may be");
        assert_eq!(cache.stats().too_large, 1);

        assert_eq!(cache.invalidate_table("file:///lake/raw/t"), 2);
        assert_eq!((cache.stats().entries, cache.stats().bytes), (0, 0));
    }

    #[test]
    fn a_zero_bound_disables_the_cache() {
        let cache = QueryCache::new(0, 1 << 20);
        assert!(!cache.enabled());
        cache.put(CacheKey([1; 32]), result(10));
        assert_eq!(cache.stats().entries, 0);
    }
}
