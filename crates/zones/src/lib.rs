//! tarn's zone pipelines: raw → cleansed → curated → consumption.
//!
//! Started, not yet run by anything: so far the cleanse stage's
//! standardization ([`cleanse::standardize`]) over the `cleanse:` settings in
//! [`tarn_common::pipeline`]. `tarn.yaml` does not accept those sections until
//! `tarn process` runs them.

pub mod cleanse;
