//! The store's behaviour, including rebuilding the index from the files.

use std::collections::BTreeMap;

use bytes::Bytes;
use shoal_protocol::{Algorithm, Digest, RepoName, Tag};

use super::*;

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(StoreOptions {
        root: dir.path().to_path_buf(),
    })
    .expect("open store")
}

fn repo(s: &str) -> RepoName {
    s.parse().expect("repo")
}

fn tag(s: &str) -> Tag {
    s.parse().expect("tag")
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Pushes config + layer + an OCI manifest (with an optional subject).
async fn put_image(
    store: &Store,
    r: &RepoName,
    t: Option<&str>,
    layer: &[u8],
    subject: Option<&Digest>,
) -> Digest {
    let config = store
        .put_blob(&Digest::sha256_of(b"{}"), b"{}")
        .await
        .expect("config")
        .digest;
    let layer = store
        .put_blob(&Digest::sha256_of(layer), layer)
        .await
        .expect("layer")
        .digest;
    let mut body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": 1}],
        "annotations": {"k": "v"}
    });
    if let Some(s) = subject {
        body["subject"] = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": s.to_string(), "size": 1});
    }
    let bytes = Bytes::from(serde_json::to_vec(&body).expect("json"));
    let digest = Digest::sha256_of(&bytes);
    store
        .put_manifest(
            r,
            ManifestPut {
                digest: digest.clone(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                bytes,
                references: vec![config, layer],
                subject: subject.cloned(),
                artifact_type: Some("application/vnd.example".into()),
                annotations: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
                tag: t.map(tag),
            },
        )
        .await
        .expect("put manifest");
    digest
}

#[tokio::test]
async fn blobs_put_open_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let data = b"hello blob".to_vec();
    let d = Digest::sha256_of(&data);
    let info = store.put_blob(&d, &data).await.expect("put");
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(store.blob_size(&d).expect("size"), Some(data.len() as u64));
    let mut reader = store.open_blob(&d).await.expect("open").expect("present");
    let mut read = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut reader.file, &mut read)
        .await
        .expect("read");
    assert_eq!(read, data);
    assert!(store.delete_blob(&d).await.expect("delete"));
    assert!(!store.delete_blob(&d).await.expect("delete again"));
    assert!(store.open_blob(&d).await.expect("open").is_none());
    assert!(files_in(&dir.path().join("blobs/sha256")).is_empty());
}

#[tokio::test]
async fn writer_commits_only_on_matching_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut w = store.blob_writer().expect("writer");
    w.write(b"some ").await.expect("write");
    w.write(b"bytes").await.expect("write");
    assert_eq!(w.written(), 10);
    let wrong = Digest::sha256_of(b"other");
    match w.commit(&wrong).await {
        Err(StoreError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, Digest::sha256_of(b"some bytes"));
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(
        files_in(&dir.path().join("tmp")).is_empty(),
        "temp file removed"
    );
    assert!(
        files_in(&dir.path().join("blobs/sha256")).is_empty(),
        "nothing committed"
    );

    // A writer dropped mid-way leaves nothing behind either.
    let mut w = store.blob_writer().expect("writer");
    w.write(b"abandoned").await.expect("write");
    drop(w);
    assert!(files_in(&dir.path().join("tmp")).is_empty());
}

#[tokio::test]
async fn sha512_blobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let d = Digest::compute(Algorithm::Sha512, b"512");
    store.put_blob(&d, b"512").await.expect("put");
    assert_eq!(store.blob_size(&d).expect("size"), Some(3));
    assert_eq!(files_in(&dir.path().join("blobs/sha512")), vec![d.hex()]);
}

#[tokio::test]
async fn concurrent_writers_of_the_same_blob() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let d = Digest::sha256_of(&data);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, data, d) = (store.clone(), data.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            let mut w = store.blob_writer().expect("writer");
            for chunk in data.chunks(7_000) {
                w.write(chunk).await.expect("write");
            }
            w.commit(&d).await.expect("commit")
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task").size, data.len() as u64);
    }
    let on_disk = std::fs::read(dir.path().join("blobs/sha256").join(d.hex())).expect("blob file");
    assert_eq!(on_disk, data);
    assert!(files_in(&dir.path().join("tmp")).is_empty());
}

