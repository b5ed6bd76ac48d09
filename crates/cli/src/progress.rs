//! A progress bar on stderr for long ingests, shown only on a terminal.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use tarn::Progress;

/// Draws ingest progress with indicatif.
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar if stderr is a terminal, else `None`.
    pub fn for_terminal() -> Option<Arc<dyn Progress>> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::hidden();
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} ingesting [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Some(Arc::new(Bar(bar)))
    }
}

impl Progress for Bar {
    fn start(&self, total_bytes: u64) {
        self.0.set_length(total_bytes);
        self.0
            .set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
