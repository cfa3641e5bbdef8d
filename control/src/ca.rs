//! The cluster's certificate authority.
//!
//! One ECDSA P-256 root per cluster, generated on first start and kept in the
//! store, signs short-lived service leaf certificates whose URI SAN is the
//! service's SPIFFE ID. Leaves are cached per service and reissued once two
//! thirds of their life has passed, so a watcher blocked on a leaf is woken
//! with a fresh one in time to swap it in. The mesh gateway certificate is
//! renewed the same way, live ([`keep_gateway_renewed`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use isthmus_api::ca::{colon_hex, CaRoot, CaRoots, LeafCert};
use isthmus_api::naming::SpiffeId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::store::{Reads, Store, StoreError, Table, Txn};

const ROOT_KEY: &str = "ca/root";
const GATEWAY_KEY: &str = "ca/gateway";
// The mesh gateways' shared certificate lives `gateway_ttl` (the agent's
// `gateway_cert_ttl`) and is reissued, live, once two thirds of its life
// have passed; peers learn the new fingerprint over the replication stream.

/// How long to wait before retrying a renewal that failed.
const GATEWAY_RENEW_RETRY: Duration = Duration::from_secs(10);
/// The shortest wait between two renewals.
const GATEWAY_RENEW_MIN_WAIT: Duration = Duration::from_millis(100);
const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Tolerates small clock differences between the issuer and verifiers.
const BACKDATE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("stored CA root is unusable: {0}")]
    BadRoot(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The root as persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRoot {
    cert_pem: String,
    key_pem: String,
    serial: u64,
    not_before: String,
    not_after: String,
    create_index: u64,
}

/// The certificate every mesh gateway of the cluster presents, as server to
/// peers dialing in and as client when this cluster dials a peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayCert {
    pub cert_pem: String,
    pub key_pem: String,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    /// RFC 3339.
    pub not_after: String,
    /// When it was issued, RFC 3339 (its `notBefore` is backdated a little);
    /// absent from certificates stored by older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<String>,
}

impl GatewayCert {
    /// When two thirds of its life have passed (without a known start: a
    /// third of `ttl` before it expires).
    fn renew_at(&self, ttl: Duration) -> OffsetDateTime {
        let parse = |t: &str| OffsetDateTime::parse(t, &Rfc3339).ok();
        let Some(not_after) = parse(&self.not_after) else {
            return OffsetDateTime::UNIX_EPOCH;
        };
        let lifetime = self
            .issued_at
            .as_deref()
            .and_then(parse)
            .map(|issued_at| not_after - issued_at)
            .unwrap_or_else(|| time::Duration::try_from(ttl).unwrap_or(time::Duration::ZERO));
        not_after - lifetime / 3
    }
}

pub struct CertificateAuthority {
    /// Replaced whole when renewed; never held across an await.
    gateway: RwLock<Arc<GatewayCert>>,
    gateway_ttl: Duration,
    trust_domain: String,
    datacenter: String,
    leaf_ttl: Duration,
    root: CaRoot,
    issuer: Issuer<'static, KeyPair>,
    leaves: Mutex<HashMap<String, Arc<IssuedLeaf>>>,
}

/// A leaf and when it should be replaced.
pub struct IssuedLeaf {
    pub cert: LeafCert,
    pub renew_at: tokio::time::Instant,
}

fn random_serial() -> [u8; 16] {
    let mut bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[0] &= 0x7f; // keep the DER integer positive
    bytes
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("UTC timestamps always format")
}

