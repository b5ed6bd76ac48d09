//! Integration tests of tarn-governance: one binary, one module per area.

mod access;
mod classify;
mod metadata;
