//! ConsumptionZone: marts defined as SQL over the lake, materialized as Delta
//! tables. A mart is rebuilt when a table it reads has a new version, and only
//! then: the versions it was built from are recorded in its commit.

use async_trait::async_trait;
use datafusion::dataframe::DataFrame;
use deltalake::operations::write::SchemaMode;
use tarn_common::Zone;
use tarn_governance::ColumnLineage;

use crate::error::{Error, Result};
use crate::result::StageResult;
use crate::stage::{StageRun, ZoneContext};
use crate::table::{self, WriteOptions};

/// A planned mart.
pub struct MartPlan {
    /// The query.
    pub df: DataFrame,
    /// Every zone table it reads, as (`zone/name`, Delta version).
    pub inputs: Vec<(String, i64)>,
    /// For each output column, the `zone/name.column` inputs it is computed from.
    pub columns: Vec<(String, Vec<String>)>,
}

/// Plans mart SQL over the lake's catalog (the query engine does this).
#[async_trait]
pub trait MartPlanner: Send + Sync {
    /// The plan of `sql`, with its inputs and column lineage.
    async fn plan(&self, sql: &str) -> std::result::Result<MartPlan, String>;
}

/// The `txn` application id that records the version of `input` a mart was
/// built from.
fn input_app_id(input: &str) -> String {
    format!("tarn.mart:{input}")
}

/// Refreshes every mart of `dataset` whose inputs changed.
pub async fn process(
    ctx: &ZoneContext,
    planner: &dyn MartPlanner,
    dataset: &str,
    full_refresh: bool,
) -> Result<Vec<StageResult>> {
    let marts = ctx
        .config
        .datasets
        .get(dataset)
        .and_then(|d| d.consume.as_ref())
        .map(|c| c.marts.clone())
        .unwrap_or_default();
    let mut results = Vec::new();
    for (name, sql) in &marts {
        let mut run =
            StageRun::start(ctx, "consume", dataset, format!("consumption/{name}")).await?;
        let outcome = refresh(ctx, planner, name, sql, full_refresh, &mut run).await;
        let result = run.finish(ctx, outcome).await?;
        let failed = result.error.is_some();
        results.push(result);
        if failed {
            break;
        }
    }
    Ok(results)
}

/// Whether the rows of `input` (`zone/name`) changed after version `built`.
async fn input_changed(ctx: &ZoneContext, input: &str, built: i64) -> Result<bool> {
    let Some((zone, name)) = input.split_once('/') else {
        return Ok(true);
    };
    let Ok(zone) = zone.parse::<Zone>() else {
        return Ok(true);
    };
    match table::load(&ctx.table_url(zone, name), &ctx.roots.options).await? {
        Some(t) => table::data_changed_since(&t, built).await,
        None => Ok(true),
    }
}

async fn refresh(
    ctx: &ZoneContext,
    planner: &dyn MartPlanner,
    name: &str,
    sql: &str,
    full_refresh: bool,
    run: &mut StageRun,
) -> Result<()> {
    let MartPlan {
        df,
        inputs,
        columns,
    } = planner
        .plan(sql)
        .await
        .map_err(|e| Error::Invalid(format!("mart `{name}`: {e}")))?;
    for (table, version) in &inputs {
        run.input(table.clone(), *version);
    }
    run.columns = columns
        .into_iter()
        .map(|(column, inputs)| ColumnLineage {
            kind: if inputs.len() == 1 && inputs[0].ends_with(&format!(".{column}")) {
                "identity".into()
            } else {
                "transformation".into()
            },
            column,
            inputs,
        })
        .collect();
    let url = ctx.table_url(Zone::Consumption, name);
    let target = table::load(&url, &ctx.roots.options).await?;
    if let Some(t) = &target
        && !full_refresh
    {
        let mut current = true;
        for (input, version) in &inputs {
            current &= match table::consumed_version(t, &input_app_id(input)).await? {
                Some(built) if built == *version => true,
                // Only compactions since: the rows the mart read are the same.
                Some(built) if built < *version => !input_changed(ctx, input, built).await?,
                _ => false,
            };
        }
        if current {
            return Ok(());
        }
    }
    let txns: Vec<(String, i64)> = inputs.iter().map(|(t, v)| (input_app_id(t), *v)).collect();
    let t = table::or_new(target, &url, &ctx.roots.options)?;
    let options = WriteOptions {
        overwrite: true,
        schema_mode: Some(SchemaMode::Overwrite),
        ..Default::default()
    };
    let written = table::write(
        t,
        df,
        options,
        table::commit_properties(&txns, run.run_id()),
    )
    .await?;
    // The write counts the rows: no second run of the mart's query.
    let rows = table::rows_written(&written).await?.unwrap_or(0);
    run.result.rows_in = rows;
    run.result.rows_out = rows;
    run.result.version = Some(table::version(&written));
    Ok(())
}
