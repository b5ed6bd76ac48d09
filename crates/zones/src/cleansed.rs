//! CleansedZone: raw → cleansed. Standardizes what was committed to raw since
//! the last run, quarantines values that cannot be standardized, keeps the
//! latest row per key, and upserts (Delta MERGE) into the cleansed table in
//! one commit that records the raw version it covers.

use std::collections::HashMap;

use deltalake::operations::write::SchemaMode;
use tarn_common::Zone;
use tarn_common::pipeline::CleanseConfig;
use tarn_governance::ColumnLineage;

use crate::cleanse::{REASON, plan_columns, standardize};
use crate::error::{Context, Error, Result};
use crate::result::StageResult;
use crate::sql::ident;
use crate::stage::{Resume, StageRun, ZoneContext, counts, register, resume};
use crate::table::{self, WriteOptions};

/// The `txn` application id under which a stage records its upstream version.
pub(crate) fn app_id(stage: &str) -> String {
    format!("tarn.{stage}")
}

/// Runs the cleanse stage of `dataset`: one result, or two when it first
/// had to finish the range of a run that died midway.
pub async fn process(
    ctx: &ZoneContext,
    dataset: &str,
    full_refresh: bool,
) -> Result<Vec<StageResult>> {
    let mut results = Vec::new();
    loop {
        let mut run =
            StageRun::start(ctx, "cleanse", dataset, format!("cleansed/{dataset}")).await?;
        let outcome = run_stage(ctx, dataset, full_refresh, &mut run).await;
        let more = matches!(outcome, Ok(true));
        let result = run.finish(ctx, outcome.map(|_| ())).await?;
        results.push(result);
        if !more {
            return Ok(results);
        }
    }
}

