use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{OCI_MANIFEST, TestRegistry, assert_error};

#[tokio::test]
async fn tags_are_paged_with_link_headers() {
    let reg = TestRegistry::start().await;
    let (body, _) = reg.push_image("app", "a", b"l").await;
    for tag in ["b", "c", "d", "e"] {
        let resp = reg
            .put_manifest("app", tag, Some(OCI_MANIFEST), &body)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let all: Value = reg
        .get("/v2/app/tags/list")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(all["name"], "app");
    assert_eq!(all["tags"], serde_json::json!(["a", "b", "c", "d", "e"]));

    // Follow Link headers page by page.
    let mut next = Some("/v2/app/tags/list?n=2".to_owned());
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(path) = next.take() {
        let resp = reg.get(&path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        next = resp
            .headers()
            .get("link")
            .map(|l| l.to_str().expect("link").to_owned())
            .map(|l| {
                l.trim_start_matches('<')
                    .split('>')
                    .next()
                    .expect("url")
                    .to_owned()
            });
        let page: Value = resp.json().await.expect("json");
        for t in page["tags"].as_array().expect("tags") {
            seen.push(t.as_str().expect("str").to_owned());
        }
        pages += 1;
        assert!(pages <= 5, "paging terminates");
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    assert_eq!(pages, 3);

    let after: Value = reg
        .get("/v2/app/tags/list?last=c")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(after["tags"], serde_json::json!(["d", "e"]));
    assert_error(
        reg.get("/v2/app/tags/list?n=abc").await,
        StatusCode::BAD_REQUEST,
        "PAGINATION_NUMBER_INVALID",
    )
    .await;
    assert_error(
        reg.get("/v2/nobody/tags/list").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    reg.stop().await;
}

#[tokio::test]
async fn catalog_lists_repositories_in_pages() {
    let reg = TestRegistry::start().await;
    for repo in ["zeta", "alpha", "mid/dle"] {
        reg.push_image(repo, "v1", repo.as_bytes()).await;
    }
    let all: Value = reg.get("/v2/_catalog").await.json().await.expect("json");
    assert_eq!(
        all["repositories"],
        serde_json::json!(["alpha", "mid/dle", "zeta"])
    );
    let resp = reg.get("/v2/_catalog?n=1").await;
    assert_eq!(
        resp.headers()["link"],
        "</v2/_catalog?n=1&last=alpha>; rel=\"next\""
    );
    let page: Value = resp.json().await.expect("json");
    assert_eq!(page["repositories"], serde_json::json!(["alpha"]));
    let last: Value = reg
        .get("/v2/_catalog?n=5&last=mid/dle")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(last["repositories"], serde_json::json!(["zeta"]));
    reg.stop().await;
}
