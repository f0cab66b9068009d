//! Bearer tokens and basic auth against a fake registry that insists on
//! them, and credentials that must not follow a blob to its storage.

use std::sync::atomic::Ordering;
use std::time::Duration;

use shoal_node::upstream::UpstreamError;
use shoal_protocol::name::{Reference, RepoName};

use crate::support::{
    FakeAuth, FakeRegistry, FakeState, OCI_MANIFEST, base64, client_with_credentials, collect,
    image_manifest, pattern,
};

fn repo() -> RepoName {
    "team/app".parse().expect("repo")
}

fn tag() -> Reference {
    "v1".parse().expect("tag")
}

/// A fake registry holding `team/app:v1` and its layer, behind `auth`.
async fn registry(auth: FakeAuth) -> (FakeRegistry, Vec<u8>) {
    let state = FakeState::new(auth);
    let layer = pattern(100_000, 3);
    state.add_blob(&layer);
    state.add_manifest(
        "team/app",
        "v1",
        OCI_MANIFEST,
        &image_manifest(b"{}", &layer),
    );
    (FakeRegistry::start(state).await, layer)
}

fn bearer(user: &str, password: &str, expires_in: Option<u64>) -> FakeAuth {
    FakeAuth::Bearer {
        credentials: Some((user.to_owned(), password.to_owned())),
        expires_in,
    }
}

