//! Peering: Consul's API shapes, the peering token, and the messages the
//! two clusters exchange (establishment and the replication stream).

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::catalog::ServiceEntry;

pub const STATE_PENDING: &str = "PENDING";
pub const STATE_ESTABLISHING: &str = "ESTABLISHING";
pub const STATE_ACTIVE: &str = "ACTIVE";
pub const STATE_FAILING: &str = "FAILING";
pub const STATE_DELETING: &str = "DELETING";
pub const STATE_TERMINATED: &str = "TERMINATED";

/// The type LXD shows for a link's identity once established, and before.
pub const IDENTITY_TYPE_LINK: &str = "Cluster link certificate";
pub const IDENTITY_TYPE_LINK_PENDING: &str = "Cluster link certificate (pending)";

/// Header the gateway sets on requests it forwards to its agent: the
/// authenticated peer's name. The gateway strips it from incoming requests.
pub const HEADER_PEER: &str = "x-isthmus-peer";
/// Header with the SHA-256 fingerprint of the caller's client certificate.
pub const HEADER_CLIENT_FINGERPRINT: &str = "x-isthmus-client-fingerprint";

/// The gateway's answer to a client certificate that belongs to no
/// peering; a dialer seeing it knows the peer deleted the peering.
pub const REFUSAL_NOT_PEERED: &str = "client certificate is not from a peered cluster";

/// Peer-facing paths the gateway serves on the peering server name.
pub const PATH_EXCHANGE: &str = "/v1/peering/exchange";
pub const PATH_STREAM: &str = "/v1/peering/stream";
/// The gateway liveness probe a peer's leader sends over the peering's
/// mTLS: the gateway answers it itself, once the caller's certificate is
/// its peer's mesh gateway certificate, without asking its agent.
pub const PATH_GATEWAY_PROBE: &str = "/v1/peering/probe";
/// Agent-side paths the gateway forwards them to.
pub const AGENT_PATH_EXCHANGE: &str = "/v1/internal/peering/exchange";
pub const AGENT_PATH_STREAM: &str = "/v1/internal/peering/stream";

/// Consul's rule for peer names, plus `_` so LXD-style link names such as
/// `cluster_b` work; the error text is Consul's.
pub fn validate_peer_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let inner_ok =
        |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_';
    let edge_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let valid = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(inner_ok)
        && edge_ok(&bytes[0])
        && edge_ok(&bytes[bytes.len() - 1]);
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name} is not a valid peer name: a valid peering name must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
        ))
    }
}

/// `server.<cluster>.peering.<trust-domain>`: the SNI a peer dials.
pub fn server_name(cluster: &str, trust_domain: &str) -> String {
    format!("server.{cluster}.peering.{trust_domain}")
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Remote {
    #[serde(default)]
    pub partition: String,
    #[serde(default)]
    pub datacenter: String,
}

/// Body of `POST /v1/peering/token`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(default)]
    pub peer_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_external_addresses: Vec<String>,
    /// isthmus: the auth groups of the peer's identity (LXD's `--auth-group`).
    /// Empty means the built-in `peering` group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_groups: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TokenResponse {
    pub peering_token: String,
}

/// Body of `POST /v1/peering/establish`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EstablishRequest {
    #[serde(default)]
    pub peer_name: String,
    #[serde(default)]
    pub peering_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_groups: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamStatus {
    pub imported_services: Vec<String>,
    pub exported_services: Vec<String>,
    /// RFC 3339, or null before the first one.
    pub last_heartbeat: Option<String>,
    pub last_receive: Option<String>,
    pub last_send: Option<String>,
}

