//! Test lakes on each storage backend, and helpers to put inputs and read tables.
//!
//! The S3 backend needs a real S3-compatible server: `TARN_TEST_S3_ENDPOINT`
//! (e.g. `http://127.0.0.1:9100`), `TARN_TEST_S3_BUCKET` (an existing bucket),
//! `TARN_TEST_S3_ACCESS_KEY` and `TARN_TEST_S3_SECRET_KEY`. `scripts/test.sh`
//! installs and starts s3s-fs and sets them.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tarn::{DataLake, TarnConfig, Zone};
use tarn_ingest::load_table;
use url::Url;

/// The sample schema.
pub const SAMPLE_AVSC: &str = include_str!("../../sample/user_events.avsc");
/// 18 records, 5 of them invalid (a bad timestamp, a missing required field,
/// an unknown enum symbol, an unbalanced quote and an extra field).
pub const SAMPLE_CSV: &str = include_str!("../../sample/user_events.csv");

/// A lake on one backend, plus a place to put input files on the same backend.
pub struct TestLake {
    pub lake: DataLake,
    pub backend: &'static str,
    /// Where inputs go: a local directory or an s3:// prefix.
    input_root: String,
    store: Arc<dyn ObjectStore>,
    options: HashMap<String, String>,
    _dir: tempfile::TempDir,
}

impl TestLake {
    /// Writes an input file and returns the path or URL to ingest it from.
    pub async fn put(&self, name: &str, data: impl Into<Bytes>) -> String {
        let location = format!("{}/{name}", self.input_root);
        let url = to_url(&location);
        let (_, path) = object_store::parse_url_opts(&url, self.options.clone()).unwrap();
        self.store
            .put(&path, PutPayload::from(data.into()))
            .await
            .unwrap();
        location
    }

    fn roots(&self) -> tarn_common::ZoneRoots {
        self.lake.config().zone_roots().unwrap()
    }

    /// A location under the input root that holds nothing.
    pub fn missing(&self, name: &str) -> String {
        format!("{}/{name}", self.input_root)
    }

    /// Every row of the dataset's table in `zone`, read from its data files.
    pub async fn read(&self, zone: Zone, dataset: &str) -> Vec<RecordBatch> {
        let url = self.roots().table_url(zone, dataset);
        self.read_url(&url).await
    }

    /// Every row of the dataset's quarantine table.
    pub async fn read_quarantine(&self, dataset: &str) -> Vec<RecordBatch> {
        let url = self.roots().quarantine_url(dataset);
        self.read_url(&url).await
    }

    async fn read_url(&self, url: &Url) -> Vec<RecordBatch> {
        let Some(table) = load_table(url, &self.options).await.unwrap() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let uris: Vec<String> = table.get_file_uris().unwrap().collect();
        for uri in uris {
            let file_url = to_url(&uri);
            let (store, path) =
                object_store::parse_url_opts(&file_url, self.options.clone()).unwrap();
            let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .unwrap()
                .build()
                .unwrap();
            out.extend(reader.map(Result::unwrap));
        }
        out
    }

    /// The latest version of the dataset's table in `zone`, if it exists.
    pub async fn version(&self, zone: Zone, dataset: &str) -> Option<i64> {
        let url = self.roots().table_url(zone, dataset);
        load_table(&url, &self.options)
            .await
            .unwrap()
            .and_then(|t| t.version())
            .map(|v| v as i64)
    }
}

fn to_url(location: &str) -> Url {
    if location.contains("://") {
        Url::parse(location).unwrap()
    } else {
        Url::from_file_path(location).unwrap()
    }
}

fn write_config(dir: &Path, storage: &str, extra: &str) -> TarnConfig {
    let yaml = format!(
        "{storage}governance:\n  metadata_store: sqlite://./meta.db\nprocessing:\n  batch_size: 4\n{extra}"
    );
    let path = dir.join("tarn.yaml");
    std::fs::write(&path, yaml).unwrap();
    TarnConfig::load(&path).unwrap()
}

async fn local_lake(extra: &str) -> TestLake {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "storage:\n  raw_zone: ./lake/raw\n  cleansed_zone: ./lake/cleansed\n  curated_zone: ./lake/curated\n  consumption_zone: ./lake/consumption\n",
        extra,
    );
    let input_root = dir.path().join("incoming");
    std::fs::create_dir_all(&input_root).unwrap();
    TestLake {
        lake: DataLake::open(config).await.unwrap(),
        backend: "local",
        input_root: input_root.display().to_string(),
        store: Arc::new(object_store::local::LocalFileSystem::new()),
        options: HashMap::new(),
        _dir: dir,
    }
}

async fn s3_lake(extra: &str) -> TestLake {
    let endpoint = std::env::var("TARN_TEST_S3_ENDPOINT").expect(
        "S3 tests need a real S3-compatible server: set TARN_TEST_S3_ENDPOINT (and \
         TARN_TEST_S3_BUCKET, TARN_TEST_S3_ACCESS_KEY, TARN_TEST_S3_SECRET_KEY), \
         or run ./scripts/test.sh, which starts s3s-fs",
    );
    let bucket = std::env::var("TARN_TEST_S3_BUCKET").unwrap_or_else(|_| "tarn-test".into());
    let key = std::env::var("TARN_TEST_S3_ACCESS_KEY").unwrap_or_else(|_| "tarn".into());
    let secret = std::env::var("TARN_TEST_S3_SECRET_KEY").unwrap_or_else(|_| "tarnsecret".into());
    let prefix = format!("s3://{bucket}/{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().unwrap();
    let storage = format!(
        "storage:\n  raw_zone: {prefix}/raw\n  cleansed_zone: {prefix}/cleansed\n  curated_zone: {prefix}/curated\n  consumption_zone: {prefix}/consumption\n  options:\n    aws_endpoint_url: {endpoint}\n    aws_allow_http: \"true\"\n    aws_region: us-east-1\n    aws_access_key_id: {key}\n    aws_secret_access_key: {secret}\n    conditional_put: etag\n"
    );
    let config = write_config(dir.path(), &storage, extra);
    let options: HashMap<String, String> = config.storage.options.clone().into_iter().collect();
    let (store, _) =
        object_store::parse_url_opts(&Url::parse(&prefix).unwrap(), options.clone()).unwrap();
    TestLake {
        lake: DataLake::open(config).await.unwrap(),
        backend: "s3",
        input_root: format!("{prefix}/incoming"),
        store: Arc::from(store),
        options,
        _dir: dir,
    }
}

/// Runs `body` on a lake with local zone roots, then on one with S3 zone roots.
pub async fn each_backend<F, Fut>(body: F)
where
    F: Fn(TestLake) -> Fut,
    Fut: Future<Output = ()>,
{
    each_backend_with("", body).await;
}

/// [`each_backend`] with `extra` appended to the lake's tarn.yaml
/// (`policies:`, `datasets:`, ...).
pub async fn each_backend_with<F, Fut>(extra: &str, body: F)
where
    F: Fn(TestLake) -> Fut,
    Fut: Future<Output = ()>,
{
    body(local_lake(extra).await).await;
    body(s3_lake(extra).await).await;
}

/// A lake with local zone roots and `extra` appended to its tarn.yaml.
pub async fn local_lake_with(extra: &str) -> TestLake {
    local_lake(extra).await
}