/// One pass; `Ok(true)` if upstream has more for another pass.
async fn run_stage(
    ctx: &ZoneContext,
    dataset: &str,
    full_refresh: bool,
    run: &mut StageRun,
) -> Result<bool> {
    let config = ctx
        .config
        .datasets
        .get(dataset)
        .and_then(|d| d.cleanse.clone())
        .unwrap_or_default();
    let options = &ctx.roots.options;
    let raw_url = ctx.table_url(Zone::Raw, dataset);
    let raw = table::load(&raw_url, options).await?.ok_or_else(|| {
        Error::Invalid(format!(
            "dataset `{dataset}` has no raw table at {raw_url}: ingest it first"
        ))
    })?;
    let url = ctx.table_url(Zone::Cleansed, dataset);
    let q_url = ctx.quarantine_url(Zone::Cleansed, dataset);
    let app = app_id("cleanse");
    let Resume {
        target,
        last,
        quarantine,
        q_last,
        upstream: raw,
        more,
    } = resume(
        ctx,
        Zone::Cleansed,
        dataset,
        &app,
        &raw_url,
        raw,
        full_refresh,
    )
    .await?;
    let raw_version = table::version(&raw);
    run.input(format!("raw/{dataset}"), raw_version);
    if last >= Some(raw_version) {
        return Ok(false);
    }
    let session = ctx.session();
    let adds = match last {
        Some(v) => Some(table::added_since(&raw, v).await?),
        None => None,
    };
    if adds.as_ref().is_some_and(Vec::is_empty) {
        // Commits without new data (e.g. a schema change): nothing to do.
        return Ok(more);
    }
    let input = session
        .read_table(table::provider(&raw, &session, adds).await?)
        .context(|| format!("read {raw_url}"))?;
    let salt = salt_for(ctx, &config)?;
    let plans = plan_columns(input.schema(), &config, &salt).map_err(Error::Invalid)?;
    run.columns = plans
        .iter()
        .map(|p| ColumnLineage {
            column: p.name.clone(),
            inputs: vec![format!("raw/{dataset}.{}", p.source)],
            kind: if p.sql == ident(&p.source) {
                "identity".into()
            } else {
                "transformation".into()
            },
        })
        .collect();
    let standardized = standardize(input, &config, &salt).map_err(Error::Invalid)?;
    let columns: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
    let select = columns
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    match &config.dedup {
        Some(d) => {
            for k in d.keys.iter().chain([&d.order_by]) {
                if !columns.contains(k) {
                    return Err(Error::Invalid(format!(
                        "cleanse.dedup names `{k}`, which is not an output column ({})",
                        columns.join(", ")
                    )));
                }
            }
            // A row without its key cannot be deduplicated (nor merged): quarantine it.
            register(&session, "standardized_values", standardized)?;
            let null_key = d
                .keys
                .iter()
                .map(|k| format!("{} IS NULL", ident(k)))
                .collect::<Vec<_>>()
                .join(" OR ");
            let why = format!("'dedup key ({}) is null'", d.keys.join(", "));
            let df = session
                .sql(&format!(
                    "SELECT {select}, CASE WHEN {REASON} IS NOT NULL THEN {REASON} \
                     WHEN {null_key} THEN {why} END AS {REASON} FROM standardized_values"
                ))
                .await
                .context(|| "plan the dedup key check".into())?;
            register(&session, "standardized", df)?;
        }
        None => register(&session, "standardized", standardized)?,
    }

    let c = counts(
        &session,
        &format!("SELECT count(*), count({REASON}) FROM standardized"),
    )
    .await?;
    let (rows_in, bad) = (c[0], c[1]);
    run.result.rows_in = rows_in;
    run.result.rows_quarantined = bad;

    let good_sql = match &config.dedup {
        Some(d) => {
            let keys = d
                .keys
                .iter()
                .map(|k| ident(k))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "SELECT {select} FROM (SELECT *, row_number() OVER (PARTITION BY {keys} \
                 ORDER BY {} DESC NULLS LAST) AS _tarn_rank FROM standardized \
                 WHERE {REASON} IS NULL) WHERE _tarn_rank = 1",
                ident(&d.order_by)
            )
        }
        None => format!("SELECT {select} FROM standardized WHERE {REASON} IS NULL"),
    };
    let good = session
        .sql(&good_sql)
        .await
        .context(|| "plan the cleansed rows".into())?;

    let txns = [(app.clone(), raw_version)];
    let props = || table::commit_properties(&txns, run.run_id());
    // Quarantine first, under the same txn: a crash between the two commits
    // leaves the quarantine done and the rerun skips it.
    let q_done = q_last >= Some(raw_version);
    if !q_done && (bad > 0 || (full_refresh && quarantine.is_some())) {
        let rows = session
            .sql(&format!(
                "SELECT *, '{}' AS _run_id FROM standardized WHERE {REASON} IS NOT NULL",
                run.run_id()
            ))
            .await
            .context(|| "plan the quarantined rows".into())?;
        let q = table::or_new(quarantine, &q_url, options)?;
        table::write(q, rows, table::quarantine_write(full_refresh), props()).await?;
    }
    tarn_common::failpoint("cleanse:after-quarantine");

    let evolution = ctx
        .config
        .policy(Zone::Cleansed, dataset)
        .schema_evolution
        .unwrap_or_default();
    let written = match target {
        Some(t) if !full_refresh => {
            table::check_new_columns(&t, &columns, evolution, &url)?;
            if rows_in == bad {
                run.result.version = Some(table::commit_marker(&t, props()).await?);
                return Ok(more);
            }
            match &config.dedup {
                Some(d) => {
                    let (t, source_rows) = table::merge(
                        t,
                        good,
                        &columns,
                        &d.keys,
                        Some(&d.order_by),
                        evolution,
                        props(),
                    )
                    .await?;
                    run.result.rows_out = source_rows;
                    t
                }
                None => {
                    let options = WriteOptions {
                        schema_mode: table::additive_columns(evolution),
                        ..Default::default()
                    };
                    table::write(t, good, options, props()).await?
                }
            }
        }
        existing => {
            let t = table::or_new(existing, &url, options)?;
            // The change data feed lets the curate stage read only what changed.
            let options = WriteOptions {
                overwrite: full_refresh,
                configuration: HashMap::from([(
                    "delta.enableChangeDataFeed".to_string(),
                    Some("true".to_string()),
                )]),
                schema_mode: full_refresh.then_some(SchemaMode::Overwrite),
                ..Default::default()
            };
            table::write(t, good, options, props()).await?
        }
    };
    if run.result.rows_out == 0 {
        // Not a MERGE: the write's own count of what it added.
        run.result.rows_out = table::rows_written(&written).await?.unwrap_or(0);
    }
    run.result.rows_deduplicated = (rows_in - bad).saturating_sub(run.result.rows_out);
    run.result.version = Some(table::version(&written));
    Ok(more)
}

/// The masking salt, required when a `hash` or `tokenize` mask is configured.
fn salt_for(ctx: &ZoneContext, config: &CleanseConfig) -> Result<String> {
    use tarn_common::pipeline::{Mask, MaskKind};
    let needs = config.mask.values().any(|m| {
        matches!(
            m,
            Mask::Kind(MaskKind::Hash) | Mask::Kind(MaskKind::Tokenize)
        )
    });
    match ctx.config.masking_salt() {
        Some(s) => Ok(s),
        None if needs => Err(Error::Invalid(
            "a hash or tokenize mask needs a salt: set governance.masking_salt in tarn.yaml \
             (e.g. masking_salt: ${MY_SALT}) or the TARN_MASKING_SALT environment variable"
                .into(),
        )),
        None => Ok(String::new()),
    }
}
