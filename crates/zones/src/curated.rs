//! CuratedZone: cleansed → curated. Reads the rows the cleansed table
//! changed since the last run (its change data feed), enriches them, checks
//! the expectations, sends failing rows to the curated quarantine, and writes
//! the rest partitioned, in one commit that records the cleansed version.
//! A failed `fail` expectation commits nothing.

use deltalake::operations::write::SchemaMode;
use tarn_common::Zone;
use tarn_common::pipeline::{CurateConfig, Dedup};
use tarn_governance::ColumnLineage;

use crate::cleansed::app_id;
use crate::error::{Context, Error, Result};
use crate::quality::{Checks, gate_failure};
use crate::result::StageResult;
use crate::sql::ident;
use crate::stage::{Resume, StageRun, ZoneContext, register, resume};
use crate::table::{self, WriteOptions};
use crate::{enrich, partition};

/// Runs the curate stage of `dataset`: one result, or two when it first
/// had to finish the range of a run that died midway.
pub async fn process(
    ctx: &ZoneContext,
    dataset: &str,
    full_refresh: bool,
) -> Result<Vec<StageResult>> {
    let mut results = Vec::new();
    loop {
        let mut run = StageRun::start(ctx, "curate", dataset, format!("curated/{dataset}")).await?;
        let outcome = run_stage(ctx, dataset, full_refresh, &mut run).await;
        let more = matches!(outcome, Ok(true));
        let result = run.finish(ctx, outcome.map(|_| ())).await?;
        results.push(result);
        if !more {
            return Ok(results);
        }
    }
}

/// The table a lookup or referential check reads: `zone/name`, or the dataset
/// in the most refined zone that has it (curated, then cleansed, then raw).
pub(crate) async fn reference_table(
    ctx: &ZoneContext,
    dataset: &str,
) -> Result<(String, deltalake::DeltaTable)> {
    if let Some((zone, name)) = dataset.split_once('/') {
        let zone: Zone = zone
            .parse()
            .map_err(|e| Error::Invalid(format!("reference `{dataset}`: {e}")))?;
        let url = ctx.table_url(zone, name);
        let t = table::load(&url, &ctx.roots.options)
            .await?
            .ok_or_else(|| Error::Invalid(format!("reference `{dataset}`: no table at {url}")))?;
        return Ok((dataset.to_string(), t));
    }
    for zone in [Zone::Curated, Zone::Cleansed, Zone::Raw] {
        if let Some(t) = table::load(&ctx.table_url(zone, dataset), &ctx.roots.options).await? {
            return Ok((format!("{zone}/{dataset}"), t));
        }
    }
    Err(Error::Invalid(format!(
        "reference dataset `{dataset}` has no table in any zone: ingest it first"
    )))
}

