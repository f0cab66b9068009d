//! A node killed or stopped in the middle of an upload must come back
//! without any partial blob visible, with an index that agrees with its
//! blob files, and able to take the upload again.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{RngCore, SeedableRng};
use reqwest::StatusCode;
use shoal_tests::Must;
use shoal_tests::distribution::{Client, describe_unexpected, header};
use shoal_tests::oci::{sha256_digest, verify_file};
use shoal_tests::{DockerRegistry, NodeOptions, ShoalNode, TestRegistry, require};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const REPO: &str = "crash/test";
const MIB: usize = 1 << 20;
/// The big upload: three 64 MiB chunks and a short tail.
const BIG: usize = 200 * MIB;
const CHUNK: usize = 64 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_upload_leaves_no_partial_blob() {
    let data = random_bytes(BIG, 1);
    let digest = sha256_digest(&data);
    let mut node = ShoalNode::start(NodeOptions::default()).must("start shoal");
    let client = Client::new(node.url()).must("client");

    // Committed before the crash, so it must survive it.
    let small = random_bytes(MIB + 7, 2);
    let small_digest = client
        .push_blob(REPO, small.clone())
        .await
        .must("push a small blob");

    // One whole chunk, then a second one cut off by SIGKILL.
    let session = client.start_upload(REPO).await.must("start the upload");
    let session = client
        .patch_chunk(&session, 0, data.slice(..CHUNK))
        .await
        .must("first chunk");
    let held = HeldPatch::start(&client, &session, CHUNK, BIG - CHUNK);
    held.feed(data.slice(CHUNK..2 * CHUNK)).await;
    wait_for_upload_bytes(node.data_dir(), (CHUNK + CHUNK / 2) as u64).await;
    node.kill().must("SIGKILL the node");
    let cut = held.outcome().await;
    assert!(
        !cut.is_success(),
        "a PATCH cut off by SIGKILL ended as: {cut}"
    );

    node.restart().must("restart on the same data dir");
    assert_no_partial_blob(&node, &client, &digest).await;
    let head = client.head_blob(REPO, &small_digest).await.must("HEAD");
    assert_eq!(
        head.status(),
        StatusCode::OK,
        "the committed blob is gone after the crash"
    );
    assert_eq!(content_length(&head), Some(small.len() as u64));
    assert_eq!(
        client.fetch_blob(REPO, &small_digest).await.must("GET"),
        fetched(small.len(), &small_digest)
    );

    // The interrupted session is either gone or resumable from bytes that
    // really arrived; never ahead of what was sent.
    let resume_at = interrupted_session_offset(&client, &session, 2 * CHUNK as u64).await;

    // Redo from scratch.
    upload_in_chunks(&client, &data, &digest).await;
    let head = client.head_blob(REPO, &digest).await.must("HEAD");
    assert_eq!(
        head.status(),
        StatusCode::OK,
        "HEAD {digest} after the redone upload"
    );
    assert_eq!(content_length(&head), Some(BIG as u64));
    assert_eq!(
        header(&head, "Docker-Content-Digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(
        client.fetch_blob(REPO, &digest).await.must("GET"),
        fetched(BIG, &digest)
    );

    // If the old session claimed bytes, finishing it must produce exactly
    // the blob: what it kept must be what was sent.
    if let Some(offset) = resume_at {
        let start = usize::try_from(offset).must("offset fits");
        let session = client
            .patch_chunk(&session, offset, data.slice(start..))
            .await
            .must("resume the interrupted session from its reported offset");
        client
            .finish_upload(&session, &digest, None)
            .await
            .must("finish the resumed session: the bytes it kept must be the ones sent");
        assert_eq!(
            client.fetch_blob(REPO, &digest).await.must("GET"),
            fetched(BIG, &digest)
        );
    }

    assert_index_matches_files(&node, &client).await;
    node.stop().must("a clean stop after recovery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_upload_exits_zero_without_partial_blob() {
    let len = 96 * MIB;
    let data = random_bytes(len, 3);
    let digest = sha256_digest(&data);
    let mut node = ShoalNode::start(NodeOptions::default()).must("start shoal");
    let client = Client::new(node.url()).must("client");

    let session = client.start_upload(REPO).await.must("start the upload");
    let held = HeldPatch::start(&client, &session, 0, len);
    held.feed(data.slice(..32 * MIB)).await;
    wait_for_upload_bytes(node.data_dir(), 16 * MIB as u64).await;
    node.terminate().must("SIGTERM");
    // The body never completes; the node must still exit on its own.
    let status = node
        .wait_exit(Duration::from_secs(40))
        .must("the node exits after SIGTERM");
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        node.log_tail()
    );
    let cut = held.outcome().await;
    assert!(!cut.is_success(), "an unfinished PATCH ended as: {cut}");

    // Nothing half-written, even before the node looks at its files again.
    assert_blob_files_intact(&node, Some(&digest));
    node.restart().must("restart on the same data dir");
    assert_no_partial_blob(&node, &client, &digest).await;

    let session = client.start_upload(REPO).await.must("start again");
    let session = client
        .patch_chunk(&session, 0, data.clone())
        .await
        .must("one chunk");
    client
        .finish_upload(&session, &digest, None)
        .await
        .must("finish");
    assert_eq!(
        client.fetch_blob(REPO, &digest).await.must("GET"),
        fetched(len, &digest)
    );
    assert_index_matches_files(&node, &client).await;
    node.stop().must("a clean stop");
}

/// SIGKILL while an upload is being committed (the `PUT ?digest=` that
/// verifies, syncs and renames): afterwards the blob is either whole and
/// served, or absent and not served, never anything in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_commit_leaves_the_blob_whole_or_absent() {
    let mut node = ShoalNode::start(NodeOptions::default()).must("start shoal");
    let client = Client::new(node.url()).must("client");
    let mut outcomes = Vec::new();
    for (round, delay_ms) in [0u64, 5, 20, 60, 150].into_iter().enumerate() {
        let len = 48 * MIB + round;
        let data = random_bytes(len, 10 + round as u64);
        let digest = sha256_digest(&data);
        let session = client.start_upload(REPO).await.must("start");
        let session = client
            .patch_chunk(&session, 0, data.clone())
            .await
            .must("the whole blob");
        let put = {
            let client = client.clone();
            let (session, digest) = (session.clone(), digest.clone());
            tokio::spawn(async move { client.finish_upload(&session, &digest, None).await })
        };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        node.kill().must("SIGKILL during the commit");
        let answered = matches!(
            tokio::time::timeout(Duration::from_secs(30), put).await,
            Ok(Ok(Ok(_)))
        );
        node.restart().must("restart");

        let on_disk = node
            .blob_files()
            .must("list blob files")
            .into_iter()
            .any(|b| b.digest == digest);
        assert_blob_files_intact(&node, None);
        let head = client.head_blob(REPO, &digest).await.must("HEAD");
        match head.status() {
            StatusCode::OK => {
                assert!(on_disk, "{digest} is served but has no blob file");
                assert_eq!(content_length(&head), Some(len as u64));
                assert_eq!(
                    client.fetch_blob(REPO, &digest).await.must("GET"),
                    fetched(len, &digest)
                );
            }
            StatusCode::NOT_FOUND => {
                assert!(!on_disk, "{digest} has a blob file but is not served");
                assert!(
                    !answered,
                    "the PUT for {digest} was answered 201 but the blob is gone"
                );
                upload_in_chunks(&client, &data, &digest).await;
            }
            _ => {
                let url = client.url(&format!("/v2/{REPO}/blobs/{digest}"));
                panic!(
                    "{}",
                    describe_unexpected(head, "200 or 404", "HEAD", &url).await
                );
            }
        }
        outcomes.push(format!(
            "{delay_ms} ms: {}",
            if on_disk { "committed" } else { "absent" }
        ));
    }
    eprintln!("kills during commit: {}", outcomes.join(", "));
    assert_index_matches_files(&node, &client).await;
    node.stop().must("a clean stop");
}