#[tokio::test]
async fn one_token_serves_many_requests() {
    let (fake, layer) = registry(bearer("alice", "s3cret", Some(300))).await;
    let client = client_with_credentials(&fake.base, "alice", "s3cret");
    let digest = shoal_protocol::Digest::sha256_of(&layer);
    for _ in 0..3 {
        client
            .get_manifest(&fake.host, &repo(), &tag(), &[OCI_MANIFEST])
            .await
            .expect("manifest");
        let blob = client
            .blob(&fake.host, &repo(), &digest, 10)
            .await
            .expect("blob");
        assert_eq!(collect(blob).await, &layer[10..]);
        client
            .head_manifest(
                &fake.host,
                &repo(),
                &tag(),
                &[OCI_MANIFEST],
                Duration::from_secs(5),
            )
            .await
            .expect("head");
    }
    assert_eq!(fake.state.token_hits.load(Ordering::SeqCst), 1);
    // Nine requests and the one anonymous try that drew the challenge.
    assert_eq!(fake.state.api_hits.load(Ordering::SeqCst), 10);
    let queries = fake.state.token_queries.lock().expect("lock").clone();
    assert_eq!(
        queries,
        vec!["service=fake+registry%2C+for+tests&scope=repository%3Ateam%2Fapp%3Apull".to_owned()],
        "the challenge's service and scope, commas in quotes included"
    );
    // Clones share the cache.
    client
        .clone()
        .get_manifest(&fake.host, &repo(), &tag(), &[OCI_MANIFEST])
        .await
        .expect("manifest through a clone");
    assert_eq!(fake.state.token_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_burst_of_requests_waits_for_one_token() {
    let (fake, layer) = registry(bearer("alice", "s3cret", Some(300))).await;
    let client = client_with_credentials(&fake.base, "alice", "s3cret");
    let digest = shoal_protocol::Digest::sha256_of(&layer);
    let pulls = (0..8).map(|i| {
        let (client, host, digest) = (client.clone(), fake.host.clone(), digest.clone());
        tokio::spawn(async move {
            let blob = client.blob(&host, &repo(), &digest, i).await?;
            Ok::<_, UpstreamError>(collect(blob).await)
        })
    });
    for (i, pull) in futures_util::future::join_all(pulls)
        .await
        .into_iter()
        .enumerate()
    {
        let bytes = pull.expect("task").expect("blob");
        assert_eq!(bytes, &layer[i..]);
    }
    assert_eq!(fake.state.token_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn anonymous_tokens_and_expiry() {
    let (fake, _) = registry(FakeAuth::Bearer {
        credentials: None,
        expires_in: Some(1),
    })
    .await;
    let client = fake.client();
    let (repo, tag) = (repo(), tag());
    let get = || client.get_manifest(&fake.host, &repo, &tag, &[OCI_MANIFEST]);
    get().await.expect("manifest");
    get().await.expect("manifest");
    assert_eq!(fake.state.token_hits.load(Ordering::SeqCst), 1);
    // A one-second token is dropped before its second is out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    get().await.expect("manifest");
    assert_eq!(fake.state.token_hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_token_without_expiry_is_taken_as_the_spec_says() {
    // `{"token": …}` with no `expires_in`: 60 s by the spec.
    let (fake, _) = registry(bearer("alice", "s3cret", None)).await;
    let client = client_with_credentials(&fake.base, "alice", "s3cret");
    for _ in 0..2 {
        client
            .get_manifest(&fake.host, &repo(), &tag(), &[OCI_MANIFEST])
            .await
            .expect("manifest");
    }
    assert_eq!(fake.state.token_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_unauthorized() {
    let (fake, _) = registry(bearer("alice", "s3cret", Some(300))).await;
    for client in [
        client_with_credentials(&fake.base, "alice", "wrong"),
        fake.client(),
    ] {
        let err = client
            .get_manifest(&fake.host, &repo(), &tag(), &[OCI_MANIFEST])
            .await
            .expect_err("refused");
        assert!(matches!(err, UpstreamError::Unauthorized { .. }), "{err:?}");
        assert_eq!(
            (err.oci_code(), err.status().as_u16()),
            ("UNAUTHORIZED", 401)
        );
        assert!(err.to_string().starts_with(&fake.host), "{err}");
        assert!(
            !err.to_string().contains("wrong"),
            "no password in messages: {err}"
        );
    }
}

#[tokio::test]
async fn basic_auth() {
    let (fake, layer) = registry(FakeAuth::Basic {
        header: format!("Basic {}", base64("bob:hunter2")),
    })
    .await;
    let client = client_with_credentials(&fake.base, "bob", "hunter2");
    let digest = shoal_protocol::Digest::sha256_of(&layer);
    client
        .get_manifest(&fake.host, &repo(), &tag(), &[OCI_MANIFEST])
        .await
        .expect("manifest");
    let blob = client
        .blob(&fake.host, &repo(), &digest, 0)
        .await
        .expect("blob");
    assert_eq!(collect(blob).await, layer);
    // Challenged once; the credentials go along from then on.
    assert_eq!(fake.state.api_hits.load(Ordering::SeqCst), 3);

    let err = fake
        .client()
        .get_manifest(&fake.host, &repo(), &tag(), &[OCI_MANIFEST])
        .await
        .expect_err("no credentials");
    assert!(err.to_string().contains("none are configured"), "{err}");
    let err = client_with_credentials(&fake.base, "bob", "wrong")
        .get_manifest(&fake.host, &repo(), &tag(), &[OCI_MANIFEST])
        .await
        .expect_err("wrong password");
    assert_eq!(err.oci_code(), "UNAUTHORIZED");
}

#[tokio::test]
async fn redirected_blobs_leave_credentials_behind() {
    let (fake, layer) = registry(bearer("alice", "s3cret", Some(300))).await;
    // The storage is another server (another port is another origin).
    let storage_state = FakeState::new(FakeAuth::None);
    storage_state.add_blob(&layer);
    let storage = FakeRegistry::start(storage_state).await;
    *fake.state.redirect_blobs_to.lock().expect("lock") = Some(storage.base.clone());

    let client = client_with_credentials(&fake.base, "alice", "s3cret");
    let digest = shoal_protocol::Digest::sha256_of(&layer);
    let whole = client
        .blob(&fake.host, &repo(), &digest, 0)
        .await
        .expect("blob");
    assert_eq!(collect(whole).await, layer);
    let rest = client
        .blob(&fake.host, &repo(), &digest, 5000)
        .await
        .expect("resumed blob");
    assert_eq!(rest.size, Some(layer.len() as u64));
    assert_eq!(collect(rest).await, &layer[5000..]);

    let seen = storage.state.storage_requests.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![(false, None), (false, Some("bytes=5000-".to_owned()))],
        "no Authorization at the storage; the Range follows the redirect"
    );
}
