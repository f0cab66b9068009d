//! What a pull shows while it runs: on a terminal, one bar per blob
//! (bytes, rate, source) redrawn in place; anywhere else, plain lines a log
//! or a script can read, one when a blob starts and one when it is done,
//! without escape codes.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::manifest::Descriptor;
use super::source::Source;

const WAITING_TEMPLATE: &str = "{prefix} {msg}";
const TRANSFER_TEMPLATE: &str = "{prefix} [{bar:30}] {binary_bytes:>10} / {binary_total_bytes:<10} \
                                 {binary_bytes_per_sec:>12} {msg}";

/// Where progress goes.
#[derive(Debug)]
pub enum Progress {
    Bars(MultiProgress),
    Lines,
}

impl Progress {
    /// Bars when stdout is a terminal, lines otherwise.
    pub fn for_stdout() -> Progress {
        if std::io::stdout().is_terminal() {
            Progress::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stdout()))
        } else {
            Progress::Lines
        }
    }

    /// A line of text (above the bars, when there are bars).
    pub fn note(&self, text: &str) {
        match self {
            Progress::Bars(bars) => {
                if bars.println(text).is_err() {
                    print_line(text);
                }
            }
            Progress::Lines => print_line(text),
        }
    }

    /// The last line, below the bars once every bar is finished.
    pub fn last_line(&self, text: &str) {
        print_line(text);
    }

    /// The progress of one blob, waiting until it starts.
    pub fn blob(&self, blob: &Descriptor) -> BlobProgress {
        let short = short_digest(blob);
        match self {
            Progress::Bars(bars) => {
                let bar = bars.add(ProgressBar::new(blob.size));
                bar.set_style(style(WAITING_TEMPLATE));
                bar.set_prefix(short);
                bar.set_message("waiting");
                BlobProgress::Bar(bar)
            }
            Progress::Lines => BlobProgress::Line {
                short,
                size: blob.size,
            },
        }
    }
}

/// One blob's bar or lines.
#[derive(Debug)]
pub enum BlobProgress {
    Bar(ProgressBar),
    Line { short: String, size: u64 },
}

impl BlobProgress {
    pub fn started(&self, source: Source) {
        match self {
            BlobProgress::Bar(bar) => {
                bar.set_style(style(TRANSFER_TEMPLATE));
                bar.set_message(source.as_str());
                bar.reset_elapsed();
            }
            BlobProgress::Line { short, size } => {
                print_line(&format!("{short} {} {source} started", HumanBytes(*size)));
            }
        }
    }

    pub fn advanced(&self, bytes: u64) {
        if let BlobProgress::Bar(bar) = self {
            bar.inc(bytes);
        }
    }

    pub fn finished(&self, source: Source, took: Duration) {
        let done = format!("{source} done in {}", seconds(took));
        match self {
            BlobProgress::Bar(bar) => bar.finish_with_message(done),
            BlobProgress::Line { short, size } => {
                print_line(&format!("{short} {} {done}", HumanBytes(*size)));
            }
        }
    }

    pub fn failed(&self) {
        if let BlobProgress::Bar(bar) = self {
            bar.abandon_with_message("failed");
        }
    }
}

/// The first 12 hex digits of a digest, as Docker shows layers.
pub fn short_digest(blob: &Descriptor) -> String {
    blob.digest.hex().chars().take(12).collect()
}

/// `1.23s`
pub fn seconds(took: Duration) -> String {
    format!("{:.2}s", took.as_secs_f64())
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants checked by a test; a bad one would
    // only lose the bar's layout, never the pull.
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// One line on stdout. A closed stdout (`shoal pull … | head -1`) must not
/// stop the pull, so write errors are ignored.
fn print_line(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

#[cfg(test)]
mod tests {
    use shoal_protocol::Digest;

    use super::*;

    #[test]
    fn templates_are_valid() {
        for template in [WAITING_TEMPLATE, TRANSFER_TEMPLATE] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn short_digests_and_seconds() {
        let blob = Descriptor {
            digest: Digest::sha256_of(b""),
            size: 0,
        };
        assert_eq!(short_digest(&blob), "e3b0c44298fc");
        assert_eq!(seconds(Duration::from_millis(1234)), "1.23s");
    }
}