/// Manifests, tags and blobs survive a SIGKILL right after they were
/// written, and survive losing the index entirely (it is rebuilt from the
/// files).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_is_recovered_after_sigkill_and_rebuilt_when_lost() {
    let mut node = ShoalNode::start(NodeOptions::default()).must("start shoal");
    let client = Client::new(node.url()).must("client");
    let layer = random_bytes(3 * MIB, 4);
    let layer_digest = client
        .push_blob(REPO, layer.clone())
        .await
        .must("push layer");
    let config = Bytes::from(format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}},"config":{{}}}}"#
    ));
    let config_digest = client
        .push_blob(REPO, config.clone())
        .await
        .must("push config");
    let manifest = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    ));
    let manifest_digest = sha256_digest(&manifest);
    let answered = client
        .put_manifest(REPO, "v1", OCI_MANIFEST, manifest.clone())
        .await
        .must("put the manifest");
    assert_eq!(answered, manifest_digest);

    // SIGKILL straight after the writes: whatever sled had not flushed.
    node.kill().must("SIGKILL");
    node.restart().must("restart");
    assert_image_served(
        &client,
        &manifest,
        &manifest_digest,
        &[(&layer_digest, &layer), (&config_digest, &config)],
    )
    .await;
    assert_index_matches_files(&node, &client).await;

    // Lose the index altogether.
    node.kill().must("SIGKILL");
    let index = node.data_dir().join("index");
    assert!(index.exists(), "no index/ in {}", node.data_dir().display());
    std::fs::remove_dir_all(&index).must("remove index/");
    node.restart().must("restart without an index");
    assert_image_served(
        &client,
        &manifest,
        &manifest_digest,
        &[(&layer_digest, &layer), (&config_digest, &config)],
    )
    .await;
    assert_index_matches_files(&node, &client).await;
    node.stop().must("a clean stop");
}

