//! Acceptor side: generate a peering token, and trade its single-use
//! establishment secret for a stream secret when the dialer calls in.

use std::sync::Arc;

use isthmus_api::auth;
use isthmus_api::peering::{
    self as api, ExchangeRequest, ExchangeResponse, PeerInfo, PeeringToken, Remote, TokenRequest,
};
use isthmus_api::peering_limits::{self, AddressPolicy};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::context::PeeringContext;
use super::error::PeeringError;
use super::{hash_secret, new_secret, secret_matches, PeeringRecord, PendingSecret, Role};
use crate::store::{Reads, StoreError, Table};

/// Fails unless every group exists (the built-in one always does).
pub fn check_groups(r: &impl Reads, groups: &[String]) -> Result<(), PeeringError> {
    for group in groups {
        if group != auth::BUILTIN_PEERING_GROUP
            && r.get::<auth::Group>(Table::AuthGroups, group)?.is_none()
        {
            return Err(PeeringError::UnknownGroups);
        }
    }
    Ok(())
}

/// Groups for a new identity: as given, or the built-in peering group.
pub fn groups_or_default(groups: Vec<String>) -> Vec<String> {
    if groups.is_empty() {
        vec![auth::BUILTIN_PEERING_GROUP.to_owned()]
    } else {
        groups
    }
}

/// Which gateway addresses a peer may name: loopback only when this
/// cluster's own mesh gateways are on loopback (tests, `agent --dev`, the
/// demo). See [`isthmus_api::peering_limits`].
pub fn address_policy(peering: &PeeringContext) -> Result<AddressPolicy, StoreError> {
    let own = super::gateway_addresses(&peering.store.snapshot()?)?;
    Ok(AddressPolicy {
        allow_loopback: peering_limits::all_loopback(&own),
    })
}

/// Peering `Meta` from the API: Consul's limits for service meta.
pub fn validate_meta(
    meta: &std::collections::BTreeMap<String, String>,
) -> Result<(), PeeringError> {
    peering_limits::validate_meta("Meta", meta).map_err(|e| {
        tracing::info!(error = %e, "refused peering Meta");
        PeeringError::Invalid(e)
    })
}

/// What a peer says about itself when establishing (either side): names
/// that end up in SNIs and SPIFFE IDs, and the gateway addresses we would
/// dial, checked before anything is stored.
pub fn validate_peer_info(info: &PeerInfo, policy: AddressPolicy) -> Result<(), PeeringError> {
    let bad = |e: String| {
        tracing::info!(error = %e, cluster = %info.cluster_name, "refused the peer's description of itself");
        PeeringError::Invalid(e)
    };
    isthmus_api::naming::validate_dns_label("peer cluster name", &info.cluster_name)
        .map_err(bad)?;
    if !peering_limits::valid_hostname(&info.trust_domain) {
        return Err(bad(format!(
            "peer trust domain {:?} is not a valid DNS name",
            info.trust_domain
        )));
    }
    if !info.peer_name.is_empty() {
        api::validate_peer_name(&info.peer_name).map_err(bad)?;
    }
    if info.ca_pems.len() > 16 {
        return Err(bad(format!(
            "the peer sent {} CA certificates (limit: 16)",
            info.ca_pems.len()
        )));
    }
    peering_limits::validate_gateway_addresses(&info.gateway_addresses, policy).map_err(bad)
}

pub fn validate_partition(partition: &Option<String>) -> Result<(), PeeringError> {
    match partition.as_deref() {
        None | Some("") | Some("default") => Ok(()),
        Some(other) => Err(PeeringError::Invalid(format!(
            "Partition {other:?} is not supported: isthmus peers default partitions only"
        ))),
    }
}

/// This cluster as it describes itself to a peer; `peer_name` is our name
/// for that peer.
pub fn own_info(
    peering: &PeeringContext,
    r: &impl Reads,
    peering_id: &str,
    peer_name: &str,
) -> Result<PeerInfo, StoreError> {
    Ok(PeerInfo {
        cluster_name: peering.cluster.name.clone(),
        trust_domain: peering.cluster.trust_domain.clone(),
        peering_id: peering_id.to_owned(),
        ca_pems: peering.ca.root_pems(),
        gateway_addresses: super::gateway_addresses(r)?,
        gateway_fingerprint: peering.ca.gateway_cert().fingerprint.clone(),
        peer_name: peer_name.to_owned(),
    })
}