impl CertificateAuthority {
    /// Loads the root from the store, or generates and stores one inside `txn`.
    pub fn load_or_create(
        txn: &mut Txn,
        trust_domain: &str,
        datacenter: &str,
        leaf_ttl: Duration,
        gateway_ttl: Duration,
    ) -> Result<CertificateAuthority, CaError> {
        let stored = match txn.get::<StoredRoot>(Table::Meta, ROOT_KEY)? {
            Some(stored) => stored,
            None => {
                let stored = generate_root(trust_domain, datacenter, txn.index())?;
                txn.put(Table::Meta, ROOT_KEY, &stored)?;
                stored
            }
        };
        let key =
            KeyPair::from_pem(&stored.key_pem).map_err(|e| CaError::BadRoot(e.to_string()))?;
        let signing_key_id = {
            let params = CertificateParams::default();
            colon_hex(&params.key_identifier(&key))
        };
        let issuer = Issuer::from_ca_cert_pem(&stored.cert_pem, key)
            .map_err(|e| CaError::BadRoot(e.to_string()))?;
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(stored.cert_pem.as_bytes())
            .map(|d: rustls_pki_types::CertificateDer<'static>| d)
            .map_err(|e| CaError::BadRoot(e.to_string()))?;
        let root = CaRoot {
            id: colon_hex(&Sha256::digest(der.as_ref())),
            name: format!("isthmus CA {datacenter}"),
            serial_number: stored.serial,
            signing_key_id,
            external_trust_domain: trust_domain.to_owned(),
            not_before: stored.not_before.clone(),
            not_after: stored.not_after.clone(),
            root_cert: stored.cert_pem.clone(),
            intermediate_certs: Vec::new(),
            active: true,
            private_key_type: "ec".into(),
            private_key_bits: 256,
            create_index: stored.create_index,
            modify_index: stored.create_index,
        };
        let gateway = match txn.get::<GatewayCert>(Table::Meta, GATEWAY_KEY)? {
            Some(existing) if existing.renew_at(gateway_ttl) > OffsetDateTime::now_utc() => {
                existing
            }
            _ => {
                let fresh = issue_gateway(&issuer, trust_domain, datacenter, gateway_ttl)?;
                txn.put(Table::Meta, GATEWAY_KEY, &fresh)?;
                fresh
            }
        };
        Ok(CertificateAuthority {
            gateway: RwLock::new(Arc::new(gateway)),
            gateway_ttl,
            trust_domain: trust_domain.to_owned(),
            datacenter: datacenter.to_owned(),
            leaf_ttl,
            root,
            issuer,
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The mesh gateway certificate in force now.
    pub fn gateway_cert(&self) -> Arc<GatewayCert> {
        self.gateway
            .read()
            .expect("gateway certificate lock poisoned")
            .clone()
    }

    /// How long until the gateway certificate is due for renewal.
    pub fn gateway_renew_in(&self) -> Duration {
        let due = self.gateway_cert().renew_at(self.gateway_ttl) - OffsetDateTime::now_utc();
        Duration::try_from(due).unwrap_or(Duration::ZERO)
    }

    /// Issues a new gateway certificate inside `txn` (so the store's index
    /// moves and the gateways' view queries wake) and puts it in force.
    /// It is in force before the commit, so whoever wakes sees it.
    pub fn renew_gateway(&self, txn: &mut Txn) -> Result<Arc<GatewayCert>, CaError> {
        let fresh = Arc::new(issue_gateway(
            &self.issuer,
            &self.trust_domain,
            &self.datacenter,
            self.gateway_ttl,
        )?);
        txn.put(Table::Meta, GATEWAY_KEY, &*fresh)?;
        *self
            .gateway
            .write()
            .expect("gateway certificate lock poisoned") = fresh.clone();
        Ok(fresh)
    }

    /// This cluster's root certificates (PEM).
    pub fn root_pems(&self) -> Vec<String> {
        vec![self.root.root_cert.clone()]
    }

    pub fn roots(&self) -> CaRoots {
        CaRoots {
            active_root_id: self.root.id.clone(),
            trust_domain: self.trust_domain.clone(),
            roots: vec![self.root.clone()],
        }
    }

    /// The roots' modify index, for blocking queries on them.
    pub fn roots_index(&self) -> u64 {
        self.root.modify_index.max(1)
    }

    /// The current leaf for `service`, issuing a new one if there is none or
    /// the cached one is due for renewal. `index` is the store index to stamp
    /// on a newly issued leaf.
    pub fn leaf(&self, service: &str, index: u64) -> Result<Arc<IssuedLeaf>, CaError> {
        let now = tokio::time::Instant::now();
        if let Some(existing) = self.cached_leaf(service) {
            if existing.renew_at > now {
                return Ok(existing);
            }
        }
        // Issue outside the lock; if two callers race, both leaves are valid
        // and the later one wins the cache.
        let previous_index = self
            .cached_leaf(service)
            .map(|l| l.cert.modify_index)
            .unwrap_or(0);
        let issued = Arc::new(self.issue_leaf(service, index.max(previous_index + 1))?);
        self.leaves
            .lock()
            .expect("leaf cache lock poisoned")
            .insert(service.to_owned(), issued.clone());
        Ok(issued)
    }

    pub fn cached_leaf(&self, service: &str) -> Option<Arc<IssuedLeaf>> {
        self.leaves
            .lock()
            .expect("leaf cache lock poisoned")
            .get(service)
            .cloned()
    }

    fn issue_leaf(&self, service: &str, index: u64) -> Result<IssuedLeaf, CaError> {
        let spiffe = SpiffeId::service(&self.trust_domain, &self.datacenter, service).to_string();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let serial = random_serial();
        let now = OffsetDateTime::now_utc();
        let not_before = now - BACKDATE;
        let not_after = now + self.leaf_ttl;

        let params = end_entity_params(
            service,
            vec![SanType::URI(spiffe.clone().try_into()?)],
            &serial,
            not_before,
            not_after,
        );
        let cert = params.signed_by(&key, &self.issuer)?;

        let renew_after = self.leaf_ttl.mul_f64(2.0 / 3.0);
        Ok(IssuedLeaf {
            cert: LeafCert {
                serial_number: colon_hex(&serial),
                cert_pem: cert.pem(),
                private_key_pem: key.serialize_pem(),
                service: service.to_owned(),
                service_uri: spiffe,
                valid_after: rfc3339(not_before),
                valid_before: rfc3339(not_after),
                create_index: index,
                modify_index: index,
            },
            renew_at: tokio::time::Instant::now() + renew_after,
        })
    }
}

/// A server certificate for the agent's HTTPS API.
pub struct ApiCert {
    pub cert_pem: String,
    pub key_pem: String,
    /// When to replace it: two thirds into its life.
    pub renew_at: tokio::time::Instant,
}

impl CertificateAuthority {
    /// Issues a server certificate for the HTTPS API naming `dns_names` and
    /// `ips`, living as long as a service leaf (`leaf_cert_ttl`).
    pub fn issue_api_cert(
        &self,
        node_name: &str,
        dns_names: &[String],
        ips: &[std::net::IpAddr],
    ) -> Result<ApiCert, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let now = OffsetDateTime::now_utc();
        let mut sans = Vec::new();
        for name in dns_names {
            sans.push(SanType::DnsName(name.clone().try_into()?));
        }
        sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let params = end_entity_params(
            &format!("isthmus agent {node_name}"),
            sans,
            &random_serial(),
            now - BACKDATE,
            now + self.leaf_ttl,
        );
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ApiCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            renew_at: tokio::time::Instant::now() + self.leaf_ttl.mul_f64(2.0 / 3.0),
        })
    }
}

/// A certificate for mutual TLS between mesh components: not a CA, usable
/// as both server and client, tied to its issuer by key identifier.
fn end_entity_params(
    common_name: &str,
    subject_alt_names: Vec<SanType>,
    serial: &[u8],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names = subject_alt_names;
    params.serial_number = Some(SerialNumber::from_slice(serial));
    params.not_before = not_before;
    params.not_after = not_after;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params
}

fn issue_gateway(
    issuer: &Issuer<'static, KeyPair>,
    trust_domain: &str,
    datacenter: &str,
    ttl: Duration,
) -> Result<GatewayCert, CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let now = OffsetDateTime::now_utc();
    let not_after = now + ttl;
    let spiffe = SpiffeId::MeshGateway {
        trust_domain: trust_domain.to_owned(),
        datacenter: datacenter.to_owned(),
    };
    let sans = vec![
        SanType::DnsName(isthmus_api::peering::server_name(datacenter, trust_domain).try_into()?),
        SanType::URI(spiffe.to_string().try_into()?),
    ];
    let params = end_entity_params(
        &format!("isthmus mesh gateway {datacenter}"),
        sans,
        &random_serial(),
        now - BACKDATE,
        not_after,
    );
    let cert = params.signed_by(&key, issuer)?;
    Ok(GatewayCert {
        fingerprint: isthmus_api::tls::fingerprint(cert.der()),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after: rfc3339(not_after),
        issued_at: Some(rfc3339(now)),
    })
}