/// The chunked-upload client used above, checked against the reference
/// registry: chunks, status, resume, finish, fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_client_works_against_docker_registry() {
    require!(DockerRegistry::require());
    let registry = tokio::task::spawn_blocking(DockerRegistry::start)
        .await
        .must("join")
        .must("start docker-registry");
    let client = Client::new(registry.url()).must("client");
    let data = random_bytes(10 * MIB + 3, 5);
    let digest = sha256_digest(&data);
    let head = client.head_blob(REPO, &digest).await.must("HEAD");
    assert_eq!(head.status(), StatusCode::NOT_FOUND);

    let session = client.start_upload(REPO).await.must("start");
    let session = client
        .patch_chunk(&session, 0, data.slice(..4 * MIB))
        .await
        .must("chunk 1");
    let offset = interrupted_session_offset(&client, &session, 4 * MIB as u64).await;
    assert_eq!(
        offset,
        Some(4 * MIB as u64),
        "status of a session holding one chunk"
    );
    let session = client
        .patch_chunk(&session, 4 * MIB as u64, data.slice(4 * MIB..))
        .await
        .must("chunk 2");
    client
        .finish_upload(&session, &digest, None)
        .await
        .must("finish");
    let head = client.head_blob(REPO, &digest).await.must("HEAD");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(content_length(&head), Some(data.len() as u64));
    assert_eq!(
        client.fetch_blob(REPO, &digest).await.must("GET"),
        fetched(data.len(), &digest)
    );
    let stored = registry.blob_files().must("blob files");
    assert_eq!(
        stored.iter().map(|b| b.digest.as_str()).collect::<Vec<_>>(),
        vec![digest.as_str()]
    );
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut bytes = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    Bytes::from(bytes)
}

fn fetched(len: usize, digest: &str) -> shoal_tests::distribution::Fetched {
    shoal_tests::distribution::Fetched {
        len: len as u64,
        digest: digest.to_owned(),
    }
}

fn content_length(resp: &reqwest::Response) -> Option<u64> {
    header(resp, "Content-Length").and_then(|v| v.parse().ok())
}

