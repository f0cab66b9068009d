//! Pushing and pulling with skopeo, the way a user copies images.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::command::run_ok;
use crate::skip::Skip;
use crate::tools::require_tool;

const COPY_TIMEOUT: Duration = Duration::from_secs(300);

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The manifest format skopeo writes to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OCI image manifest, kept byte for byte from the source layout.
    Oci,
    /// Docker image manifest v2 schema 2 (converted; a new digest).
    V2s2,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Oci => "oci",
            Format::V2s2 => "v2s2",
        }
    }

    pub fn manifest_media_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_MANIFEST,
            Format::V2s2 => DOCKER_MANIFEST,
        }
    }
}

pub fn require() -> Result<(), Skip> {
    require_tool("skopeo", "skopeo")
}

/// `skopeo copy SRC docker://HOST/REF` in `format`; returns the digest of
/// the manifest as written to the registry.
pub fn push(
    src: &str,
    host: &str,
    reference: &str,
    format: Format,
    scratch: &Path,
) -> Result<String, String> {
    let digest_file = tempfile::NamedTempFile::new_in(scratch)
        .map_err(|e| format!("creating a digest file: {e}"))?;
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--dest-tls-verify=false", "--format", format.name()]);
    if format == Format::Oci {
        // Fail rather than silently convert: the digest must survive.
        cmd.arg("--preserve-digests");
    }
    cmd.arg("--digestfile")
        .arg(digest_file.path())
        .arg(src)
        .arg(format!("docker://{host}/{reference}"));
    run_ok(&mut cmd, COPY_TIMEOUT)?;
    let digest = std::fs::read_to_string(digest_file.path())
        .map_err(|e| format!("reading skopeo's digest file: {e}"))?;
    Ok(digest.trim().to_owned())
}

/// `skopeo copy docker://HOST/REF oci:OUT:TAG`, keeping the manifest as the
/// registry serves it (no format conversion).
pub fn pull(host: &str, reference: &str, out: &Path, tag: &str) -> Result<(), String> {
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false", "--preserve-digests"])
            .arg(format!("docker://{host}/{reference}"))
            .arg(format!("oci:{}:{tag}", out.display())),
        COPY_TIMEOUT,
    )
    .map(drop)
}

/// The tags of a repository, via `skopeo list-tags`.
pub fn list_tags(host: &str, repo: &str) -> Result<Vec<String>, String> {
    let out = run_ok(
        Command::new("skopeo")
            .args(["list-tags", "--tls-verify=false"])
            .arg(format!("docker://{host}/{repo}")),
        Duration::from_secs(60),
    )?;
    let parsed: serde_json::Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("parsing list-tags output {:?}: {e}", out.stdout))?;
    let tags = parsed
        .get("Tags")
        .and_then(|t| t.as_array())
        .ok_or_else(|| format!("no Tags in {:?}", out.stdout))?;
    Ok(tags
        .iter()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect())
}
