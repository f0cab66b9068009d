//! `shoal status`: what a running node holds, fetches and has moved, from
//! its `/_shoal/status` (or, on an older node, its `/metrics`).

mod metrics;
mod report;

use std::io::Write;

use anyhow::{Context, anyhow};
use clap::Args;
use reqwest::StatusCode;

use crate::node_client::{self, NodeArgs, NodeClient};
use report::NodeStatus;

/// Status documents are small; a larger answer is not one.
const MAX_STATUS_BYTES: usize = 8 << 20;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Print the node's status JSON as it sent it.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let client = NodeClient::new(&args.node)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let text = runtime.block_on(status_text(&client, args.json))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

async fn status_text(client: &NodeClient, json: bool) -> anyhow::Result<String> {
    let response = client.get("/_shoal/status", None).await?;
    match response.status() {
        status if status.is_success() => {
            let body = read_text(client, response, "/_shoal/status").await?;
            if json {
                return Ok(ensure_newline(body));
            }
            let status: NodeStatus = serde_json::from_str(&body)
                .map_err(|e| anyhow!("{}/_shoal/status is not status JSON: {e}", client.base()))?;
            Ok(status.render(client.base()))
        }
        StatusCode::NOT_FOUND if json => Err(anyhow!(
            "the node at {} has no /_shoal/status (an older shoal); try without --json",
            client.base()
        )),
        StatusCode::NOT_FOUND => from_metrics(client).await,
        _ => Err(anyhow!(
            "cannot get {}/_shoal/status ({})",
            client.base(),
            node_client::describe_failure(response).await
        )),
    }
}

async fn from_metrics(client: &NodeClient) -> anyhow::Result<String> {
    let response = client.get("/metrics", None).await?;
    if !response.status().is_success() {
        return Err(anyhow!(
            "the node at {} has neither /_shoal/status nor /metrics ({})",
            client.base(),
            node_client::describe_failure(response).await
        ));
    }
    let text = read_text(client, response, "/metrics").await?;
    Ok(metrics::render(client.base(), &metrics::parse(&text)))
}

async fn read_text(
    client: &NodeClient,
    response: reqwest::Response,
    path: &str,
) -> anyhow::Result<String> {
    let body = client
        .read_small_body(response, MAX_STATUS_BYTES, path)
        .await?;
    String::from_utf8(body).map_err(|_| anyhow!("{path} is not UTF-8"))
}

fn ensure_newline(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}
