//! The parts of a request that handlers read, with typed accessors.

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Uri};

#[derive(Debug)]
pub struct RequestParts {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    query: HashMap<String, String>,
}

impl RequestParts {
    pub fn new(parts: Parts) -> RequestParts {
        // A query string that does not decode is treated as empty: every
        // parameter shoal reads is optional or checked by its handler.
        let query = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default();
        RequestParts {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            query,
        }
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    pub fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }
}
