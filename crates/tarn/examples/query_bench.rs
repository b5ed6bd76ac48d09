//! Times SQL queries through tarn's query engine, for `bench/tpch_bench.py`.
//!
//! ```text
//! cargo run --release -p tarn --example query_bench -- LAKE/tarn.yaml Q1.sql [Q2.sql …]
//! ```
//!
//! For each query file it prints one JSON line:
//! - `cold_ms`: the first run in a fresh engine (Delta logs read, nothing cached);
//! - `warm_ms`: the median of `TARN_BENCH_RUNS` (default 3) further runs with
//!   the result cache off;
//! - `hit_p50_ms`: the median of 50 runs answered from the result cache
//!   (planning, table-version checks and cache lookup included);
//! - `rows`: rows returned.

use std::time::Instant;

use tarn::{CacheStatus, DataLake, TarnConfig};

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn run(lake: &DataLake, sql: &str) -> (usize, CacheStatus) {
    let result = lake.sql(sql).await.expect("query plans");
    let status = result.cache;
    let rows = result
        .collect()
        .await
        .expect("query runs")
        .iter()
        .map(|b| b.num_rows())
        .sum();
    (rows, status)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let config_path = args
        .next()
        .expect("usage: query_bench TARN_YAML QUERY.sql…");
    let runs: usize = std::env::var("TARN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let config = TarnConfig::load(std::path::Path::new(&config_path)).expect("config loads");
    let mut uncached = config.clone();
    uncached.query.cache_max_bytes = 0;
    for file in args {
        let sql = std::fs::read_to_string(&file).expect("query file");
        let cold_lake = DataLake::open(uncached.clone()).await.expect("lake opens");
        let t = Instant::now();
        let (rows, _) = run(&cold_lake, &sql).await;
        let cold = ms(t);
        let mut warm = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            run(&cold_lake, &sql).await;
            warm.push(ms(t));
        }
        let cached = DataLake::open(config.clone()).await.expect("lake opens");
        run(&cached, &sql).await;
        let mut hits = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let (_, status) = run(&cached, &sql).await;
            hits.push(ms(t));
            assert_eq!(
                status,
                CacheStatus::Hit,
                "{file}: a repeat must hit the cache"
            );
        }
        println!(
            "{}",
            serde_json::json!({
                "query": file,
                "rows": rows,
                "cold_ms": cold,
                "warm_ms": median(warm),
                "hit_p50_ms": median(hits),
            })
        );
    }
}