/// `POST /v1/peering/token`.
pub async fn generate(
    peering: Arc<PeeringContext>,
    request: TokenRequest,
) -> Result<String, PeeringError> {
    if request.peer_name.is_empty() {
        return Err(PeeringError::Invalid(
            "PeerName is required in the payload when generating a new peering token.".into(),
        ));
    }
    api::validate_peer_name(&request.peer_name).map_err(PeeringError::Invalid)?;
    validate_partition(&request.partition)?;
    validate_meta(&request.meta)?;
    if request.server_external_addresses.len() > peering_limits::MAX_GATEWAY_ADDRESSES {
        return Err(PeeringError::Invalid(format!(
            "ServerExternalAddresses: at most {} addresses",
            peering_limits::MAX_GATEWAY_ADDRESSES
        )));
    }
    for addr in &request.server_external_addresses {
        if !api::valid_server_address(addr) {
            return Err(PeeringError::Invalid(format!(
                "{addr} is not a valid peering server address"
            )));
        }
    }
    let addresses = if request.server_external_addresses.is_empty() {
        super::gateway_addresses(&peering.store.snapshot()?)?
    } else {
        request.server_external_addresses.clone()
    };
    if addresses.is_empty() {
        return Err(PeeringError::NoMeshGateway {
            cluster: peering.cluster.name.clone(),
        });
    }

    let secret = new_secret();
    let expires_at = (OffsetDateTime::now_utc() + peering.manager.token_ttl)
        .format(&Rfc3339)
        .expect("timestamps format");
    let pending = PendingSecret {
        hash: hash_secret(&secret),
        expires_at: expires_at.clone(),
    };
    let explicit_groups = !request.auth_groups.is_empty();
    let groups = groups_or_default(request.auth_groups.clone());
    let name = request.peer_name.clone();
    let meta = request.meta.clone();
    let record = peering
        .store
        .write(move |txn| -> Result<PeeringRecord, PeeringError> {
            check_groups(txn, &groups)?;
            let record = match super::get(txn, &name)? {
                Some(existing) if existing.state == api::STATE_DELETING => {
                    return Err(PeeringError::BeingDeleted { name: name.clone() })
                }
                Some(existing)
                    if existing.role == Role::Dialer && existing.state != api::STATE_TERMINATED =>
                {
                    return Err(PeeringError::AlreadyDialed { name: name.clone() })
                }
                Some(existing) if existing.role == Role::Acceptor => {
                    let record = renew_acceptor(
                        existing,
                        pending.clone(),
                        explicit_groups.then_some(groups.clone()),
                        meta.clone(),
                    );
                    validate_meta(&record.meta)?;
                    record
                }
                _ => new_acceptor(&name, pending.clone(), groups.clone(), meta.clone()),
            };
            Ok(super::put(txn, record)?)
        })
        .await?;
    tracing::info!(peer = %record.name, expires_at = %expires_at, "peering token generated");

    let token = PeeringToken {
        ca: peering.ca.root_pems(),
        manual_server_addresses: !request.server_external_addresses.is_empty(),
        server_addresses: addresses,
        server_name: api::server_name(&peering.cluster.name, &peering.cluster.trust_domain),
        peer_id: record.id,
        establishment_secret: secret,
        remote: Remote {
            partition: "default".into(),
            datacenter: peering.cluster.name.clone(),
        },
        gateway_fingerprint: peering.ca.gateway_cert().fingerprint.clone(),
        expires_at,
    };
    Ok(token.encode())
}

fn new_acceptor(
    name: &str,
    pending: PendingSecret,
    groups: Vec<String>,
    meta: std::collections::BTreeMap<String, String>,
) -> PeeringRecord {
    PeeringRecord {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        role: Role::Acceptor,
        state: api::STATE_PENDING.into(),
        meta,
        deleted_at: None,
        peer_id: String::new(),
        peer_server_name: String::new(),
        peer_server_addresses: Vec::new(),
        peer_ca_pems: Vec::new(),
        peer_trust_domain: String::new(),
        peer_gateway_fingerprint: String::new(),
        remote: Remote::default(),
        groups,
        name_at_peer: String::new(),
        establishment: Some(pending),
        stream_secret: None,
        create_index: 0,
        modify_index: 0,
    }
}

/// A new token for an existing acceptor peering: the older secret stops
/// working; an active stream carries on. A terminated one starts over.
fn renew_acceptor(
    mut record: PeeringRecord,
    pending: PendingSecret,
    groups: Option<Vec<String>>,
    meta: std::collections::BTreeMap<String, String>,
) -> PeeringRecord {
    record.establishment = Some(pending);
    if let Some(groups) = groups {
        record.groups = groups;
    }
    record.meta.extend(meta);
    if record.state == api::STATE_TERMINATED {
        record.state = api::STATE_PENDING.into();
        record.peer_trust_domain.clear();
        record.peer_gateway_fingerprint.clear();
        record.peer_ca_pems.clear();
        record.peer_id.clear();
        record.stream_secret = None;
    }
    record
}