fn generate_root(trust_domain: &str, datacenter: &str, index: u64) -> Result<StoredRoot, CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let serial_bytes = random_serial();
    let serial = u64::from_be_bytes(serial_bytes[..8].try_into().expect("8 bytes"));
    let now = OffsetDateTime::now_utc();
    let not_before = now - BACKDATE;
    let not_after = now + ROOT_LIFETIME;

    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("isthmus CA {datacenter}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "isthmus");
    params.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
    params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
    params.not_before = not_before;
    params.not_after = not_after;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok(StoredRoot {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        serial,
        not_before: rfc3339(not_before),
        not_after: rfc3339(not_after),
        create_index: index,
    })
}

/// Loads the CA in its own write transaction (used at start-up).
pub fn open(
    store: &Store,
    trust_domain: &str,
    datacenter: &str,
    leaf_ttl: Duration,
    gateway_ttl: Duration,
) -> Result<CertificateAuthority, CaError> {
    store.write_blocking(|txn| {
        CertificateAuthority::load_or_create(txn, trust_domain, datacenter, leaf_ttl, gateway_ttl)
    })
}

/// Renews the mesh gateway certificate whenever it is due, for as long as
/// the agent runs: the gateways pick it up from their view, peers from the
/// replication stream.
pub async fn keep_gateway_renewed(
    store: Store,
    ca: Arc<CertificateAuthority>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        // Never back to back, whatever the clock says.
        let wait = ca.gateway_renew_in().max(GATEWAY_RENEW_MIN_WAIT);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let renewing = ca.clone();
        let renewed = store.write(move |txn| renewing.renew_gateway(txn)).await;
        match renewed {
            Ok(cert) => tracing::info!(
                fingerprint = %cert.fingerprint,
                not_after = %cert.not_after,
                "renewed the mesh gateway certificate"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "renewing the mesh gateway certificate failed; retrying");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(GATEWAY_RENEW_RETRY) => {}
                }
            }
        }
    }
}

