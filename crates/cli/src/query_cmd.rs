//! `tarn query` and `tarn analyze`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use tarn::query::output::write_stream;
use tarn::query::structured::parse_condition;
use tarn::{OutputFormat, PartitionDate, Query, Zone};

use crate::args::{AnalyzeArgs, OutputArg, QueryArgs};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs `tarn query`: prints the explanation, or streams the result to stdout
/// or `--output`.
pub async fn query(config: Option<&Path>, args: QueryArgs) -> Result<()> {
    let lake = crate::commands::open_lake(config).await?;
    let engine = lake.query_engine();
    let started = Instant::now();
    let (plan, statement) = match (&args.sql, &args.from) {
        (Some(sql), None) => (engine.plan_sql(sql).await?, sql.clone()),
        (None, Some(_)) => {
            let query = structured(&args)?;
            (
                engine.plan_query(&query).await?,
                serde_json::to_string(&query)?,
            )
        }
        (Some(_), Some(_)) => {
            return Err("give either SQL or --from (a structured query), not both".into());
        }
        (None, None) => {
            return Err(
                "nothing to run: give SQL (tarn query \"SELECT …\") or a structured query \
                 (tarn query --from raw/DATASET …); see tarn query --help"
                    .into(),
            );
        }
    };
    if args.explain {
        let explanation = engine.explain(&plan).await?;
        let text = if args.json {
            serde_json::to_string_pretty(&explanation)?
        } else {
            explanation.to_string()
        };
        let mut stdout = std::io::stdout().lock();
        match writeln!(stdout, "{text}") {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
            _ => return Ok(()),
        }
    }
    let format = output_format(&args)?;
    let result = engine.execute_statement(plan, &statement).await?;
    let cache_status = result.cache;
    let out: Box<dyn Write + Send> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => Box::new(PipeSafe(std::io::BufWriter::new(std::io::stdout()))),
    };
    let rows = write_stream(result.stream, format, out).await?;
    if args.stats {
        let s = engine.cache().stats();
        eprintln!(
            "{rows} row(s) in {:.1} ms; cache {}; cache totals: {} hit(s), {} miss(es), {} bypassed, \
             {} entries, {} of {} bytes",
            started.elapsed().as_secs_f64() * 1e3,
            serde_json::to_value(cache_status)?
                .as_str()
                .unwrap_or_default(),
            s.hits,
            s.misses,
            s.bypassed,
            s.entries,
            s.bytes,
            s.max_bytes
        );
    }
    Ok(())
}

/// Runs `tarn analyze`.
pub async fn analyze(config: Option<&Path>, args: AnalyzeArgs) -> Result<String> {
    let lake = crate::commands::open_lake(config).await?;
    let (zone, name) = args
        .table
        .split_once(['/', '.'])
        .ok_or("give the table as ZONE/DATASET, e.g. raw/user_events")?;
    let zone: Zone = zone.parse()?;
    let stats = lake.statistics().analyze(zone, name).await?;
    if args.json {
        return Ok(serde_json::to_string_pretty(&stats)?);
    }
    let mut o = format!(
        "{zone}.{name} at version {}: {} rows, {} files, {:.1} MB\n{:<28} {:>10} {:>12}  {:<24} {:<24}\n",
        stats.delta_version,
        stats.row_count,
        stats.file_count,
        stats.size_bytes as f64 / 1e6,
        "COLUMN",
        "NULLS",
        "DISTINCT~",
        "MIN",
        "MAX"
    );
    let show = |v: &Option<String>| {
        let s = v.as_deref().unwrap_or("-");
        if s.chars().count() > 24 {
            format!("{}…", s.chars().take(23).collect::<String>())
        } else {
            s.to_string()
        }
    };
    for c in &stats.columns {
        o.push_str(&format!(
            "{:<28} {:>10} {:>12}  {:<24} {:<24}\n",
            c.name,
            c.null_count.map_or("-".into(), |n| n.to_string()),
            c.distinct_count.map_or("-".into(), |n| n.to_string()),
            show(&c.min),
            show(&c.max)
        ));
    }
    Ok(o)
}

/// The structured query the flags describe.
fn structured(args: &QueryArgs) -> Result<Query> {
    let mut q = Query::from(args.from.clone().unwrap_or_default()).select(args.select.clone());
    for cond in &args.filters {
        let (column, predicate) = parse_condition(cond).map_err(|e| format!("--where {e}"))?;
        q = q.filter(column, predicate);
    }
    if let Some(d) = &args.partition_date {
        let day = |s: &str| {
            s.trim()
                .parse()
                .map_err(|e| format!("--partition-date `{s}`: expected YYYY-MM-DD ({e})"))
        };
        q.partition_date = Some(match d.split_once("..") {
            Some((from, to)) => PartitionDate::Range {
                from: day(from)?,
                to: day(to)?,
            },
            None => PartitionDate::Day(day(d)?),
        });
    }
    q.order_by = args.order_by.clone();
    q.limit = args.limit;
    Ok(q)
}

fn output_format(args: &QueryArgs) -> Result<OutputFormat> {
    Ok(match (args.format, &args.output) {
        (Some(f), _) => match f {
            OutputArg::Table => OutputFormat::Table,
            OutputArg::Csv => OutputFormat::Csv,
            OutputArg::Json => OutputFormat::Json,
            OutputArg::Parquet => OutputFormat::Parquet,
            OutputArg::Arrow => OutputFormat::Arrow,
        },
        (None, Some(path)) => match path.extension().and_then(|e| e.to_str()) {
            Some(ext) => ext.parse().map_err(|_| {
                format!(
                    "cannot tell the format of {} from its extension; give --format",
                    path.display()
                )
            })?,
            None => OutputFormat::Csv,
        },
        (None, None) if std::io::stdout().is_terminal() => OutputFormat::Table,
        (None, None) => OutputFormat::Csv,
    })
}

/// Stdout that treats a closed pipe (`tarn query … | head`) as the end of
/// output rather than an error: later writes are dropped.
struct PipeSafe<W>(W);

impl<W: Write> Write for PipeSafe<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(buf.len()),
            other => other,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}
