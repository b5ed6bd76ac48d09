//! Runs a parsed command and prints its outcome: for people by default, JSON
//! with `--json`.

use std::process::ExitCode;

use serde_json::json;
use tarn::{
    CatalogEntry, DataLake, DatasetDetails, Format, IngestionResult, IngestionStatus,
    SchemaEvolution, TableStats, TarnConfig, ZoneTable,
};

use crate::args::{CatalogCommand, Cli, Command, EvolutionArg, FileArgs, FormatArg, IngestCommand};
use crate::progress::Bar;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Appends a line to an output buffer.
macro_rules! out {
    ($o:expr) => {{
        $o.push('\n');
    }};
    ($o:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($arg)*);
    }};
}

/// Writes command output to stdout. A closed pipe (`tarn … | head`) is not an error.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Who commands act as: `--as` / `TARN_PRINCIPAL`, `--token` / `TARN_TOKEN`.
static IDENTITY: std::sync::OnceLock<(Option<String>, Option<String>)> = std::sync::OnceLock::new();

/// Opens the lake of `config`, acting as the principal `--as` or `--token`
/// names (admin if neither).
pub async fn open_lake(config: Option<&std::path::Path>) -> Result<DataLake> {
    let lake = DataLake::open(TarnConfig::discover(config)?).await?;
    Ok(match IDENTITY.get() {
        Some((_, Some(token))) => lake.authenticate(token).await?,
        Some((Some(name), None)) => lake.as_principal(name).await?,
        _ => lake,
    })
}

/// Runs `cli`'s command.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let _ = IDENTITY.set((cli.acting_as.clone(), cli.api_token.clone()));
    let mut o = String::new();
    let outcome = run_into(cli, &mut o).await;
    emit(&o)?;
    outcome
}

