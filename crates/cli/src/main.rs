//! The `tarn` command line: parses arguments, runs the command, and turns any
//! error into one line on stderr and a non-zero exit status.

mod args;
#[macro_use]
mod commands;
mod connector_cmd;
mod governance_cmd;
mod process_cmd;
mod progress;
mod query_cmd;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let filter = match cli.verbose {
        // delta-rs warns about MERGE metrics it derives; that is not news to users.
        0 => "warn,deltalake_core::operations::merge=error",
        1 => "info,tarn=debug",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TARN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    match commands::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
