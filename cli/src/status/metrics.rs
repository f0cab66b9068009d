//! What an older node without `/_shoal/status` can still tell: its
//! Prometheus counters on `/metrics`, shown one per row.

use std::fmt::Write;

use indicatif::HumanBytes;

use super::report::row;

/// One sample: `name value` (labels, if any, stay in the name).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub value: f64,
}

/// The `shoal_*` samples of a Prometheus text exposition, without
/// histogram buckets (their `_sum` and `_count` stay).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(sample)
        .filter(|s| s.name.starts_with("shoal_") && !s.name.contains("_bucket"))
        .collect()
}

/// `name value [timestamp]`, where the name may carry `{labels}`.
fn sample(line: &str) -> Option<Sample> {
    let name_end = match line.find('{') {
        Some(_) => line.rfind('}')? + 1,
        None => line.find(char::is_whitespace)?,
    };
    let (name, rest) = line.split_at(name_end);
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_owned(),
        value,
    })
}

pub fn render(node: &str, samples: &[Sample]) -> String {
    let mut out = String::new();
    row(&mut out, "node", node);
    out.push_str("(an older node without /_shoal/status: its counters from /metrics)\n");
    for sample in samples {
        let label = sample.name.trim_start_matches("shoal_");
        let label = label.strip_suffix("_total").unwrap_or(label);
        let value = if label.contains("bytes") && sample.value >= 0.0 {
            HumanBytes(sample.value as u64).to_string()
        } else {
            sample.value.to_string()
        };
        let _ = writeln!(out, "  {label:<34} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP shoal_p2p_bytes_sent_total Blob bytes sent to peers.
# TYPE shoal_p2p_bytes_sent_total counter
shoal_p2p_bytes_sent_total 2048
shoal_p2p_bytes_received_total 0
shoal_chunks_verified_total 7 1700000000000
shoal_fetch_seconds_bucket{le=\"0.005\"} 1
shoal_fetch_seconds_sum 0.25
other_metric 3
";

    #[test]
    fn shoal_samples_without_buckets() {
        let names: Vec<(String, f64)> =
            parse(TEXT).into_iter().map(|s| (s.name, s.value)).collect();
        assert_eq!(
            names,
            vec![
                ("shoal_p2p_bytes_sent_total".to_owned(), 2048.0),
                ("shoal_p2p_bytes_received_total".to_owned(), 0.0),
                ("shoal_chunks_verified_total".to_owned(), 7.0),
                ("shoal_fetch_seconds_sum".to_owned(), 0.25),
            ]
        );
    }

    #[test]
    fn byte_counters_are_human() {
        let text = render("http://n", &parse(TEXT));
        assert!(text.starts_with("node       http://n\n"), "{text}");
        assert!(
            text.contains("  p2p_bytes_sent                     2.00 KiB\n"),
            "{text}"
        );
        assert!(
            text.contains("  chunks_verified                    7\n"),
            "{text}"
        );
    }
}