#[tokio::test]
async fn manifests_tags_referrers_and_repositories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let (app, lib) = (repo("app"), repo("library/base"));
    let m1 = put_image(&store, &app, Some("v1"), b"l1", None).await;
    let sig = put_image(&store, &app, None, b"sig", Some(&m1)).await;
    put_image(&store, &lib, Some("latest"), b"l2", None).await;

    assert_eq!(
        store.resolve_tag(&app, &tag("v1")).expect("tag"),
        Some(m1.clone())
    );
    assert_eq!(store.tags(&app).expect("tags"), vec![tag("v1")]);
    assert_eq!(
        store.repositories().expect("repos"),
        vec![app.clone(), lib.clone()]
    );
    assert!(store.repo_exists(&app).expect("exists"));
    assert!(!store.repo_exists(&repo("app/sub")).expect("exists"));
    let refs = store.referrers(&app, &m1).expect("referrers");
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, sig);
    assert!(
        store.referrers(&lib, &m1).expect("referrers").is_empty(),
        "per repository"
    );

    assert!(
        store
            .delete_tag(&app, &tag("v1"))
            .await
            .expect("delete tag")
    );
    assert_eq!(store.resolve_tag(&app, &tag("v1")).expect("tag"), None);
    assert!(store.manifest(&app, &m1).expect("manifest").is_some());
    assert!(store.delete_manifest(&app, &sig).await.expect("delete"));
    assert!(store.referrers(&app, &m1).expect("referrers").is_empty());
    assert!(
        !store
            .delete_manifest(&app, &sig)
            .await
            .expect("delete again")
    );
}

#[tokio::test]
async fn uploads_append_complete_cancel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let r = repo("app");
    let id = store.create_upload(&r).expect("create");
    let mut a = store.upload_appender(&id, 0).await.expect("appender");
    a.write(b"hello ").await.expect("write");
    assert_eq!(a.finish().await.expect("finish"), 6);
    match store.upload_appender(&id, 0).await {
        Err(StoreError::UploadOffset {
            current: 6,
            start: 0,
        }) => {}
        other => panic!("expected an offset error, got {other:?}"),
    }
    let mut a = store.upload_appender(&id, 6).await.expect("appender");
    // A second writer on the same session is refused while the first works.
    assert!(matches!(
        store.upload_appender(&id, 6).await,
        Err(StoreError::UploadBusy(_))
    ));
    a.write(b"world").await.expect("write");
    a.finish().await.expect("finish");
    assert_eq!(
        store.upload(&id).expect("state").map(|s| s.offset),
        Some(11)
    );

    let wrong = Digest::sha256_of(b"nope");
    assert!(matches!(
        store.complete_upload(&id, &wrong).await,
        Err(StoreError::DigestMismatch { .. })
    ));
    assert!(
        store.upload(&id).expect("state").is_some(),
        "session kept after a mismatch"
    );
    let d = Digest::sha256_of(b"hello world");
    let info = store.complete_upload(&id, &d).await.expect("complete");
    assert_eq!(info.size, 11);
    assert!(store.upload(&id).expect("state").is_none());
    assert_eq!(store.blob_size(&d).expect("size"), Some(11));

    let id = store.create_upload(&r).expect("create");
    assert!(store.cancel_upload(&id).await.expect("cancel"));
    assert!(store.upload(&id).expect("state").is_none());
    assert!(files_in(&dir.path().join("uploads")).is_empty());
}

