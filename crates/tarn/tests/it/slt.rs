//! SQL behaviour pinned in sqllogictest files (`tests/slt/*.slt`), run against
//! a lake holding the bundled sample (`raw.user_events`, ingested twice so it
//! has two versions).

use std::path::Path;

use crate::support::{SAMPLE_AVSC, SAMPLE_CSV};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use sqllogictest::{DBOutput, DefaultColumnType};
use tarn::DataLake;

struct TarnDb {
    lake: DataLake,
}

#[async_trait]
impl sqllogictest::AsyncDB for TarnDb {
    type Error = tarn::Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, tarn::Error> {
        let result = self.lake.sql(sql).await?;
        let width = result.schema.fields().len();
        let batches = result.collect().await?;
        if width == 0 {
            return Ok(DBOutput::StatementComplete(0));
        }
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &batches {
            let formatters: Vec<ArrayFormatter> = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                .collect();
            for r in 0..batch.num_rows() {
                rows.push(formatters.iter().map(|f| f.value(r).to_string()).collect());
            }
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; width],
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tarn"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

async fn sample_lake(dir: &Path) -> DataLake {
    let (lake, _) = DataLake::init(dir).await.unwrap();
    std::fs::write(dir.join("ev.avsc"), SAMPLE_AVSC).unwrap();
    for name in ["a.csv", "b.csv"] {
        std::fs::write(dir.join(name), SAMPLE_CSV).unwrap();
        let spec = tarn::DataSpec::new("user_events", dir.join(name).display().to_string())
            .with_schema(dir.join("ev.avsc").display().to_string())
            .with_partition_key("timestamp");
        lake.ingest_data("file", spec).await.unwrap();
    }
    lake
}

#[tokio::test]
async fn sql_behaviour_is_pinned_in_slt_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = sample_lake(dir.path()).await;
    let slt_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<_> = std::fs::read_dir(&slt_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", slt_dir.display());
    for file in files {
        let lake = lake.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let lake = lake.clone();
            async move { Ok(TarnDb { lake }) }
        });
        runner
            .run_file_async(&file)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}