/// A PATCH whose body the test feeds piece by piece and can leave hanging.
struct HeldPatch {
    tx: mpsc::Sender<Bytes>,
    task: JoinHandle<Result<reqwest::Response, reqwest::Error>>,
}

/// How a held PATCH ended.
enum PatchOutcome {
    Answered(StatusCode),
    Failed(String),
    StillRunning,
}

impl std::fmt::Display for PatchOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatchOutcome::Answered(status) => write!(f, "answered {status}"),
            PatchOutcome::Failed(err) => write!(f, "failed: {err}"),
            PatchOutcome::StillRunning => f.write_str("still running after 30 s"),
        }
    }
}

impl PatchOutcome {
    fn is_success(&self) -> bool {
        matches!(self, PatchOutcome::Answered(status) if status.is_success())
    }
}

impl HeldPatch {
    fn start(client: &Client, session: &str, start: usize, len: usize) -> HeldPatch {
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|bytes| (Ok::<Bytes, std::io::Error>(bytes), rx))
        });
        let request = client.patch_request(
            session,
            start as u64,
            len as u64,
            reqwest::Body::wrap_stream(body),
        );
        HeldPatch {
            tx,
            task: tokio::spawn(request.send()),
        }
    }

    /// Sends `bytes` as part of the body, 1 MiB at a time.
    async fn feed(&self, bytes: Bytes) {
        let deadline = Duration::from_secs(60);
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + MIB).min(bytes.len());
            let sent = tokio::time::timeout(deadline, self.tx.send(bytes.slice(at..end))).await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => panic!("the PATCH ended after {at} fed bytes: {:?}", self.task),
                Err(_) => panic!("the node stopped reading the PATCH body after {at} bytes"),
            }
            at = end;
        }
    }

    /// How the request ended (the body is never completed).
    async fn outcome(self) -> PatchOutcome {
        drop(self.tx);
        match tokio::time::timeout(Duration::from_secs(30), self.task).await {
            Ok(Ok(Ok(resp))) => PatchOutcome::Answered(resp.status()),
            Ok(Ok(Err(err))) => PatchOutcome::Failed(err.to_string()),
            Ok(Err(join)) => PatchOutcome::Failed(join.to_string()),
            Err(_) => PatchOutcome::StillRunning,
        }
    }
}

