//! Integration tests of tarn through the `DataLake` API: one binary, one
//! module per area. Each ingest test body runs on local files and on a real
//! S3-compatible server (see `support`).

mod connectors;
mod governance;
mod ingest;
mod process;
mod query;
mod slt;
mod support;
