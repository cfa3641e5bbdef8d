//! What can go wrong when generating a token, establishing or deleting a
//! peering, said in the texts Consul's clients and our CLI show. The HTTP
//! layer decides the status of each.

use std::time::Duration;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PeeringError {
    /// The request or a description the peer sent fails validation (a
    /// missing or malformed field, an expired or foreign token).
    #[error("{0}")]
    Invalid(String),
    #[error("One or more groups were not found")]
    UnknownGroups,
    #[error("cannot generate a peering token: cluster {cluster} has no healthy mesh gateway registered; start isthmus-gateway (or pass ServerExternalAddresses)")]
    NoMeshGateway { cluster: String },
    #[error("peering {name:?} is being deleted")]
    BeingDeleted { name: String },
    /// A token asked for a name this cluster already dialed.
    #[error("cannot create peering with name: {name:?}; there is already an established peering")]
    AlreadyDialed { name: String },
    #[error("cannot establish peering {name:?}: a peering with that name already exists ({state}); delete it first")]
    NameTaken { name: String, state: String },
    /// Another peering already links this cluster with the peer's.
    #[error("A cluster link already exists between these clusters")]
    AlreadyLinked,
    #[error("a new peering token must be generated: invalid peering establishment secret")]
    InvalidEstablishmentSecret,
    #[error("peering token has expired")]
    EstablishmentSecretExpired,
    #[error("the client certificate is not the dialer's gateway certificate")]
    NotTheDialersGateway,
    #[error("gateway certificate unusable: {0}")]
    GatewayCertUnusable(String),
    #[error("could not reach a peering server address in the token: {0}")]
    PeerUnreachable(String),
    #[error("establishing peering {name:?}: no peering server answered within {after:?}")]
    ExchangeTimedOut { name: String, after: Duration },
    #[error("peering exchange failed: {0}")]
    ExchangeFailed(String),
    #[error("peer's exchange answer is malformed: {0}")]
    MalformedExchangeAnswer(String),
    /// The peer's agent refused the exchange (a client error), in its words.
    #[error("{0}")]
    PeerRefused(String),
    /// The peer's agent failed to answer the exchange (a server error).
    #[error("{0}")]
    PeerFailed(String),
    #[error(
        "the deletion of peering {name} was interrupted; it resumes when the agent next starts"
    )]
    DeletionInterrupted { name: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}
