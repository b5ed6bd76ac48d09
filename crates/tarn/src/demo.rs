//! `tarn demo`: the `examples/user_events` lake, run end to end in a
//! directory: the countries reference table and the first day of events are
//! ingested and processed through every zone, then the second day (late
//! arrivals, re-sent events) is ingested and processed incrementally.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::{DataLake, IngestionResult, ProcessingResult, TarnConfig};

/// The example's files, bundled into the binary: (path in the lake dir, text).
const FILES: [(&str, &str); 6] = [
    (
        "tarn.yaml",
        include_str!("../../../examples/user_events/tarn.yaml"),
    ),
    (
        "compliance.yaml",
        include_str!("../../../examples/user_events/compliance.yaml"),
    ),
    (
        "user_events.avsc",
        include_str!("../../../examples/user_events/user_events.avsc"),
    ),
    (
        "data/countries.csv",
        include_str!("../../../examples/user_events/data/countries.csv"),
    ),
    (
        "data/day1/user_events.csv",
        include_str!("../../../examples/user_events/data/day1/user_events.csv"),
    ),
    (
        "data/day2/user_events.csv",
        include_str!("../../../examples/user_events/data/day2/user_events.csv"),
    ),
];

/// One step of the demo.
#[derive(Debug)]
pub enum DemoStep {
    /// An ingest, with what it ingested.
    Ingest(String, Box<IngestionResult>),
    /// A `process` run.
    Process(ProcessingResult),
}

/// What the demo did.
#[derive(Debug)]
pub struct DemoOutcome {
    /// The lake.
    pub lake: DataLake,
    /// The lake's directory.
    pub dir: PathBuf,
    /// The steps, in order.
    pub steps: Vec<DemoStep>,
}

/// Writes the example into `dir` (keeping files that exist) and runs it. A
/// second run finds everything ingested and processed, and writes nothing.
pub async fn run(dir: &Path) -> Result<DemoOutcome> {
    for (name, text) in FILES {
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.display().to_string(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    let lake = DataLake::open(TarnConfig::load(&dir.join("tarn.yaml"))?).await?;
    let mut steps = Vec::new();
    let countries = lake.spec_for("countries");
    steps.push(DemoStep::Ingest(
        "data/countries.csv".into(),
        Box::new(lake.ingest_data("file", countries).await?),
    ));
    for day in ["day1", "day2"] {
        let file = format!("data/{day}/user_events.csv");
        let mut spec = lake.spec_for("user_events");
        spec.paths = vec![dir.join(&file).display().to_string()];
        steps.push(DemoStep::Ingest(
            file.clone(),
            Box::new(lake.ingest_data("file", spec).await?),
        ));
        let processed = lake.process_data("user_events").await?;
        if let Some(e) = &processed.error {
            return Err(Error::Invalid(format!(
                "demo: processing {file} failed: {e}"
            )));
        }
        steps.push(DemoStep::Process(processed));
    }
    Ok(DemoOutcome {
        lake,
        dir: dir.to_path_buf(),
        steps,
    })
}
