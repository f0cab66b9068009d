//! Upstreams that fail, stall, lie or ignore what was asked: retried when
//! asking again can help, refused when the content is wrong.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use shoal_node::upstream::{MAX_MANIFEST_BYTES, UpstreamClient, UpstreamError, Wanted};
use shoal_protocol::Digest;
use shoal_protocol::name::{Reference, RepoName};

use crate::support::{
    FakeAuth, FakeRegistry, FakeState, OCI_MANIFEST, client_for, collect, image_manifest, pattern,
    settings_for,
};

fn repo() -> RepoName {
    "team/app".parse().expect("repo")
}

fn tag() -> Reference {
    "v1".parse().expect("tag")
}

async fn fake_with_manifest() -> (FakeRegistry, Vec<u8>) {
    let state = FakeState::new(FakeAuth::None);
    let manifest = image_manifest(b"{}", b"layer");
    state.add_manifest("team/app", "v1", OCI_MANIFEST, &manifest);
    (FakeRegistry::start(state).await, manifest)
}

#[tokio::test]
async fn server_errors_are_retried() {
    let (fake, manifest) = fake_with_manifest().await;
    fake.state.script(&[
        (StatusCode::SERVICE_UNAVAILABLE, None),
        (StatusCode::BAD_GATEWAY, None),
    ]);
    let got = fake
        .client()
        .get_manifest(&fake.host, &repo(), &tag(), &[OCI_MANIFEST])
        .await
        .expect("third time lucky");
    assert_eq!(got.bytes, manifest);
    assert_eq!(fake.state.api_hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retries_are_bounded() {
    let (fake, _) = fake_with_manifest().await;
    fake.state
        .script(&[(StatusCode::SERVICE_UNAVAILABLE, None); 5]);
    let err = fake
        .client()
        .get_manifest(&fake.host, &repo(), &tag(), &[OCI_MANIFEST])
        .await
        .expect_err("still failing after the retries");
    // settings_for allows 2 retries: 3 attempts.
    assert_eq!(fake.state.api_hits.load(Ordering::SeqCst), 3);
    assert!(matches!(err, UpstreamError::BadResponse { .. }), "{err:?}");
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(err.status().as_u16(), 502);
}

#[tokio::test]
async fn rate_limits_honour_a_short_retry_after_and_refuse_a_long_one() {
    let (fake, _) = fake_with_manifest().await;
    fake.state
        .script(&[(StatusCode::TOO_MANY_REQUESTS, Some("1"))]);
    let started = Instant::now();
    fake.client()
        .get_manifest(&fake.host, &repo(), &tag(), &[OCI_MANIFEST])
        .await
        .expect("after waiting");
    assert!(started.elapsed() >= Duration::from_secs(1));

    fake.state
        .script(&[(StatusCode::TOO_MANY_REQUESTS, Some("3600"))]);
    let before = fake.state.api_hits.load(Ordering::SeqCst);
    let err = fake
        .client()
        .get_manifest(&fake.host, &repo(), &tag(), &[OCI_MANIFEST])
        .await
        .expect_err("an hour is too long to hold a pull");
    assert_eq!(fake.state.api_hits.load(Ordering::SeqCst), before + 1);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(
        (err.oci_code(), err.status().as_u16()),
        ("TOO_MANY_REQUESTS", 429)
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (fake, _) = fake_with_manifest().await;
    fake.state.script(&[(StatusCode::FORBIDDEN, None)]);
    let err = fake
        .client()
        .get_manifest(&fake.host, &repo(), &tag(), &[OCI_MANIFEST])
        .await
        .expect_err("forbidden");
    assert_eq!((err.oci_code(), err.status().as_u16()), ("DENIED", 403));
    let err = fake
        .client()
        .get_manifest(
            &fake.host,
            &repo(),
            &"missing".parse().expect("tag"),
            &[OCI_MANIFEST],
        )
        .await
        .expect_err("missing");
    assert!(
        matches!(
            err,
            UpstreamError::NotFound {
                wanted: Wanted::Manifest,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(fake.state.api_hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_dead_upstream_is_unreachable() {
    // Bind then drop: the port is (almost certainly) closed.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let client = client_for(&format!("http://{addr}"));
    let err = client
        .get_manifest(&addr.to_string(), &repo(), &tag(), &[OCI_MANIFEST])
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, UpstreamError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        (err.oci_code(), err.status().as_u16()),
        ("UNAVAILABLE", 503)
    );
    assert!(err.to_string().starts_with(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn a_silent_upstream_times_out() {
    // Accepts connections, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut settings = settings_for(&format!("http://{addr}"));
    settings.request_timeout = Duration::from_millis(300);
    settings.retries = 1;
    let client = UpstreamClient::new(&settings).expect("client");
    let started = Instant::now();
    let err = client
        .blob(&addr.to_string(), &repo(), &Digest::sha256_of(b"x"), 0)
        .await
        .expect_err("no answer");
    assert!(matches!(err, UpstreamError::Unreachable { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let err = fake_head(&client, &addr.to_string(), Duration::from_millis(200)).await;
    assert!(matches!(err, UpstreamError::Unreachable { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

async fn fake_head(client: &UpstreamClient, host: &str, timeout: Duration) -> UpstreamError {
    client
        .head_manifest(host, &repo(), &tag(), &[OCI_MANIFEST], timeout)
        .await
        .expect_err("no answer in time")
}

#[tokio::test]
async fn manifests_that_do_not_match_their_digest_are_refused() {
    let (fake, manifest) = fake_with_manifest().await;
    // Asked by a digest the body does not have.
    let other = Digest::sha256_of(b"another manifest");
    fake.state.manifests.lock().expect("lock").insert(
        format!("team/app:{other}"),
        (OCI_MANIFEST.to_owned(), manifest.clone()),
    );
    let err = fake
        .client()
        .get_manifest(
            &fake.host,
            &repo(),
            &Reference::Digest(other.clone()),
            &[OCI_MANIFEST],
        )
        .await
        .expect_err("wrong body for the digest");
    assert_eq!(
        err,
        UpstreamError::DigestMismatch {
            host: fake.host.clone(),
            expected: other.clone(),
            actual: Digest::sha256_of(&manifest),
        }
    );
    assert_eq!(err.status().as_u16(), 502);

    // By tag, the body must match the digest the upstream claims.
    *fake.state.lying_digest_header.lock().expect("lock") = Some(other.to_string());
    let err = fake
        .client()
        .get_manifest(&fake.host, &repo(), &tag(), &[OCI_MANIFEST])
        .await
        .expect_err("header and body disagree");
    assert!(
        matches!(err, UpstreamError::DigestMismatch { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn oversized_manifests_are_refused() {
    let state = FakeState::new(FakeAuth::None);
    state.add_manifest(
        "team/app",
        "big",
        OCI_MANIFEST,
        &vec![b' '; MAX_MANIFEST_BYTES + 1],
    );
    state.add_manifest(
        "team/app",
        "limit",
        OCI_MANIFEST,
        &vec![b' '; MAX_MANIFEST_BYTES],
    );
    let fake = FakeRegistry::start(state).await;
    let err = fake
        .client()
        .get_manifest(
            &fake.host,
            &repo(),
            &"big".parse().expect("tag"),
            &[OCI_MANIFEST],
        )
        .await
        .expect_err("too big");
    assert!(
        matches!(
            err,
            UpstreamError::TooLarge {
                wanted: Wanted::Manifest,
                ..
            }
        ),
        "{err:?}"
    );
    let at_limit = fake
        .client()
        .get_manifest(
            &fake.host,
            &repo(),
            &"limit".parse().expect("tag"),
            &[OCI_MANIFEST],
        )
        .await
        .expect("exactly the limit");
    assert_eq!(at_limit.bytes.len(), MAX_MANIFEST_BYTES);
}

#[tokio::test]
async fn a_range_ignored_by_the_upstream_is_cut_out_of_the_whole() {
    let mut state = FakeState::new(FakeAuth::None);
    state.ignore_range = true;
    let layer = pattern(200_000, 9);
    let digest = state.add_blob(&layer);
    let fake = FakeRegistry::start(state).await;
    let client = fake.client();
    let rest = client
        .blob(&fake.host, &repo(), &digest, 150_001)
        .await
        .expect("blob from an offset");
    assert_eq!((rest.size, rest.len), (Some(200_000), Some(49_999)));
    assert_eq!(collect(rest).await, &layer[150_001..]);
    let part = client
        .blob_range(&fake.host, &repo(), &digest, 1000, 69_999)
        .await
        .expect("range");
    assert_eq!(part.len, Some(69_000));
    assert_eq!(collect(part).await, &layer[1000..70_000]);
    let past = client.blob(&fake.host, &repo(), &digest, 200_000).await;
    assert!(
        matches!(past, Err(UpstreamError::RangeNotSatisfiable { .. })),
        "{past:?}"
    );
}

#[tokio::test]
async fn unlisted_hosts_can_be_shut_out() {
    let (fake, _) = fake_with_manifest().await;
    let mut settings = settings_for(&fake.base);
    settings.allow_unlisted_hosts = false;
    let client = UpstreamClient::new(&settings).expect("client");
    let err = client
        .get_manifest("quay.io", &repo(), &tag(), &[OCI_MANIFEST])
        .await
        .expect_err("not listed");
    assert_eq!(
        err,
        UpstreamError::HostNotAllowed {
            host: "quay.io".into()
        }
    );
    assert_eq!(err.oci_code(), "DENIED");
    client
        .get_manifest(&fake.host, &repo(), &tag(), &[OCI_MANIFEST])
        .await
        .expect("the listed default works");
}
