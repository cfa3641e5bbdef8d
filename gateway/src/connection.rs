//! One peering connection as the gateway sees it: the client's certificate
//! chain, which peer it is (worked out against the current view and cached
//! per view generation), and its exchanges in progress.

use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

use isthmus_api::tls::verify_client_chain;

use crate::tls::ClientChain;
use crate::view::Snapshot;

/// Per-connection state: the client's chain and which peer it is, cached
/// per view generation (a new view may add or remove the peer).
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) chain: ClientChain,
    pub(crate) remote: std::net::SocketAddr,
    identity: Mutex<Option<(u64, Option<usize>)>>,
    /// Exchanges in progress on this connection.
    pub(crate) exchanges: AtomicUsize,
}

impl Connection {
    pub(crate) fn new(chain: ClientChain, remote: std::net::SocketAddr) -> Connection {
        Connection {
            chain,
            remote,
            identity: Mutex::new(None),
            exchanges: AtomicUsize::new(0),
        }
    }

    /// The index in `snapshot.view.peers` of the peer this client is.
    pub(crate) fn peer_index(&self, snapshot: &Snapshot) -> Option<usize> {
        if let Some((generation, index)) = *self.identity.lock().expect("identity lock") {
            if generation == snapshot.generation {
                return index;
            }
        }
        let index = identify(&self.chain, snapshot);
        *self.identity.lock().expect("identity lock") = Some((snapshot.generation, index));
        index
    }
}

/// The peer whose trust domain matches the certificate's SPIFFE ID and whose
/// roots the chain verifies against.
fn identify(chain: &ClientChain, snapshot: &Snapshot) -> Option<usize> {
    let trust_domain = chain.trust_domain()?;
    let mut peers = snapshot.view.peers.iter().zip(&snapshot.peer_roots);
    peers.position(|(peer, roots)| {
        if peer.trust_domain.is_empty() || !peer.trust_domain.eq_ignore_ascii_case(trust_domain) {
            return false;
        }
        let Some(roots) = roots else {
            return false;
        };
        match verify_client_chain(roots.clone(), &chain.end_entity, &chain.intermediates) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(peer = %peer.name, error = %e, "client chain does not verify against the peer's roots");
                false
            }
        }
    })
}