async fn run_into(cli: Cli, o: &mut String) -> Result<ExitCode> {
    match cli.command {
        Command::Init { dir } => {
            let (lake, created) = DataLake::init(&dir).await?;
            let path = lake.config().path.clone().unwrap_or_default();
            let roots = lake.config().zone_roots()?;
            if created {
                out!(o, "Created a lake in {}", dir.display());
            } else {
                out!(o, "{} exists; kept it", path.display());
            }
            out!(o, "  config:     {}", path.display());
            for zone in tarn::Zone::ALL {
                out!(o, "  {:<11} {}", format!("{zone}:"), roots.root(zone));
            }
            out!(o, "  metadata:   {}", lake.config().metadata_store_url());
            out!(
                o,
                "\nNext: tarn --config {} ingest file --dataset NAME --path FILE [--schema FILE.avsc]",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { dir } => {
            let out = tarn::demo::run(&dir).await?;
            let cfg = out.dir.join("tarn.yaml");
            out!(
                o,
                "tarn demo: the user_events example (examples/user_events) in {}\n\
                 Clickstream events with duplicates, late arrivals, PII and bad values, \
                 and a countries reference table.\n",
                out.dir.display()
            );
            for (n, step) in out.steps.iter().enumerate() {
                match step {
                    tarn::demo::DemoStep::Ingest(file, result) => {
                        out!(
                            o,
                            "{}. tarn ingest file --dataset {} --path {file}",
                            n + 1,
                            result.metadata.dataset
                        );
                        print_ingest(o, result);
                    }
                    tarn::demo::DemoStep::Process(result) => {
                        out!(o, "{}. tarn process {}", n + 1, result.dataset);
                        crate::process_cmd::print_processing(o, result);
                    }
                }
                out!(o);
            }
            let sql = "SELECT * FROM consumption.daily_purchases ORDER BY day, event_type";
            let batches = out.lake.sql(sql).await?.collect().await?;
            out!(
                o,
                "The mart: tarn -c {} query \"{sql}\"\n{}",
                cfg.display(),
                tarn::query::output::pretty(&batches)?
            );
            out!(o, "\nMore:");
            out!(o, "  tarn -c {} quality user_events", cfg.display());
            out!(
                o,
                "  tarn -c {} query \"SELECT event_id, email, card_number, country_name FROM curated.user_events LIMIT 5\"",
                cfg.display()
            );
            out!(o, "  tarn -c {} catalog show user_events", cfg.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest(cmd) => {
            let config = cli.config.as_deref();
            let (json_out, outcome) = match cmd {
                IngestCommand::File(args) => (args.json, ingest_file(config, args).await),
                IngestCommand::Kafka(args) => (
                    args.landing.json,
                    crate::connector_cmd::kafka(config, args).await,
                ),
                IngestCommand::Rest(args) => (
                    args.landing.json,
                    crate::connector_cmd::rest(config, args).await,
                ),
                IngestCommand::Database(args) => (
                    args.landing.json,
                    crate::connector_cmd::database(config, args).await,
                ),
            };
            match outcome {
                Ok(result) => {
                    if json_out {
                        out!(o, "{}", serde_json::to_string_pretty(&result)?);
                    } else {
                        print_ingest(o, &result);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) if json_out => {
                    out!(
                        o,
                        "{}",
                        json!({"status": "failed", "errors": [e.to_string()]})
                    );
                    Err(e)
                }
                Err(e) => Err(e),
            }
        }
        Command::Query(args) => {
            crate::query_cmd::query(cli.config.as_deref(), args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Analyze(args) => {
            out!(
                o,
                "{}",
                crate::query_cmd::analyze(cli.config.as_deref(), args)
                    .await?
                    .trim_end()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Process(args) => crate::process_cmd::process(cli.config.as_deref(), args, o).await,
        Command::Quality(args) => crate::process_cmd::quality(cli.config.as_deref(), args, o).await,
        Command::Optimize(args) => {
            crate::process_cmd::optimize(cli.config.as_deref(), args, o).await
        }
        Command::Policy(cmd) => crate::process_cmd::policy(cli.config.as_deref(), cmd, o).await,
        Command::Catalog(cmd) => {
            let lake = open_lake(cli.config.as_deref()).await?;
            match cmd {
                CatalogCommand::List { json } => {
                    let entries = lake.catalog_list().await?;
                    if json {
                        out!(o, "{}", serde_json::to_string_pretty(&entries)?);
                    } else {
                        print_list(o, &entries);
                    }
                }
                CatalogCommand::Show { dataset, json } => {
                    let details = lake.catalog_show(&dataset).await?;
                    if json {
                        out!(o, "{}", serde_json::to_string_pretty(&details)?);
                    } else {
                        print_details(o, &details);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        command => crate::governance_cmd::run(cli.config.as_deref(), command, o).await,
    }
}

async fn ingest_file(config: Option<&std::path::Path>, args: FileArgs) -> Result<IngestionResult> {
    let lake = open_lake(config).await?;
    let mut spec = lake.spec_for(&args.dataset);
    if !args.path.is_empty() {
        spec.paths = args.path;
    }
    if args.schema.is_some() {
        spec.schema = args.schema;
    }
    if let Some(f) = args.format {
        spec.format = Some(match f {
            FormatArg::Csv => Format::Csv,
            FormatArg::Ndjson => Format::Ndjson,
            FormatArg::Json => Format::Json,
            FormatArg::Parquet => Format::Parquet,
            FormatArg::Avro => Format::Avro,
        });
    }
    if args.partition_key.is_some() {
        spec.partition_key = args.partition_key;
    }
    if let Some(e) = args.schema_evolution {
        spec.schema_evolution = match e {
            EvolutionArg::Strict => SchemaEvolution::Strict,
            EvolutionArg::Additive => SchemaEvolution::Additive,
        };
    }
    if let Some(d) = args.delimiter {
        spec.csv.delimiter = d;
    }
    if let Some(q) = args.quote {
        spec.csv.quote = q;
    }
    if args.no_header {
        spec.csv.header = false;
    }
    if args.null_marker.is_some() {
        spec.csv.null_marker = args.null_marker;
    }
    spec.force = args.force;
    Ok(lake
        .ingest_with_progress("file", spec, Bar::for_terminal())
        .await?)
}

fn print_ingest(o: &mut String, r: &IngestionResult) {
    let m = &r.metadata;
    match r.status {
        IngestionStatus::Skipped if m.skipped.is_empty() => {
            out!(o, "= {}: nothing new to ingest", m.dataset);
            return;
        }
        IngestionStatus::Skipped => {
            out!(
                o,
                "= {}: nothing to ingest; already ingested: {}",
                m.dataset,
                m.skipped.join(", ")
            );
            out!(o, "  (use --force to ingest again)");
            return;
        }
        IngestionStatus::Success => out!(
            o,
            "✔ {}: {} records read, all {} written",
            m.dataset,
            m.rows_read,
            m.rows_written
        ),
        IngestionStatus::Partial => out!(
            o,
            "✔ {}: {} records read, {} written, {} quarantined",
            m.dataset,
            m.rows_read,
            m.rows_written,
            m.rows_quarantined
        ),
    }
    let version = |v: Option<i64>| v.map_or("-".to_string(), |v| format!("version {v}"));
    out!(
        o,
        "  raw table:  {} ({})",
        r.location,
        version(m.delta_version)
    );
    if m.rows_quarantined > 0 {
        out!(
            o,
            "  quarantine: {} ({})",
            m.quarantine_location,
            version(m.quarantine_version)
        );
    }
    let mb = m.bytes_read as f64 / 1e6;
    out!(
        o,
        "  run {}: {} file(s), {:.1} MB in {:.2} s ({:.1} MB/s), schema v{}",
        m.run_id,
        m.files_ingested,
        mb,
        m.duration_secs,
        if m.duration_secs > 0.0 {
            mb / m.duration_secs
        } else {
            0.0
        },
        m.schema_version
    );
    if m.files_skipped > 0 {
        out!(o, "  skipped (already ingested): {}", m.skipped.join(", "));
    }
    if !r.errors.is_empty() {
        out!(o, "  quarantine reasons:");
        for e in &r.errors {
            out!(o, "    {e}");
        }
    }
}

fn print_list(o: &mut String, entries: &[CatalogEntry]) {
    if entries.is_empty() {
        out!(
            o,
            "The catalog is empty. Ingest something: tarn ingest file --help"
        );
        return;
    }
    out!(
        o,
        "{:<24} {:<28} {:>7}  {:<20}",
        "DATASET",
        "ZONES",
        "SCHEMA",
        "LAST RUN"
    );
    for e in entries {
        let zones: Vec<String> = e.zones.iter().map(|z| z.to_string()).collect();
        let last = e.last_run.as_ref().map_or("-".to_string(), |r| {
            format!(
                "{} {} ({} read, {} written, {} quarantined)",
                r.started_at.format("%Y-%m-%d %H:%M"),
                r.status,
                r.rows_read,
                r.rows_written,
                r.rows_quarantined
            )
        });
        out!(
            o,
            "{:<24} {:<28} {:>7}  {}",
            e.name,
            zones.join(","),
            e.schema_version.map_or("-".into(), |v| format!("v{v}")),
            last
        );
    }
}

fn stats_line(t: &ZoneTable) -> String {
    match &t.stats {
        Some(TableStats {
            version,
            rows,
            files,
            bytes,
        }) => format!(
            "{rows} rows, {files} files, {:.1} MB, version {version}",
            *bytes as f64 / 1e6
        ),
        None => "no table".into(),
    }
}

fn print_details(o: &mut String, d: &DatasetDetails) {
    out!(o, "Dataset {}", d.name);
    if let Some(owner) = &d.owner {
        out!(o, "  owner:       {owner}");
    }
    if let Some(desc) = &d.description {
        out!(o, "  description: {desc}");
    }
    if !d.tags.is_empty() {
        out!(o, "  tags:        {}", d.tags.join(", "));
    }
    out!(o, "Tables:");
    for t in &d.tables {
        if t.stats.is_some() {
            out!(
                o,
                "  {:<12} {}  [{}]",
                t.zone.to_string(),
                t.location,
                stats_line(t)
            );
        }
    }
    out!(
        o,
        "  {:<12} {}  [{}]",
        "quarantine",
        d.quarantine.location,
        stats_line(&d.quarantine)
    );
    match d.schema_versions.last() {
        Some(v) => out!(
            o,
            "Schema v{} (of {}, pinned {}):",
            v.version,
            d.schema_versions.len(),
            v.created_at.format("%Y-%m-%d %H:%M:%S")
        ),
        None => out!(o, "Schema: none pinned"),
    }
    for (name, ty, nullable) in &d.fields {
        out!(
            o,
            "  {:<24} {}{}",
            name,
            ty,
            if *nullable { " (nullable)" } else { "" }
        );
    }
    out!(o, "Runs (newest first):");
    if d.runs.is_empty() {
        out!(o, "  none");
    }
    for r in &d.runs {
        // Ingests name their source; stage runs are `process:<stage>:<table>`.
        let job = match r.source.strip_prefix("process:") {
            Some(stage) => stage.split(':').next().unwrap_or(stage).to_string(),
            None => "ingest".to_string(),
        };
        out!(
            o,
            "  {} {:<8} {:<8} read {:>9} written {:>9} quarantined {:>7}  {}{}",
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            job,
            r.status.to_string(),
            r.rows_read,
            r.rows_written,
            r.rows_quarantined,
            r.delta_version.map_or(String::new(), |v| format!("v{v} ")),
            r.error.as_deref().unwrap_or("")
        );
    }
}
