//! The agent's peering endpoints as the CLI calls them, shared by the
//! Consul-style `peering` commands and the LXD-style `cluster link` ones
//! (a link is a peering). Each command adds its own wording and output.

use anyhow::Context;
use http::{Method, StatusCode};
use isthmus_api::peering::{EstablishRequest, Peering, TokenRequest, TokenResponse};
use isthmus_runtime::client::{encode, Client, ClientError};
use serde_json::Value;

/// `POST /v1/peering/token`.
pub async fn generate_token(
    client: &Client,
    request: &TokenRequest,
) -> Result<TokenResponse, ClientError> {
    client
        .send_json(Method::POST, "/v1/peering/token", request)
        .await
}

/// `POST /v1/peering/establish`.
pub async fn establish(client: &Client, request: &EstablishRequest) -> Result<(), ClientError> {
    let _: Value = client
        .send_json(Method::POST, "/v1/peering/establish", request)
        .await?;
    Ok(())
}

/// `GET /v1/peering/<name>`; `None` when the agent has no such peering.
pub async fn read_peering(client: &Client, name: &str) -> Result<Option<Value>, ClientError> {
    match client
        .get_json::<Value>(&format!("/v1/peering/{}", encode(name)))
        .await
    {
        Ok((peering, _)) => Ok(Some(peering)),
        Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `GET /v1/peerings`, raw (for `-format json`) and decoded, sorted by name.
pub async fn list_peerings(client: &Client) -> anyhow::Result<(Vec<Value>, Vec<Peering>)> {
    let (mut raw, _): (Vec<Value>, _) = client.get_json("/v1/peerings").await?;
    raw.sort_by(|a, b| {
        let name = |v: &Value| {
            v.get("Name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        name(a).cmp(&name(b))
    });
    let peerings = raw
        .iter()
        .map(|v| serde_json::from_value(v.clone()))
        .collect::<Result<Vec<Peering>, _>>()
        .context("decoding the agent's peerings")?;
    Ok((raw, peerings))
}

/// `DELETE /v1/peering/<name>`: answers once the peering is gone.
pub async fn delete_peering(client: &Client, name: &str) -> Result<(), ClientError> {
    client
        .call(
            Method::DELETE,
            &format!("/v1/peering/{}", encode(name)),
            None,
        )
        .await?;
    Ok(())
}