/// Keeps this agent's gateway certificate the one in the store: the
/// leader renews it, every agent serves it to its gateways.
pub async fn follow_gateway_cert(
    store: Store,
    ca: Arc<CertificateAuthority>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let key = [crate::store::WatchKey::Key(Table::Meta, GATEWAY_KEY.into())];
    loop {
        let index = store.index();
        match store
            .snapshot()
            .and_then(|s| s.get::<GatewayCert>(Table::Meta, GATEWAY_KEY))
        {
            Ok(Some(stored)) if stored.fingerprint != ca.gateway_cert().fingerprint => {
                tracing::info!(fingerprint = %stored.fingerprint, "serving the cluster's renewed mesh gateway certificate");
                *ca.gateway
                    .write()
                    .expect("gateway certificate lock poisoned") = Arc::new(stored);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading the mesh gateway certificate failed"),
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = store.wait_for_change(&key, index, deadline) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TD: &str = "11111111-2222-3333-4444-555555555555.isthmus";

    fn open_with(store: &Store, gateway_ttl: Duration) -> CertificateAuthority {
        open(store, TD, "dc1", Duration::from_secs(3600), gateway_ttl).unwrap()
    }

    #[test]
    fn the_gateway_certificate_is_renewed_at_two_thirds_and_kept_in_the_store() {
        let store = Store::in_memory().unwrap();
        let ca = open_with(&store, Duration::from_secs(30));
        let first = ca.gateway_cert();
        let renew_in = ca.gateway_renew_in();
        assert!(
            renew_in > Duration::from_secs(18) && renew_in <= Duration::from_secs(21),
            "{renew_in:?}"
        );
        // Not due yet: a restart keeps it.
        assert_eq!(
            open_with(&store, Duration::from_secs(30))
                .gateway_cert()
                .fingerprint,
            first.fingerprint
        );

        let renewed = store.write_blocking(|txn| ca.renew_gateway(txn)).unwrap();
        assert_ne!(renewed.fingerprint, first.fingerprint);
        assert_eq!(ca.gateway_cert().fingerprint, renewed.fingerprint);
        let stored: GatewayCert = store
            .snapshot()
            .unwrap()
            .get(Table::Meta, GATEWAY_KEY)
            .unwrap()
            .unwrap();
        assert_eq!(stored.fingerprint, renewed.fingerprint);
    }

    #[test]
    fn a_stored_certificate_past_two_thirds_is_replaced_at_start() {
        let store = Store::in_memory().unwrap();
        let first = open_with(&store, Duration::from_secs(3)).gateway_cert();
        // Its life is 3s: two thirds of it (2s) are spent after 2s.
        let due =
            OffsetDateTime::parse(&first.not_after, &Rfc3339).unwrap() - time::Duration::seconds(1);
        assert!(first.renew_at(Duration::from_secs(3)) <= due);
        let mut old = (*first).clone();
        old.issued_at = None;
        old.not_after = rfc3339(OffsetDateTime::now_utc() + Duration::from_secs(10));
        store
            .write_blocking(|txn| txn.put(Table::Meta, GATEWAY_KEY, &old))
            .unwrap();
        // Without a known start, a third of the TTL before expiry: 10s left
        // of a 1h TTL is past due.
        let reopened = open_with(&store, Duration::from_secs(3600)).gateway_cert();
        assert_ne!(reopened.fingerprint, old.fingerprint);
    }
}
