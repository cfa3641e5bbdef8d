//! Errors the HTTP API returns: a status and a plain-text message, as
//! Consul does, so curl users read the reason directly.
//!
//! The domain modules fail with their own typed errors, whose texts are
//! the ones clients see; this is the one place that decides which status
//! each of them answers with.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use isthmus_api::filter::FilterError;

use isthmus_api::acl::Denied;

use crate::acl::AclError;
use crate::agent_checks::AgentCheckError;
use crate::agent_lifecycle::LifecycleError;
use crate::auth::AuthError;
use crate::ca::CaError;
use crate::catalog::CatalogError;
use crate::catalog_nodes::CatalogNodeError;
use crate::intentions::IntentionError;
use crate::peering::PeeringError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        store_failure(e)
    }
}

impl From<CaError> for ApiError {
    fn from(e: CaError) -> ApiError {
        tracing::error!(error = %e, "CA failure");
        ApiError::internal(format!("internal error: {e}"))
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> ApiError {
        let status = match &e {
            CatalogError::Store(_) => return store_failure(e),
            CatalogError::InvalidRegistration(_)
            | CatalogError::CheckOwnedByAnotherService { .. } => StatusCode::BAD_REQUEST,
            CatalogError::UnknownService { .. } | CatalogError::UnknownCheck { .. } => {
                StatusCode::NOT_FOUND
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<AgentCheckError> for ApiError {
    fn from(e: AgentCheckError) -> ApiError {
        let status = match &e {
            AgentCheckError::Store(_) => return store_failure(e),
            AgentCheckError::InvalidCheck(_) => StatusCode::BAD_REQUEST,
            AgentCheckError::UnknownOwner { .. }
            | AgentCheckError::UnknownCheck { .. }
            | AgentCheckError::UnknownService { .. } => StatusCode::NOT_FOUND,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<CatalogNodeError> for ApiError {
    fn from(e: CatalogNodeError) -> ApiError {
        let status = match &e {
            CatalogNodeError::Store(_) => return store_failure(e),
            CatalogNodeError::Missing(_) | CatalogNodeError::LocalNode { .. } => {
                StatusCode::BAD_REQUEST
            }
            // Consul answers these from its RPC layer, with a 500.
            CatalogNodeError::NoPathToDatacenter
            | CatalogNodeError::CheckNodeMismatch { .. }
            | CatalogNodeError::MissingServiceRegistration => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> ApiError {
        match e {
            LifecycleError::Store(e) => e.into(),
            LifecycleError::Catalog(e) => e.into(),
            LifecycleError::Check(e) => e.into(),
            // Consul answers a failed reload from its agent with a 500.
            LifecycleError::Reload(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<IntentionError> for ApiError {
    fn from(e: IntentionError) -> ApiError {
        let status = match &e {
            IntentionError::Store(_) => return store_failure(e),
            // Config entry writes answer their validation failures with 400 here too.
            IntentionError::Invalid(_) => StatusCode::BAD_REQUEST,
            IntentionError::NotFound => StatusCode::NOT_FOUND,
            // Consul answers these from its RPC layer, with a 500.
            IntentionError::CannotModify(_)
            | IntentionError::CannotDelete(_)
            | IntentionError::NotLegacy(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let status = match &e {
            AuthError::Store(_) => return store_failure(e),
            AuthError::InvalidGroupName(_)
            | AuthError::InvalidPermission(_)
            | AuthError::BuiltinGroup { .. }
            | AuthError::UnknownGroups => StatusCode::BAD_REQUEST,
            AuthError::GroupExists { .. } | AuthError::PermissionPresent { .. } => {
                StatusCode::CONFLICT
            }
            AuthError::GroupNotFound { .. }
            | AuthError::PermissionAbsent { .. }
            | AuthError::IdentityNotFound { .. }
            | AuthError::NotInGroup { .. } => StatusCode::NOT_FOUND,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<PeeringError> for ApiError {
    fn from(e: PeeringError) -> ApiError {
        let status = match &e {
            PeeringError::Store(_) => return store_failure(e),
            PeeringError::Invalid(_)
            | PeeringError::UnknownGroups
            | PeeringError::NoMeshGateway { .. }
            | PeeringError::AlreadyDialed { .. }
            | PeeringError::PeerRefused(_) => StatusCode::BAD_REQUEST,
            PeeringError::BeingDeleted { .. }
            | PeeringError::NameTaken { .. }
            | PeeringError::AlreadyLinked => StatusCode::CONFLICT,
            PeeringError::InvalidEstablishmentSecret
            | PeeringError::EstablishmentSecretExpired
            | PeeringError::NotTheDialersGateway => StatusCode::FORBIDDEN,
            PeeringError::GatewayCertUnusable(_) => StatusCode::INTERNAL_SERVER_ERROR,
            PeeringError::PeerUnreachable(_)
            | PeeringError::ExchangeTimedOut { .. }
            | PeeringError::ExchangeFailed(_)
            | PeeringError::MalformedExchangeAnswer(_)
            | PeeringError::PeerFailed(_) => StatusCode::BAD_GATEWAY,
            PeeringError::DeletionInterrupted { .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

/// A `?filter=` expression that does not parse, or does not fit the data it
/// meets: Consul's 400 with its prefix (Consul finds the second kind when
/// it checks the expression against the response type; isthmus when it
/// first meets a value).
impl From<Denied> for ApiError {
    fn from(e: Denied) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, e.to_string())
    }
}

impl From<AclError> for ApiError {
    fn from(e: AclError) -> ApiError {
        match e {
            AclError::Store(_) => store_failure(e),
            AclError::TokenNotFound => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
            // Consul answers these with 500 (they come back from its RPC
            // layer untyped); they are the client's mistakes: 400.
            AclError::Invalid(_) => ApiError::bad_request(e.to_string()),
            AclError::NotFound(_) => ApiError::not_found(e.to_string()),
            AclError::BootstrapNotAllowed { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, format!("Permission denied: {e}"))
            }
        }
    }
}

impl From<FilterError> for ApiError {
    fn from(e: FilterError) -> ApiError {
        ApiError::bad_request(format!(
            "Failed to create boolean expression evaluator: {e}"
        ))
    }
}

/// A domain error that is the store's failure: answered as the store's own
/// (logged, 500). Their `Store` variants display the store error itself.
fn store_failure(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "store failure");
    ApiError::internal(format!("internal error: {e}"))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, message = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, message = %self.message, "request refused");
        }
        (
            self.status,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            self.message,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: impl Into<ApiError>) -> (StatusCode, String) {
        let e = e.into();
        (e.status, e.message)
    }

    #[test]
    fn domain_errors_answer_consuls_statuses_and_texts() {
        assert_eq!(
            answer(CatalogError::UnknownService { id: "web-1".into() }),
            (
                StatusCode::NOT_FOUND,
                "Unknown service ID \"web-1\". Ensure that the service ID is passed, not the service name.".into()
            )
        );
        assert_eq!(
            answer(CatalogError::InvalidRegistration(
                "Missing service name".into()
            )),
            (StatusCode::BAD_REQUEST, "Missing service name".into())
        );
        assert_eq!(
            answer(AgentCheckError::UnknownOwner {
                service_id: "db".into()
            }),
            (
                StatusCode::NOT_FOUND,
                "ServiceID \"db\" does not exist".into()
            )
        );
        assert_eq!(
            answer(CatalogNodeError::NoPathToDatacenter),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "No path to datacenter".into()
            )
        );
        assert_eq!(
            answer(AuthError::GroupExists { name: "ops".into() }),
            (StatusCode::CONFLICT, "Group \"ops\" already exists".into())
        );
        assert_eq!(
            answer(PeeringError::InvalidEstablishmentSecret),
            (
                StatusCode::FORBIDDEN,
                "a new peering token must be generated: invalid peering establishment secret"
                    .into()
            )
        );
        assert_eq!(
            answer(PeeringError::PeerRefused(
                "peering token has expired".into()
            )),
            (StatusCode::BAD_REQUEST, "peering token has expired".into())
        );
        assert_eq!(
            answer(PeeringError::ExchangeTimedOut {
                name: "east".into(),
                after: std::time::Duration::from_secs(5)
            }),
            (
                StatusCode::BAD_GATEWAY,
                "establishing peering \"east\": no peering server answered within 5s".into()
            )
        );
    }

    #[test]
    fn filter_errors_answer_400_with_consuls_prefix() {
        let e = isthmus_api::filter::Filter::parse("Service ==").unwrap_err();
        let (status, text) = answer(e);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            text.starts_with("Failed to create boolean expression evaluator: 1:11 (10): "),
            "{text}"
        );
    }

    #[test]
    fn a_domain_errors_store_failure_answers_as_the_stores_own() {
        let store = || StoreError::Task("gone".into());
        let direct = answer(store());
        assert_eq!(direct.0, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer(CatalogError::Store(store())), direct);
        assert_eq!(answer(AuthError::Store(store())), direct);
        assert_eq!(answer(PeeringError::Store(store())), direct);
    }
}