/// Waits (bounded) until the node holds at least `want` bytes of upload
/// data on disk, so the kill lands mid-upload rather than before it.
async fn wait_for_upload_bytes(data_dir: &Path, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held = dir_bytes(&data_dir.join("uploads")) + dir_bytes(&data_dir.join("tmp"));
        if held >= want {
            return;
        }
        if Instant::now() >= deadline {
            // Not a failure of crash safety in itself: the node may buffer
            // elsewhere. The kill still lands mid-request.
            eprintln!("note: only {held} of {want} upload bytes visible on disk after 60 s");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Every blob file hashes to its name, and none is the unfinished blob.
fn assert_blob_files_intact(node: &ShoalNode, unfinished: Option<&str>) {
    let blobs = node.blob_files().must("list blob files");
    for blob in &blobs {
        verify_file(&blob.digest, &blob.path).must("a blob file that does not match its name");
        assert_ne!(
            Some(blob.digest.as_str()),
            unfinished,
            "the unfinished blob is in blobs/"
        );
    }
}

/// After a restart: the unfinished blob is nowhere, `tmp/` was emptied,
/// and every blob file is intact.
async fn assert_no_partial_blob(node: &ShoalNode, client: &Client, unfinished: &str) {
    let head = client.head_blob(REPO, unfinished).await.must("HEAD");
    if head.status() != StatusCode::NOT_FOUND {
        let url = client.url(&format!("/v2/{REPO}/blobs/{unfinished}"));
        panic!("{}", describe_unexpected(head, "404", "HEAD", &url).await);
    }
    assert_blob_files_intact(node, Some(unfinished));
    let tmp = node.data_dir().join("tmp");
    assert_eq!(
        dir_bytes(&tmp),
        0,
        "{} holds leftovers after a restart",
        tmp.display()
    );
}

/// `GET` on an interrupted session: 404 (discarded) or 204 with a `Range`
/// no further than `sent`. Returns the offset to resume from, if any.
async fn interrupted_session_offset(client: &Client, session: &str, sent: u64) -> Option<u64> {
    let resp = client
        .upload_status(session)
        .await
        .must("GET upload status");
    match resp.status() {
        StatusCode::NOT_FOUND => {
            eprintln!("interrupted upload session: 404 (discarded)");
            None
        }
        StatusCode::NO_CONTENT => {
            let range = header(&resp, "Range").must("a 204 upload status carries Range");
            let end: u64 = range
                .strip_prefix("0-")
                .and_then(|end| end.parse().ok())
                .unwrap_or_else(|| panic!("malformed Range {range:?}"));
            assert!(
                end < sent,
                "the session claims bytes 0-{end} but only {sent} were sent"
            );
            eprintln!(
                "interrupted upload session: 204 Range 0-{end} of {sent} sent bytes (resumable)"
            );
            // "0-0" is ambiguous (nothing, or one byte); do not resume on it.
            (end > 0).then_some(end + 1)
        }
        _ => panic!(
            "{}",
            describe_unexpected(resp, "404 or 204", "GET", session).await
        ),
    }
}

async fn upload_in_chunks(client: &Client, data: &Bytes, digest: &str) {
    let mut session = client.start_upload(REPO).await.must("start a fresh upload");
    let mut at = 0;
    while at < data.len() {
        let end = (at + CHUNK).min(data.len());
        session = client
            .patch_chunk(&session, at as u64, data.slice(at..end))
            .await
            .must("a chunk of the redone upload");
        at = end;
    }
    client
        .finish_upload(&session, digest, None)
        .await
        .must("finish the redone upload");
}

/// Every blob file is served with its size; a digest with no file is not.
async fn assert_index_matches_files(node: &ShoalNode, client: &Client) {
    let blobs = node.blob_files().must("list blob files");
    assert!(!blobs.is_empty(), "no blob files at all");
    for blob in &blobs {
        let head = client.head_blob(REPO, &blob.digest).await.must("HEAD");
        if head.status() != StatusCode::OK {
            let url = client.url(&format!("/v2/{REPO}/blobs/{}", blob.digest));
            panic!(
                "a blob file the index does not serve: {}",
                describe_unexpected(head, "200", "HEAD", &url).await
            );
        }
        assert_eq!(
            content_length(&head),
            Some(blob.size),
            "Content-Length of {}",
            blob.digest
        );
    }
    let absent = sha256_digest(b"no such blob in this test");
    let head = client.head_blob(REPO, &absent).await.must("HEAD");
    assert_eq!(
        head.status(),
        StatusCode::NOT_FOUND,
        "HEAD of a blob nobody pushed"
    );
}

async fn assert_image_served(
    client: &Client,
    manifest: &Bytes,
    manifest_digest: &str,
    blobs: &[(&String, &Bytes)],
) {
    for reference in ["v1", manifest_digest] {
        let body = client
            .get_manifest(REPO, reference, OCI_MANIFEST)
            .await
            .must("GET the manifest after the crash");
        assert_eq!(&body, manifest, "manifest {reference} after the crash");
    }
    for (digest, bytes) in blobs {
        assert_eq!(
            client.fetch_blob(REPO, digest).await.must("GET"),
            fetched(bytes.len(), digest)
        );
    }
    let resp = client
        .request(reqwest::Method::GET, &format!("/v2/{REPO}/tags/list"))
        .await
        .must("GET tags");
    assert_eq!(resp.status(), StatusCode::OK);
    let tags: serde_json::Value = resp.json().await.must("tags json");
    assert_eq!(
        tags["tags"],
        serde_json::json!(["v1"]),
        "tags after the crash: {tags}"
    );
}