/// One pass; `Ok(true)` if upstream has more for another pass.
async fn run_stage(
    ctx: &ZoneContext,
    dataset: &str,
    full_refresh: bool,
    run: &mut StageRun,
) -> Result<bool> {
    let ds = ctx.config.datasets.get(dataset);
    let config: CurateConfig = ds.and_then(|d| d.curate.clone()).unwrap_or_default();
    let keys: Option<Dedup> = ds.and_then(|d| d.cleanse.as_ref()?.dedup.clone());
    let options = &ctx.roots.options;
    let checks = Checks::new(&config.expectations)?;

    let up_url = ctx.table_url(Zone::Cleansed, dataset);
    let upstream = table::load(&up_url, options).await?.ok_or_else(|| {
        Error::Invalid(format!(
            "dataset `{dataset}` has no cleansed table at {up_url}: run the cleanse stage first"
        ))
    })?;
    let url = ctx.table_url(Zone::Curated, dataset);
    let q_url = ctx.quarantine_url(Zone::Curated, dataset);
    let app = app_id("curate");
    let Resume {
        target,
        last,
        quarantine,
        q_last,
        upstream,
        more,
    } = resume(
        ctx,
        Zone::Curated,
        dataset,
        &app,
        &up_url,
        upstream,
        full_refresh,
    )
    .await?;
    let up_version = table::version(&upstream);
    run.input(format!("cleansed/{dataset}"), up_version);
    if last >= Some(up_version) {
        return Ok(false);
    }
    // Without keys the curated table is appended to, so an upstream rewrite
    // (a full refresh of cleanse alone, a retention delete) means rebuilding.
    let full_refresh = full_refresh
        || match (last, &keys) {
            (Some(v), None) => table::removed_since(&upstream, v).await?,
            _ => false,
        };
    let last = if full_refresh { None } else { last };

    let session = ctx.session();
    let input = match last {
        None => session
            .read_table(table::provider(&upstream, &session, None).await?)
            .context(|| format!("read {up_url}"))?,
        Some(v) => {
            let changes = table::changes_since(&upstream, &session, v).await?;
            register(&session, "changes", changes)?;
            // A row changed twice since the last run: keep its latest image.
            let latest = match &keys {
                Some(d) => format!(
                    "SELECT * EXCLUDE (_commit_version, _tarn_rank) FROM (SELECT *, \
                     row_number() OVER (PARTITION BY {} ORDER BY _commit_version DESC) \
                     AS _tarn_rank FROM changes) WHERE _tarn_rank = 1",
                    d.keys
                        .iter()
                        .map(|k| ident(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "SELECT * EXCLUDE (_commit_version) FROM changes".into(),
            };
            session
                .sql(&latest)
                .await
                .context(|| "plan the cleansed changes".into())?
        }
    };
    let input_columns: Vec<String> = input
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    register(&session, "input", input)?;

    // Enrichment.
    let mut lineage: Vec<ColumnLineage> = input_columns
        .iter()
        .map(|c| ColumnLineage {
            column: c.clone(),
            inputs: vec![format!("cleansed/{dataset}.{c}")],
            kind: "identity".into(),
        })
        .collect();
    for (n, l) in config.lookups.iter().enumerate() {
        let (name, t) = reference_table(ctx, &l.dataset).await?;
        run.input(name.clone(), table::version(&t));
        lineage.extend(enrich::lookup_lineage(
            l,
            &name,
            &format!("cleansed/{dataset}"),
        ));
        let df = session
            .read_table(table::provider(&t, &session, None).await?)
            .context(|| format!("read {name}"))?;
        register(&session, &format!("_tarn_lookup_{n}"), df)?;
    }
    let (enrich_sql, lookup_failures) =
        enrich::enrichment_sql(&input_columns, &config.lookups, &config.derive)?;
    let enriched = session
        .sql(&enrich_sql)
        .await
        .context(|| "plan the enrichment (lookups and derived columns)".into())?;
    for (name, expr) in &config.derive {
        let refs = enriched
            .parse_sql_expr(expr)
            .map(|e| {
                e.column_refs()
                    .iter()
                    .map(|c| format!("cleansed/{dataset}.{}", c.name))
                    .collect()
            })
            .unwrap_or_default();
        lineage.push(ColumnLineage {
            column: name.clone(),
            inputs: refs,
            kind: "transformation".into(),
        });
    }
    let columns: Vec<String> = enriched
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|c| !c.starts_with("_tarn_"))
        .collect();
    register(&session, "input", enriched)?;

    // Quality.
    for r in checks.references() {
        let (name, t) = reference_table(ctx, &r.dataset).await?;
        run.input(name.clone(), table::version(&t));
        let df = session
            .read_table(table::provider(&t, &session, None).await?)
            .context(|| format!("read {name}"))?;
        register(&session, &r.view, df)?;
    }
    checks.register_checked(&session, &lookup_failures).await?;
    let evaluation = checks.evaluate(&session, run.run_id(), dataset).await?;
    let results = evaluation.results;
    ctx.metadata.record_quality(&results).await?;
    let (rows_in, bad) = (evaluation.rows, evaluation.quarantined);
    run.result.rows_in = rows_in;
    if let Some(why) = gate_failure(&results) {
        return Err(Error::QualityGate(why));
    }
    run.result.rows_quarantined = bad;
    run.result.rows_out = rows_in - bad;

    // Partitioning.
    let select = columns
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let good = session
        .sql(&format!(
            "SELECT {select} FROM checked WHERE _tarn_failed IS NULL"
        ))
        .await
        .context(|| "plan the curated rows".into())?;
    register(&session, "enriched", good)?;
    let partition_key = ds.and_then(|d| d.partition_key.as_deref());
    let (part_sql, partition_by) =
        partition::partition_sql(config.partition.as_ref(), partition_key, &columns)?;
    let out = session
        .sql(&part_sql)
        .await
        .context(|| "plan the partitioning".into())?;
    let out_columns: Vec<String> = out
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for p in &partition_by {
        if !lineage.iter().any(|l| &l.column == p) {
            lineage.push(ColumnLineage {
                column: p.clone(),
                inputs: config
                    .partition
                    .as_ref()
                    .and_then(|s| s.column.as_deref().or(partition_key))
                    .map(|c| vec![format!("cleansed/{dataset}.{c}")])
                    .unwrap_or_default(),
                kind: "transformation".into(),
            });
        }
    }
    lineage.retain(|l| out_columns.contains(&l.column));
    run.columns = lineage;

    let txns = [(app.clone(), up_version)];
    let props = || table::commit_properties(&txns, run.run_id());
    let q_done = q_last >= Some(up_version);
    if !q_done && (bad > 0 || (full_refresh && quarantine.is_some())) {
        let rows = session
            .sql(&format!(
                "SELECT {select}, _tarn_failed AS _expectations, \
                 concat('failed: ', _tarn_failed) AS _reason, '{}' AS _run_id \
                 FROM checked WHERE _tarn_failed IS NOT NULL",
                run.run_id()
            ))
            .await
            .context(|| "plan the quarantined rows".into())?;
        let q = table::or_new(quarantine, &q_url, options)?;
        let options = table::quarantine_write(full_refresh);
        table::write(q, rows, options, props()).await?;
    }
    tarn_common::failpoint("curate:after-quarantine");

    let target_size = config.partition.as_ref().map(|p| p.target_file_mib << 20);
    let evolution = ctx
        .config
        .policy(Zone::Curated, dataset)
        .schema_evolution
        .unwrap_or_default();
    let written = match target {
        Some(t) if !full_refresh => {
            table::check_new_columns(&t, &out_columns, evolution, &url)?;
            if rows_in == bad {
                run.result.version = Some(table::commit_marker(&t, props()).await?);
                return Ok(more);
            }
            match &keys {
                Some(d) => {
                    table::merge(t, out, &out_columns, &d.keys, None, evolution, props())
                        .await?
                        .0
                }
                None => {
                    let options = WriteOptions {
                        target_file_size: target_size,
                        schema_mode: table::additive_columns(evolution),
                        ..Default::default()
                    };
                    table::write(t, out, options, props()).await?
                }
            }
        }
        existing => {
            let t = table::or_new(existing, &url, options)?;
            let options = WriteOptions {
                overwrite: full_refresh,
                partition_by,
                target_file_size: target_size,
                schema_mode: full_refresh.then_some(SchemaMode::Overwrite),
                ..Default::default()
            };
            table::write(t, out, options, props()).await?
        }
    };
    run.result.version = Some(table::version(&written));
    Ok(more)
}
