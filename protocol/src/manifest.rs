//! Reads an image manifest or index: its media type, the blobs it
//! references, its subject and artifact type. Reading only: the bytes are
//! kept as they came, so their digest never changes.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What kind of manifest a media type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest: config + layers, all blobs.
    Image,
    /// An index / manifest list: child manifests.
    Index,
}

pub fn kind_of(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    #[serde(default)]
    manifests: Vec<RawDescriptor>,
    subject: Option<RawDescriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    pub media_type: String,
    pub kind: ManifestKind,
    /// Config and layers of an image; children of an index.
    pub references: Vec<Digest>,
    pub subject: Option<Digest>,
    /// `artifactType`, or for an image manifest without one the config's media
    /// type, as the referrers API asks.
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Why a manifest is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(String);

fn invalid(message: impl Into<String>) -> ManifestError {
    ManifestError(message.into())
}

/// Parses `body`, taking the media type from the body or else from the
/// request's `Content-Type`; the two must agree when both are given.
pub fn parse_manifest(
    body: &[u8],
    content_type: Option<&str>,
) -> Result<ParsedManifest, ManifestError> {
    let raw: RawManifest = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    if raw.schema_version != Some(2) {
        return Err(invalid("only schemaVersion 2 manifests are supported"));
    }
    let header_type = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| kind_of(c).is_some());
    let media_type = match (&raw.media_type, header_type) {
        (Some(body_type), Some(h)) if body_type != h => {
            return Err(invalid(format!(
                "mediaType {body_type} does not match Content-Type {h}"
            )));
        }
        (Some(body_type), _) => body_type.clone(),
        (None, Some(h)) => h.to_owned(),
        // Neither says: OCI allows omitting mediaType, so read the shape.
        (None, None) if !raw.manifests.is_empty() => OCI_INDEX.to_owned(),
        (None, None) => OCI_MANIFEST.to_owned(),
    };
    let kind = kind_of(&media_type)
        .ok_or_else(|| invalid(format!("unsupported manifest media type {media_type}")))?;
    let digest_of = |d: &RawDescriptor| -> Result<Digest, ManifestError> {
        d.digest
            .parse()
            .map_err(|e| invalid(format!("descriptor digest {:?}: {e}", d.digest)))
    };
    let mut references = Vec::new();
    let artifact_type = match kind {
        ManifestKind::Image => {
            let config = raw
                .config
                .as_ref()
                .ok_or_else(|| invalid("image manifest has no config"))?;
            references.push(digest_of(config)?);
            for layer in &raw.layers {
                references.push(digest_of(layer)?);
            }
            raw.artifact_type
                .clone()
                .or_else(|| config.media_type.clone())
        }
        ManifestKind::Index => {
            for child in &raw.manifests {
                references.push(digest_of(child)?);
            }
            raw.artifact_type.clone()
        }
    };
    let subject = raw.subject.as_ref().map(digest_of).transpose()?;
    Ok(ParsedManifest {
        media_type,
        kind,
        references,
        subject,
        artifact_type,
        annotations: raw.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn media_type_from_header_when_body_omits_it() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{D1}","mediaType":"x/y"}},"layers":[]}}"#
        );
        let m = parse_manifest(body.as_bytes(), Some(DOCKER_MANIFEST)).expect("valid");
        assert_eq!(m.media_type, DOCKER_MANIFEST);
        assert_eq!(m.artifact_type.as_deref(), Some("x/y"));
        let m = parse_manifest(body.as_bytes(), None).expect("valid");
        assert_eq!(m.media_type, OCI_MANIFEST);
    }

    #[test]
    fn refuses_bad_manifests() {
        for body in [
            "not json".to_owned(),
            r#"{"schemaVersion":1}"#.to_owned(),
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}"}}"#),
            r#"{"schemaVersion":2,"config":{"digest":"sha256:zz"}}"#.to_owned(),
            format!(
                r#"{{"schemaVersion":2,"mediaType":"text/plain","config":{{"digest":"{D1}"}}}}"#
            ),
        ] {
            assert!(parse_manifest(body.as_bytes(), None).is_err(), "{body}");
        }
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"digest":"{D1}"}}}}"#
        );
        assert!(parse_manifest(body.as_bytes(), Some(DOCKER_MANIFEST)).is_err());
    }
}
