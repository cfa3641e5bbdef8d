//! What the LXD-style commands (`auth group`, `auth identity`, `cluster
//! link`) share: the arguments of their `list`, YAML for their `show`, and
//! a request whose answer they ignore.

use clap::Args;
use http::Method;
use isthmus_runtime::client::Client;
use serde::Serialize;
use serde_json::Value;

use super::output::{self, ListFormat};
use super::ApiArgs;

#[derive(Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t)]
    pub(super) format: ListFormat,
    #[command(flatten)]
    pub(super) api: ApiArgs,
}

/// `show` output: the view as YAML.
pub fn format_yaml(view: &impl Serialize) -> anyhow::Result<String> {
    Ok(output::yaml(&serde_json::to_value(view)?))
}

/// POST/DELETE with a JSON body, ignoring any answer.
pub(super) async fn send(
    client: &Client,
    method: Method,
    path: &str,
    body: &impl Serialize,
) -> anyhow::Result<()> {
    let _: Value = client.send_json(method, path, body).await?;
    Ok(())
}
