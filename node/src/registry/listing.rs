//! `GET /v2/<name>/tags/list` and `GET /v2/_catalog`, paged with `n` and
//! `last` and a `Link` header to the next page.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shoal_protocol::RepoName;

use super::RegistryState;
use super::blobs::header_value;
use super::error::{ErrorCode, RegistryError, RegistryResult};
use super::request::RequestParts;

/// One page of a sorted listing and, when more follow, the last entry shown.
#[derive(Debug, PartialEq, Eq)]
pub struct Page<'a> {
    pub items: Vec<&'a str>,
    pub next_after: Option<&'a str>,
}

/// Picks the entries after `last` (exclusive), at most `n` of them.
pub fn page<'a>(sorted: &'a [String], n: usize, last: Option<&str>) -> Page<'a> {
    let start = match last {
        Some(last) => sorted.partition_point(|s| s.as_str() <= last),
        None => 0,
    };
    let items: Vec<&str> = sorted[start..].iter().take(n).map(String::as_str).collect();
    let more = start + items.len() < sorted.len();
    Page {
        next_after: if more && !items.is_empty() {
            items.last().copied()
        } else {
            None
        },
        items,
    }
}

fn page_size(state: &RegistryState, req: &RequestParts) -> RegistryResult<usize> {
    let max = state.limits.max_page_size;
    match req.query("n") {
        None | Some("") => Ok(max),
        Some(raw) => raw.parse::<usize>().map(|n| n.min(max)).map_err(|_| {
            RegistryError::new(
                ErrorCode::PaginationNumberInvalid,
                format!(
                    "n={:?} is not a number",
                    raw.chars().take(32).collect::<String>()
                ),
            )
        }),
    }
}

fn respond(body: serde_json::Value, link: Option<String>) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(link) = link {
        response
            .headers_mut()
            .insert(header::LINK, header_value(&link));
    }
    response
}

pub fn tags(
    state: &RegistryState,
    name: &RepoName,
    req: &RequestParts,
) -> RegistryResult<Response> {
    if !state.store.repo_exists(name)? {
        return Err(RegistryError::new(
            ErrorCode::NameUnknown,
            format!("repository {name} is unknown"),
        ));
    }
    let tags: Vec<String> = state
        .store
        .tags(name)?
        .into_iter()
        .map(|t| t.as_str().to_owned())
        .collect();
    let n = page_size(state, req)?;
    let page = page(&tags, n, req.query("last"));
    let link = page
        .next_after
        .map(|last| format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\""));
    Ok(respond(
        json!({ "name": name.as_str(), "tags": page.items }),
        link,
    ))
}

pub fn catalog(state: &RegistryState, req: &RequestParts) -> RegistryResult<Response> {
    let repos: Vec<String> = state
        .store
        .repositories()?
        .into_iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    let n = page_size(state, req)?;
    let page = page(&repos, n, req.query("last"));
    let link = page
        .next_after
        .map(|last| format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\""));
    Ok(respond(json!({ "repositories": page.items }), link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_the_whole_list_once() {
        let all: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = page(&all, 2, None);
        assert_eq!(
            p,
            Page {
                items: vec!["a", "b"],
                next_after: Some("b")
            }
        );
        let p = page(&all, 2, Some("b"));
        assert_eq!(
            p,
            Page {
                items: vec!["c", "d"],
                next_after: Some("d")
            }
        );
        let p = page(&all, 2, Some("d"));
        assert_eq!(
            p,
            Page {
                items: vec!["e"],
                next_after: None
            }
        );
        let p = page(&all, 10, Some("bb"));
        assert_eq!(p.items, vec!["c", "d", "e"]);
        assert_eq!(page(&all, 0, None).items, Vec::<&str>::new());
        assert_eq!(page(&all, 0, None).next_after, None);
    }
}
