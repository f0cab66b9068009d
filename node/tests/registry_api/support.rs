//! A node serving on `127.0.0.1:0` with a temp data dir, and request helpers.

use std::path::{Path, PathBuf};

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use shoal_node::config::NodeConfig;
use shoal_protocol::Digest;
use tokio::sync::oneshot;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub struct TestRegistry {
    pub base: String,
    pub client: Client,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestRegistry {
    pub async fn start() -> TestRegistry {
        TestRegistry::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut NodeConfig)) -> TestRegistry {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = NodeConfig {
            data_dir: dir.path().join("data"),
            ..NodeConfig::default()
        };
        // These tests are about the HTTP API; many run at once.
        config.p2p.enabled = false;
        // A plain registry: names it does not hold are unknown, not pulled
        // through from Docker Hub.
        config.upstream.enabled = false;
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            shoal_node::daemon::serve(config, listener, shutdown)
                .await
                .expect("node runs");
        });
        TestRegistry {
            base,
            client: Client::new(),
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn head(&self, path: &str) -> Response {
        self.client.head(self.url(path)).send().await.expect("HEAD")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    /// Opens an upload session (`POST …/blobs/uploads/`) and returns the response.
    pub async fn post_upload(&self, repo: &str) -> Response {
        self.client
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .send()
            .await
            .expect("POST upload")
    }

    /// Monolithic push of a blob; returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::sha256_of(data);
        let resp = self
            .client
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("POST blob");
        assert_eq!(resp.status(), StatusCode::CREATED, "push blob");
        digest
    }

    /// Pushes a manifest under `reference` and returns the response.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: Option<&str>,
        body: &[u8],
    ) -> Response {
        let mut req = self
            .client
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .body(body.to_vec());
        if let Some(mt) = media_type {
            req = req.header("content-type", mt);
        }
        req.send().await.expect("PUT manifest")
    }

    /// Pushes a config and one layer, then an image manifest tagged `tag`.
    /// Returns the manifest bytes and digest.
    pub async fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> (Vec<u8>, Digest) {
        let config = self
            .push_blob(repo, br#"{"architecture":"amd64","os":"linux"}"#)
            .await;
        let layer_digest = self.push_blob(repo, layer).await;
        let manifest = image_manifest(&config, 38, &[(layer_digest, layer.len())], None);
        let resp = self
            .put_manifest(repo, tag, Some(OCI_MANIFEST), &manifest)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "push manifest");
        let digest = Digest::sha256_of(&manifest);
        (manifest, digest)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("node task");
        }
    }
}

/// An OCI image manifest body.
pub fn image_manifest(
    config: &Digest,
    config_size: usize,
    layers: &[(Digest, usize)],
    subject: Option<(&Digest, usize)>,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_size},
        "layers": layers.iter().map(|(d, s)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": s
        })).collect::<Vec<_>>(),
    });
    if let Some((d, s)) = subject {
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": s});
    }
    serde_json::to_vec(&m).expect("json")
}

/// Asserts status and OCI error code of a failed response.
pub async fn assert_error(resp: Response, status: StatusCode, code: &str) {
    assert_eq!(resp.status(), status, "status for expected {code}");
    let body: Value = resp.json().await.expect("error body is JSON");
    let got = body["errors"][0]["code"].as_str().unwrap_or_default();
    assert_eq!(got, code, "error body {body}");
    assert!(
        body["errors"][0]["message"].as_str().is_some(),
        "error has a message: {body}"
    );
}

/// Everything observable about the store, to show bad input changed nothing.
pub async fn snapshot(reg: &TestRegistry, repos: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    list_files(&reg.data_dir().join("blobs"), &mut lines);
    lines.push(reg.get("/v2/_catalog").await.text().await.expect("catalog"));
    for repo in repos {
        lines.push(
            reg.get(&format!("/v2/{repo}/tags/list"))
                .await
                .text()
                .await
                .expect("tags"),
        );
    }
    lines.sort();
    lines
}

fn list_files(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            list_files(&path, out);
        } else {
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(format!("{} {len}", path.display()));
        }
    }
}
