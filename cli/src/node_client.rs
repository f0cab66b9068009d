//! Talking to a running node over HTTP: which node (`--node`), one client
//! with timeouts, and errors that name the node and say why it could not
//! be reached.

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use reqwest::{Response, Url, header};

use crate::oci_error;

pub const DEFAULT_NODE: &str = "http://127.0.0.1:5000";

/// A node that is up answers at once; a blackholed address should not
/// keep a command waiting for the kernel's minutes-long connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence in a response. Bodies may take long in total (a big
/// layer fetched from peers), but never stall this long between bytes.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Error bodies are short JSON; more than this is not worth reading.
const MAX_ERROR_BODY: usize = 64 << 10;

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// The node's registry endpoint.
    #[arg(long = "node", env = "SHOAL_NODE", value_name = "URL", default_value = DEFAULT_NODE)]
    pub node: String,
}

/// An HTTP client for one node's endpoint.
#[derive(Debug, Clone)]
pub struct NodeClient {
    base: Url,
    http: reqwest::Client,
}

impl NodeClient {
    pub fn new(args: &NodeArgs) -> anyhow::Result<NodeClient> {
        let base = parse_node_url(&args.node)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow!("building the HTTP client: {e}"))?;
        Ok(NodeClient { base, http })
    }

    /// The node's URL as users write it (no trailing slash).
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `GET <node><path_and_query>`, with an `Accept` header if given. Any
    /// status is returned; only failing to get an answer is an error.
    pub async fn get(
        &self,
        path_and_query: &str,
        accept: Option<&str>,
    ) -> anyhow::Result<Response> {
        let url = format!("{}{path_and_query}", self.base());
        let mut request = self.http.get(&url);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        request.send().await.map_err(|e| self.unreachable(&e))
    }

    /// The error for a request that got no answer.
    pub fn unreachable(&self, err: &reqwest::Error) -> anyhow::Error {
        anyhow!("no shoal node at {}: {}", self.base(), root_cause(err))
    }

    /// A whole response body of at most `cap` bytes; `what` names it in
    /// errors. For small documents only: blobs are streamed.
    pub async fn read_small_body(
        &self,
        mut response: Response,
        cap: usize,
        what: &str,
    ) -> anyhow::Result<Vec<u8>> {
        let too_big = || anyhow!("{what} is larger than {cap} bytes");
        if response
            .content_length()
            .is_some_and(|len| len > cap as u64)
        {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.broken(&format!("reading {what}"), &e))?
        {
            if body.len() + chunk.len() > cap {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The error for a response cut off while `doing` something.
    pub fn broken(&self, doing: &str, err: &reqwest::Error) -> anyhow::Error {
        anyhow!("{doing} from {}: {}", self.base(), root_cause(err))
    }
}

/// `127.0.0.1:5000` means `http://127.0.0.1:5000`; the URL must have no
/// path, since the registry API lives at its root.
pub fn parse_node_url(text: &str) -> anyhow::Result<Url> {
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| anyhow!("--node {text}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(anyhow!(
            "--node {text}: only http:// and https:// are supported"
        ));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(anyhow!(
            "--node {text}: give the node's address without a path, e.g. {DEFAULT_NODE}"
        ));
    }
    Ok(url)
}

/// What went wrong at the bottom of a request error, in words a user
/// knows ("connection refused", not reqwest's "error sending request").
fn root_cause(err: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut innermost = err.to_string();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::TimedOut => return "timed out".into(),
                _ => {}
            }
        }
        innermost = cause.to_string();
        source = cause.source();
    }
    if err.is_timeout() {
        return "timed out".into();
    }
    innermost
}

/// Reads a failed response's body and describes it: the OCI error codes
/// and messages when the body has them, else the status.
pub async fn describe_failure(response: Response) -> String {
    let status = response.status();
    let body = read_capped(response, MAX_ERROR_BODY).await;
    oci_error::describe(status, &body)
}

async fn read_capped(mut response: Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(cap);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_without_a_scheme_are_http() {
        let url = parse_node_url("127.0.0.1:5000").expect("valid");
        assert_eq!(url.as_str(), "http://127.0.0.1:5000/");
        let url = parse_node_url("https://node.example:443/").expect("valid");
        assert_eq!(url.as_str(), "https://node.example/");
        assert!(parse_node_url("http://127.0.0.1:5000/v2/").is_err());
        assert!(parse_node_url("ftp://x").is_err());
    }
}