#[tokio::test]
async fn unacknowledged_bytes_are_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let id = store.create_upload(&repo("app")).expect("create");
    let mut a = store.upload_appender(&id, 0).await.expect("appender");
    a.write(b"lost").await.expect("write");
    drop(a); // never finished: not acknowledged
    let mut a = store.upload_appender(&id, 0).await.expect("appender");
    a.write(b"kept").await.expect("write");
    a.finish().await.expect("finish");
    let info = store
        .complete_upload(&id, &Digest::sha256_of(b"kept"))
        .await
        .expect("complete");
    assert_eq!(info.size, 4);
}

/// Everything a client can ask the store, for comparing before and after.
async fn answers(store: &Store) -> String {
    let mut out = String::new();
    let mut blobs = store.list_blobs().expect("blobs");
    blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
    out.push_str(&format!("{blobs:?}\n"));
    for r in store.repositories().expect("repos") {
        out.push_str(&format!(
            "repo {r} tags {:?}\n",
            store.tags(&r).expect("tags")
        ));
        for t in store.tags(&r).expect("tags") {
            let d = store.resolve_tag(&r, &t).expect("tag").expect("target");
            let m = store.manifest(&r, &d).expect("manifest").expect("present");
            out.push_str(&format!("{t} -> {m:?}\n"));
            let refs = store.referrers(&r, &d).expect("referrers");
            out.push_str(&format!("referrers {refs:?}\n"));
        }
    }
    out
}

#[tokio::test]
async fn deleted_index_is_rebuilt_with_the_same_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before;
    let upload;
    {
        let store = open(&dir);
        let a = repo("app");
        let m1 = put_image(&store, &a, Some("v1"), b"l1", None).await;
        put_image(&store, &a, Some("sig"), b"sig", Some(&m1)).await;
        put_image(&store, &repo("other/x"), Some("latest"), b"l3", None).await;
        upload = store.create_upload(&a).expect("upload");
        let mut w = store.upload_appender(&upload, 0).await.expect("appender");
        w.write(b"partial").await.expect("write");
        w.finish().await.expect("finish");
        before = answers(&store).await;
        store.close().expect("close");
    }
    std::fs::remove_dir_all(dir.path().join("index")).expect("delete index");
    let store = open(&dir);
    assert_eq!(answers(&store).await, before);
    assert_eq!(
        store.upload(&upload).expect("upload").map(|u| u.offset),
        Some(7)
    );
    // The same through an explicit rebuild.
    store.rebuild_index().expect("rebuild");
    assert_eq!(answers(&store).await, before);
}

#[tokio::test]
async fn index_follows_the_files_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gone, added) = (Digest::sha256_of(b"gone"), Digest::sha256_of(b"added"));
    {
        let store = open(&dir);
        store.put_blob(&gone, b"gone").await.expect("put");
        store.close().expect("close");
    }
    std::fs::remove_file(dir.path().join("blobs/sha256").join(gone.hex())).expect("rm");
    std::fs::write(dir.path().join("blobs/sha256").join(added.hex()), b"added").expect("write");
    std::fs::write(dir.path().join("blobs/sha256/not-a-digest"), b"junk").expect("write");
    std::fs::write(dir.path().join("tmp-leftover"), b"").ok();
    std::fs::write(dir.path().join("tmp").join("blob-half"), b"half").expect("write tmp");
    let store = open(&dir);
    assert_eq!(store.blob_size(&gone).expect("size"), None);
    assert_eq!(store.blob_size(&added).expect("size"), Some(5));
    assert!(
        files_in(&dir.path().join("tmp")).is_empty(),
        "tmp emptied on open"
    );
}

#[tokio::test]
async fn unclean_stop_rebuilds_repository_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = repo("app");
    let m;
    {
        let store = open(&dir);
        m = put_image(&store, &a, Some("v1"), b"l", None).await;
        store.flush().expect("flush");
        // No close(): as after a crash.
    }
    // Simulate a crash between the tag file and its index entry.
    std::fs::write(dir.path().join("repos/app/_tags/v2"), m.to_string()).expect("tag file");
    let store = open(&dir);
    assert_eq!(store.resolve_tag(&a, &tag("v2")).expect("tag"), Some(m));
}