/// A peering as `GET /v1/peering/<name>` and `/v1/peerings` show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Peering {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub partition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    pub state: String,
    #[serde(rename = "PeerID", default)]
    pub peer_id: String,
    #[serde(rename = "PeerCAPems", default)]
    pub peer_ca_pems: Vec<String>,
    #[serde(default)]
    pub peer_server_name: String,
    #[serde(default)]
    pub peer_server_addresses: Vec<String>,
    #[serde(default)]
    pub stream_status: StreamStatus,
    #[serde(default)]
    pub remote: Remote,
    /// isthmus: `acceptor` (generated the token) or `dialer` (established).
    #[serde(default)]
    pub role: String,
    /// isthmus: the identity the peer authenticates as, `tls/<name>`.
    #[serde(default)]
    pub identity: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// The peering token: standard base64 of this JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PeeringToken {
    #[serde(rename = "CA")]
    pub ca: Vec<String>,
    #[serde(default)]
    pub manual_server_addresses: bool,
    pub server_addresses: Vec<String>,
    pub server_name: String,
    #[serde(rename = "PeerID")]
    pub peer_id: String,
    pub establishment_secret: String,
    #[serde(default)]
    pub remote: Remote,
    /// isthmus: SHA-256 (lower-case hex) of the acceptor gateway's certificate, pinned.
    pub gateway_fingerprint: String,
    /// isthmus: RFC 3339; the secret is refused after this.
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

impl PeeringToken {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("token serializes");
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    /// Decodes and validates a token's shape (not its expiry or secret).
    pub fn decode(text: &str) -> Result<PeeringToken, TokenError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| TokenError(format!("peering token is malformed: not base64: {e}")))?;
        let token: PeeringToken = serde_json::from_slice(&bytes)
            .map_err(|e| TokenError(format!("peering token is malformed: {e}")))?;
        token.validate()?;
        Ok(token)
    }

    fn validate(&self) -> Result<(), TokenError> {
        if self.ca.is_empty() {
            return Err(TokenError(
                "peering token invalid CA: no CA certificates".into(),
            ));
        }
        for pem in &self.ca {
            crate::tls::certs_from_pem(pem)
                .map_err(|e| TokenError(format!("peering token invalid CA: {e}")))?;
        }
        if self.server_addresses.is_empty() {
            return Err(TokenError(
                "peering token server addresses value is empty".into(),
            ));
        }
        for addr in &self.server_addresses {
            if !valid_server_address(addr) {
                return Err(TokenError(format!(
                    "{addr} is not a valid peering server address"
                )));
            }
        }
        if self.server_name.is_empty() {
            return Err(TokenError(
                "peering token server name value is empty".into(),
            ));
        }
        if self.peer_id.is_empty() {
            return Err(TokenError("peering token peer ID value is empty".into()));
        }
        if self.establishment_secret.is_empty() {
            return Err(TokenError(
                "peering token establishment secret value is empty".into(),
            ));
        }
        let fingerprint_ok = self.gateway_fingerprint.len() == 64
            && self
                .gateway_fingerprint
                .bytes()
                .all(|b| b.is_ascii_hexdigit());
        if !fingerprint_ok {
            return Err(TokenError(
                "peering token gateway fingerprint must be 64 hex characters (SHA-256)".into(),
            ));
        }
        Ok(())
    }
}

/// `host:port` with a non-zero port and a valid host that is never a
/// gateway (not unspecified, multicast, broadcast or link-local); loopback
/// passes here, [`crate::peering_limits::validate_gateway_address`] decides
/// it by policy.
pub fn valid_server_address(addr: &str) -> bool {
    let policy = crate::peering_limits::AddressPolicy {
        allow_loopback: true,
    };
    crate::peering_limits::validate_gateway_address(addr, policy).is_ok()
}

/// What one cluster tells the other about itself when establishing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PeerInfo {
    pub cluster_name: String,
    pub trust_domain: String,
    /// The sender's own ID for this peering.
    #[serde(rename = "PeeringID")]
    pub peering_id: String,
    #[serde(rename = "CAPems")]
    pub ca_pems: Vec<String>,
    pub gateway_addresses: Vec<String>,
    pub gateway_fingerprint: String,
    /// The sender's name for the receiver: part of the SNI the receiver
    /// dials the sender's exported services with.
    #[serde(default)]
    pub peer_name: String,
}

/// Dialer → acceptor, over the acceptor's gateway: trade the single-use
/// establishment secret for a stream secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExchangeRequest {
    /// The acceptor's peering ID, from the token.
    #[serde(rename = "PeerID")]
    pub peer_id: String,
    pub establishment_secret: String,
    pub dialer: PeerInfo,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExchangeResponse {
    pub stream_secret: String,
    pub acceptor: PeerInfo,
}

