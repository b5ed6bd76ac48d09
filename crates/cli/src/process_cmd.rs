//! `tarn process`, `tarn quality`, `tarn optimize` and `tarn policy`.

use std::path::Path;
use std::process::ExitCode;

use tarn::{ProcessOptions, ProcessingResult, StageStatus, Zone};

use crate::args::{OptimizeArgs, PolicyCommand, ProcessArgs, QualityArgs, UntilArg};
use crate::commands::open_lake;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs `tarn process`; the exit status is non-zero if a stage failed.
pub async fn process(config: Option<&Path>, args: ProcessArgs, o: &mut String) -> Result<ExitCode> {
    let lake = open_lake(config).await?;
    let options = ProcessOptions {
        until: match args.until {
            UntilArg::Cleansed => Zone::Cleansed,
            UntilArg::Curated => Zone::Curated,
            UntilArg::Consumption => Zone::Consumption,
        },
        full_refresh: args.full_refresh,
    };
    let result = lake.process_with(&args.dataset, options).await?;
    if args.json {
        out!(o, "{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_processing(o, &result);
    }
    Ok(if result.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints a ProcessingResult as a table, one line per stage.
pub fn print_processing(o: &mut String, r: &ProcessingResult) {
    out!(o, "{}: {}", r.dataset, status(r.status));
    out!(
        o,
        "  {:<9} {:<30} {:<9} {:>9} {:>9} {:>11} {:>8} {:>8} {:>9}",
        "stage",
        "table",
        "status",
        "in",
        "out",
        "quarantined",
        "dropped",
        "version",
        "time"
    );
    for s in &r.stages {
        out!(
            o,
            "  {:<9} {:<30} {:<9} {:>9} {:>9} {:>11} {:>8} {:>8} {:>8}ms",
            s.stage,
            s.table,
            status(s.status),
            s.rows_in,
            s.rows_out,
            s.rows_quarantined,
            s.rows_deduplicated,
            s.version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            s.duration_ms
        );
    }
    if let Some(e) = &r.error {
        out!(o, "\nerror: {e}");
    } else if r.status == StageStatus::Skipped {
        out!(o, "\nNothing new upstream: every stage is up to date.");
    }
    let quarantined: Vec<&str> = r
        .stages
        .iter()
        .filter(|s| s.rows_quarantined > 0)
        .map(|s| s.table.split('/').next().unwrap_or(""))
        .collect();
    if !quarantined.is_empty() {
        out!(
            o,
            "Quarantined rows, with their reasons: <zone>/_quarantine/{} in {}",
            r.dataset,
            quarantined.join(", ")
        );
    }
}

fn status(s: StageStatus) -> &'static str {
    match s {
        StageStatus::Succeeded => "succeeded",
        StageStatus::Skipped => "skipped",
        StageStatus::Failed => "failed",
    }
}

/// Runs `tarn quality`.
pub async fn quality(config: Option<&Path>, args: QualityArgs, o: &mut String) -> Result<ExitCode> {
    let lake = open_lake(config).await?;
    let results = lake.quality_history(&args.dataset, args.runs).await?;
    if args.json {
        out!(o, "{}", serde_json::to_string_pretty(&results)?);
        return Ok(ExitCode::SUCCESS);
    }
    if results.is_empty() {
        out!(
            o,
            "No quality results for `{}` yet: they are recorded by `tarn process` for each \
             expectation under datasets.{}.curate.expectations.",
            args.dataset,
            args.dataset
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut last_run = "";
    for r in &results {
        if r.run_id != last_run {
            last_run = &r.run_id;
            out!(
                o,
                "\nrun {} at {} ({} stage)",
                r.run_id,
                r.recorded_at.format("%Y-%m-%d %H:%M:%S UTC"),
                r.stage
            );
        }
        out!(
            o,
            "  {:<4} {:<28} {:<16} {:<10} {:>7}/{:<7} {}",
            if r.passed { "ok" } else { "FAIL" },
            r.expectation,
            r.check,
            r.severity,
            r.failed_rows,
            r.evaluated_rows,
            r.observed.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `tarn optimize ZONE/DATASET`.
pub async fn optimize(
    config: Option<&Path>,
    args: OptimizeArgs,
    o: &mut String,
) -> Result<ExitCode> {
    let (zone, dataset) = args.table.split_once('/').ok_or_else(|| {
        format!(
            "`{}`: expected ZONE/DATASET, e.g. curated/user_events",
            args.table
        )
    })?;
    let zone: Zone = zone.parse()?;
    let lake = open_lake(config).await?;
    let report = lake.optimize(zone, dataset, &args.zorder).await?;
    if args.json {
        out!(o, "{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!(
            o,
            "{}: {} files rewritten into {} ({} partitions){}",
            report.table,
            report.files_removed,
            report.files_added,
            report.partitions_optimized,
            report
                .version
                .map(|v| format!(", version {v}"))
                .unwrap_or_else(|| ", nothing to compact".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `tarn policy apply`.
pub async fn policy(config: Option<&Path>, cmd: PolicyCommand, o: &mut String) -> Result<ExitCode> {
    let PolicyCommand::Apply { dry_run, json } = cmd;
    let lake = open_lake(config).await?;
    let actions = lake.apply_policies(dry_run).await?;
    if json {
        out!(o, "{}", serde_json::to_string_pretty(&actions)?);
        return Ok(ExitCode::SUCCESS);
    }
    if actions.is_empty() {
        out!(
            o,
            "No policy applies to any table (see `policies:` in tarn.yaml)."
        );
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    for a in &actions {
        let what = match a.policy.as_str() {
            "retention" => format!("{verb} {} rows", a.rows_deleted),
            _ => format!("{verb} {} files", a.files_deleted.len()),
        };
        out!(o, "{:<36} {:<9} {what} ({})", a.table, a.policy, a.rule);
    }
    Ok(ExitCode::SUCCESS)
}
