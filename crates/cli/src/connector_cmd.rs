//! `tarn ingest kafka|rest|database`: builds the DataSpec from the flags and
//! the dataset's source in tarn.yaml (flags win), then ingests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tarn::{
    DataLake, DataSpec, DatabaseSourceConfig, IngestionResult, KafkaSourceConfig, RestSourceConfig,
    SchemaEvolution, SourceConfig,
};

use crate::args::{DatabaseArgs, EvolutionArg, KafkaArgs, KafkaFormatArg, LandingArgs, RestArgs};
use crate::commands::open_lake;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `tarn ingest kafka`: bounded, or with `--follow` until SIGINT/SIGTERM. A
/// signal in either mode commits the batch in hand and stops.
pub async fn kafka(config: Option<&std::path::Path>, args: KafkaArgs) -> Result<IngestionResult> {
    let lake = open_lake(config).await?;
    let mut spec = lake.spec_for(&args.dataset);
    let mut src = match spec.source.take() {
        Some(SourceConfig::Kafka(k)) => k,
        _ => KafkaSourceConfig {
            brokers: "127.0.0.1:9092".into(),
            ..Default::default()
        },
    };
    if !args.topic.is_empty() {
        src.topics = args.topic;
    }
    set(&mut src.brokers, args.brokers);
    if let Some(f) = args.format {
        src.format = Some(
            match f {
                KafkaFormatArg::Json => "json",
                KafkaFormatArg::Avro => "avro",
                KafkaFormatArg::ConfluentAvro => "confluent-avro",
            }
            .into(),
        );
    }
    or(&mut src.schema_registry, args.schema_registry);
    or(&mut src.group, args.group);
    or(&mut src.batch_size, args.batch_size);
    if let Some(l) = args.max_latency {
        src.max_latency_ms = Some(millis(&l)?);
    }
    spec.source = Some(SourceConfig::Kafka(src));
    spec.follow = args.follow;
    let stop = Arc::new(AtomicBool::new(false));
    spec.stop = Some(stop.clone());
    let signals = tokio::spawn(async move {
        if until_signal().await.is_ok() {
            eprintln!("stopping: committing the messages in hand…");
            stop.store(true, Ordering::Relaxed);
        }
    });
    let result = ingest(&lake, "kafka", spec, args.landing).await;
    signals.abort();
    result
}

/// `tarn ingest rest`.
pub async fn rest(config: Option<&std::path::Path>, args: RestArgs) -> Result<IngestionResult> {
    let lake = open_lake(config).await?;
    let mut spec = lake.spec_for(&args.dataset);
    let mut src = match spec.source.take() {
        Some(SourceConfig::Rest(r)) => r,
        _ => RestSourceConfig::default(),
    };
    set(&mut src.url, args.url);
    if src.url.is_empty() {
        return Err(format!(
            "no URL for dataset `{}`: pass --url or give it a rest source in tarn.yaml",
            args.dataset
        )
        .into());
    }
    or(&mut src.records_path, args.records_path);
    or(&mut src.paginate, args.paginate);
    or(&mut src.page_size, args.page_size);
    or(&mut src.auth, args.auth);
    or(&mut src.cursor_field, args.cursor_field);
    or(&mut src.cursor_param, args.cursor_param);
    or(&mut src.rate_limit, args.rate_limit);
    or(&mut src.max_retries, args.max_retries);
    for h in args.header {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header `{h}`: give NAME:VALUE"))?;
        src.headers
            .insert(name.trim().to_string(), value.trim().to_string());
    }
    spec.source = Some(SourceConfig::Rest(src));
    ingest(&lake, "rest", spec, args.landing).await
}

/// `tarn ingest database`.
pub async fn database(
    config: Option<&std::path::Path>,
    args: DatabaseArgs,
) -> Result<IngestionResult> {
    let lake = open_lake(config).await?;
    let mut spec = lake.spec_for(&args.dataset);
    let mut src = match spec.source.take() {
        Some(SourceConfig::Database(d)) => d,
        _ => DatabaseSourceConfig::default(),
    };
    set(&mut src.url, args.url);
    if src.url.is_empty() {
        return Err(format!(
            "no URL for dataset `{}`: pass --url or give it a database source in tarn.yaml",
            args.dataset
        )
        .into());
    }
    if args.table.is_some() || args.query.is_some() {
        src.table = args.table;
        src.query = args.query;
    }
    or(&mut src.watermark, args.watermark);
    spec.source = Some(SourceConfig::Database(src));
    ingest(&lake, "database", spec, args.landing).await
}

async fn ingest(
    lake: &DataLake,
    kind: &str,
    mut spec: DataSpec,
    landing: LandingArgs,
) -> Result<IngestionResult> {
    or(&mut spec.schema, landing.schema);
    or(&mut spec.partition_key, landing.partition_key);
    if let Some(e) = landing.schema_evolution {
        spec.schema_evolution = match e {
            EvolutionArg::Strict => SchemaEvolution::Strict,
            EvolutionArg::Additive => SchemaEvolution::Additive,
        };
    }
    Ok(lake.ingest_data(kind, spec).await?)
}

fn set(slot: &mut String, value: Option<String>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn or<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

/// Milliseconds of a duration such as `500ms`, `5s` or `1m`.
fn millis(text: &str) -> Result<u64> {
    let bad = || format!("`{text}`: give a duration such as 500ms, 5s or 1m");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let unit = match unit {
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        _ => return Err(bad().into()),
    };
    Ok(u64::try_from(
        (unit * u32::try_from(n).map_err(|_| bad())?).as_millis(),
    )?)
}

/// Waits for SIGINT or SIGTERM.
async fn until_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