/// Messages on the replication stream, one JSON object per line, in both
/// directions. The dialer's first message is `Open`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "Type")]
pub enum StreamMessage {
    /// Dialer only, first: which peering and the proof it may stream.
    Open {
        #[serde(rename = "PeerID")]
        peer_id: String,
        #[serde(rename = "StreamSecret")]
        stream_secret: String,
    },
    /// The full list of service names exported to the receiver; the
    /// receiver drops imported services no longer listed.
    ExportedServices {
        #[serde(rename = "Services")]
        services: Vec<String>,
    },
    /// One exported service with all its instances, each with one flattened
    /// health check.
    Service {
        #[serde(rename = "Name")]
        name: String,
        #[serde(rename = "Instances")]
        instances: Vec<ServiceEntry>,
    },
    /// The sender's CA roots.
    TrustBundle {
        #[serde(rename = "TrustDomain")]
        trust_domain: String,
        #[serde(rename = "RootPEMs")]
        root_pems: Vec<String>,
    },
    /// Where the sender's mesh gateways are reachable.
    Gateways {
        #[serde(rename = "Addresses")]
        addresses: Vec<String>,
    },
    Heartbeat,
    /// The sender deleted the peering.
    Terminate,
    /// The SHA-256 fingerprint of the sender's mesh gateway certificate,
    /// sent when a session opens and whenever the certificate is renewed,
    /// so the receiver's pin (the link identity's identifier) follows.
    GatewayCertificate {
        #[serde(rename = "Fingerprint")]
        fingerprint: String,
    },
}

mod schemas {
    //! The request bodies' key schemas (see [`crate::consul_json`]).
    use crate::consul_json::{field, value, ConsulBody, Schema, Shape};

    use super::{EstablishRequest, TokenRequest};

    const TOKEN_REQUEST: Schema = Schema::closed(&[
        value("PeerName"),
        value("Partition"),
        field("Meta", Shape::Map),
        value("ServerExternalAddresses"),
        value("AuthGroups"),
    ]);

    const ESTABLISH_REQUEST: Schema = Schema::closed(&[
        value("PeerName"),
        value("PeeringToken"),
        value("Partition"),
        field("Meta", Shape::Map),
        value("AuthGroups"),
    ]);

    impl ConsulBody for TokenRequest {
        const SCHEMA: &'static Schema = &TOKEN_REQUEST;
    }

    impl ConsulBody for EstablishRequest {
        const SCHEMA: &'static Schema = &ESTABLISH_REQUEST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_names_follow_consul_plus_underscores() {
        assert!(validate_peer_name("cluster-02").is_ok());
        assert!(validate_peer_name("cluster_b").is_ok());
        for bad in ["", "Cluster", "-a", "a-", "a.b", &"a".repeat(64)] {
            let err = validate_peer_name(bad).unwrap_err();
            assert!(err.contains("is not a valid peer name"), "{err}");
        }
    }

    #[test]
    fn server_addresses() {
        assert!(valid_server_address("127.0.0.1:8443"));
        assert!(valid_server_address("gw.example.com:443"));
        assert!(valid_server_address("[::1]:8443"));
        for bad in ["0.0.0.0:8443", "[::]:1", "host", "host:0", "host:x", ":1"] {
            assert!(!valid_server_address(bad), "{bad}");
        }
    }

    #[test]
    fn garbage_tokens_are_refused_with_a_reason() {
        assert!(PeeringToken::decode("not base64!")
            .unwrap_err()
            .0
            .starts_with("peering token is malformed"));
        let not_json = base64::engine::general_purpose::STANDARD.encode("{");
        assert!(PeeringToken::decode(&not_json)
            .unwrap_err()
            .0
            .starts_with("peering token is malformed"));
    }

    #[test]
    fn stream_messages_are_tagged() {
        let json = serde_json::to_string(&StreamMessage::Heartbeat).unwrap();
        assert_eq!(json, r#"{"Type":"Heartbeat"}"#);
        let open: StreamMessage =
            serde_json::from_str(r#"{"Type":"Open","PeerID":"p","StreamSecret":"s"}"#).unwrap();
        assert_eq!(
            open,
            StreamMessage::Open {
                peer_id: "p".into(),
                stream_secret: "s".into()
            }
        );
    }
}
