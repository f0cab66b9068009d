//! Choosing the manifest for this machine from an image index, as Docker
//! does: `linux` and the machine's architecture in Go's names (`amd64`,
//! `arm64`, …), preferring the exact variant and taking an entry without
//! one otherwise.

use std::fmt;

use serde::Deserialize;
use shoal_protocol::Digest;

/// One entry of an index's `manifests`.
#[derive(Debug, Clone, Deserialize)]
pub struct IndexEntry {
    pub digest: Digest,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform images are pulled for on this machine.
    pub fn current() -> Platform {
        let (architecture, variant) = go_arch(std::env::consts::ARCH);
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_owned),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Rust's architecture names in Go's (`GOARCH`), with the variant Docker
/// assumes for them.
fn go_arch(rust_arch: &str) -> (&str, Option<&str>) {
    match rust_arch {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    }
}

/// The entry for `wanted`: same OS and architecture, and the same variant
/// or none at all (the exact variant wins; otherwise the first listed).
pub fn choose<'a>(entries: &'a [IndexEntry], wanted: &Platform) -> Option<&'a IndexEntry> {
    let fits = |entry: &&IndexEntry, exact_variant: bool| {
        entry.platform.as_ref().is_some_and(|p| {
            p.os == wanted.os
                && p.architecture == wanted.architecture
                && if exact_variant {
                    p.variant == wanted.variant
                } else {
                    p.variant.is_none()
                }
        })
    };
    entries
        .iter()
        .find(|e| fits(e, true))
        .or_else(|| entries.iter().find(|e| fits(e, false)))
}

/// The platforms an index offers, for a message saying none fits.
pub fn offered(entries: &[IndexEntry]) -> String {
    let names: Vec<String> = entries
        .iter()
        .filter_map(|e| e.platform.as_ref())
        .map(Platform::to_string)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, platform: &str) -> IndexEntry {
        let mut parts = platform.split('/');
        let platform = Platform {
            os: parts.next().unwrap_or_default().into(),
            architecture: parts.next().unwrap_or_default().into(),
            variant: parts.next().map(str::to_owned),
        };
        IndexEntry {
            digest: Digest::sha256_of(&[n]),
            platform: Some(platform),
        }
    }

    fn wanted(arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(str::to_owned),
        }
    }

    #[test]
    fn the_machines_os_and_arch_win() {
        let entries = [
            entry(0, "windows/amd64"),
            entry(1, "linux/arm/v7"),
            entry(2, "linux/amd64"),
            entry(3, "unknown/unknown"),
            entry(4, "linux/arm64/v8"),
        ];
        let pick = |w: &Platform| choose(&entries, w).map(|e| e.digest.clone());
        assert_eq!(
            pick(&wanted("amd64", None)),
            Some(entries[2].digest.clone())
        );
        assert_eq!(
            pick(&wanted("arm64", Some("v8"))),
            Some(entries[4].digest.clone())
        );
        assert_eq!(
            pick(&wanted("arm", Some("v7"))),
            Some(entries[1].digest.clone())
        );
        assert_eq!(pick(&wanted("s390x", None)), None);
        assert_eq!(
            offered(&entries),
            "windows/amd64, linux/arm/v7, linux/amd64, unknown/unknown, linux/arm64/v8"
        );
    }

    #[test]
    fn an_exact_variant_beats_none_and_none_beats_another() {
        let entries = [entry(0, "linux/arm64"), entry(1, "linux/arm64/v8")];
        let chosen = choose(&entries, &wanted("arm64", Some("v8"))).map(|e| &e.digest);
        assert_eq!(chosen, Some(&entries[1].digest));
        let entries = [entry(0, "linux/arm/v6"), entry(1, "linux/arm")];
        let chosen = choose(&entries, &wanted("arm", Some("v7"))).map(|e| &e.digest);
        assert_eq!(chosen, Some(&entries[1].digest));
    }

    #[test]
    fn this_machine_has_a_go_name() {
        let current = Platform::current();
        assert_eq!(current.os, "linux");
        assert_ne!(current.architecture, "x86_64");
        assert_ne!(current.architecture, "aarch64");
    }
}