/// The acceptor peering `record` has a pending establishment secret equal
/// to `secret`, not expired and not being deleted.
fn check_establishment(record: Option<&PeeringRecord>, secret: &str) -> Result<(), PeeringError> {
    let pending = record
        .filter(|r| r.role == Role::Acceptor && r.state != api::STATE_DELETING)
        .and_then(|r| r.establishment.as_ref());
    let Some(pending) = pending else {
        return Err(PeeringError::InvalidEstablishmentSecret);
    };
    if !secret_matches(secret, &pending.hash) {
        return Err(PeeringError::InvalidEstablishmentSecret);
    }
    if expired(&pending.expires_at) {
        return Err(PeeringError::EstablishmentSecretExpired);
    }
    Ok(())
}

fn expired(expires_at: &str) -> bool {
    OffsetDateTime::parse(expires_at, &Rfc3339).map_or(true, |t| t <= OffsetDateTime::now_utc())
}

/// `POST /v1/internal/peering/exchange`, forwarded by our gateway with the
/// SHA-256 of the caller's client certificate.
pub async fn exchange(
    peering: Arc<PeeringContext>,
    client_fingerprint: String,
    request: ExchangeRequest,
) -> Result<ExchangeResponse, PeeringError> {
    let dialer = request.dialer.clone();
    if dialer.trust_domain.is_empty()
        || dialer.cluster_name.is_empty()
        || dialer.peering_id.is_empty()
    {
        return Err(PeeringError::Invalid(
            "exchange request is missing the dialer's identity".into(),
        ));
    }
    if dialer.trust_domain == peering.cluster.trust_domain {
        return Err(PeeringError::Invalid(
            "cannot create a peering within the same cluster".into(),
        ));
    }
    isthmus_api::tls::root_store(&dialer.ca_pems)
        .map_err(|e| PeeringError::Invalid(format!("dialer CA is unusable: {e}")))?;
    if dialer.ca_pems.is_empty() {
        return Err(PeeringError::Invalid(
            "dialer CA is unusable: no certificates".into(),
        ));
    }
    if dialer.gateway_fingerprint != client_fingerprint {
        return Err(PeeringError::NotTheDialersGateway);
    }
    // The secret is checked against a read snapshot first: a wrong or
    // replayed secret never takes the store's write lock. The write below
    // checks again, against the state it changes.
    {
        let snapshot = peering.store.snapshot()?;
        let record = super::find_by_id(&snapshot, &request.peer_id)?;
        check_establishment(record.as_ref(), &request.establishment_secret)?;
    }
    validate_peer_info(&dialer, address_policy(&peering)?)?;
    let stream_secret = new_secret();
    let stream_hash = hash_secret(&stream_secret);
    let (record, acceptor) = peering
        .store
        .write({
            let peering = peering.clone();
            move |txn| -> Result<(PeeringRecord, PeerInfo), PeeringError> {
                let found = super::find_by_id(txn, &request.peer_id)?;
                check_establishment(found.as_ref(), &request.establishment_secret)?;
                let mut record = found.expect("checked");
                let duplicate = super::list(txn)?.into_iter().any(|other| {
                    other.name != record.name
                        && other.peer_trust_domain == dialer.trust_domain
                        && other.state != api::STATE_TERMINATED
                });
                if duplicate {
                    return Err(PeeringError::AlreadyLinked);
                }
                record.state = api::STATE_ESTABLISHING.into();
                record.establishment = None;
                record.stream_secret = Some(stream_hash.clone());
                record.peer_id = dialer.peering_id.clone();
                record.peer_trust_domain = dialer.trust_domain.clone();
                record.peer_ca_pems = dialer.ca_pems.clone();
                record.peer_gateway_fingerprint = dialer.gateway_fingerprint.clone();
                record.peer_server_addresses = dialer.gateway_addresses.clone();
                record.peer_server_name =
                    api::server_name(&dialer.cluster_name, &dialer.trust_domain);
                record.name_at_peer = dialer.peer_name.clone();
                record.remote = Remote {
                    partition: "default".into(),
                    datacenter: dialer.cluster_name.clone(),
                };
                let info = own_info(&peering, txn, &record.id, &record.name)?;
                Ok((super::put(txn, record)?, info))
            }
        })
        .await?;
    tracing::info!(peer = %record.name, remote = %record.remote.datacenter, "peering established by the peer; waiting for its stream");
    Ok(ExchangeResponse {
        stream_secret,
        acceptor,
    })
}
