//! Answers one DNS request: parses the question's name, reads one store
//! snapshot, writes the records and fits them to the transport. Never
//! waits on the store (no blocking queries over DNS).

use std::sync::Arc;

use hickory_proto::op::{Edns, Header, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::Name;
use hickory_proto::xfer::Protocol;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use isthmus_api::dns_name::{self, NameError};

use super::lookup::{self, Found};
use super::metrics::{DnsMetrics, Outcome};
use super::records::{Reply, Zone};
use super::sizing::{self, Transport};
use super::DnsConfig;
use crate::acl::AclResolver;
use crate::catalog::LocalNode;
use crate::store::Store;

/// The agent's DNS request handler.
pub struct DnsHandler {
    store: Store,
    node: LocalNode,
    config: Arc<DnsConfig>,
    domain: Name,
    metrics: DnsMetrics,
    /// DNS requests carry no token: they get the anonymous token's rights.
    acl: Arc<AclResolver>,
}

impl DnsHandler {
    pub fn new(
        store: Store,
        node: LocalNode,
        config: Arc<DnsConfig>,
        metrics: DnsMetrics,
        acl: Arc<AclResolver>,
    ) -> Result<DnsHandler, hickory_proto::ProtoError> {
        let domain = Name::from_ascii(format!("{}.", config.domain.trim_end_matches('.')))?;
        Ok(DnsHandler {
            store,
            node,
            config,
            domain,
            metrics,
            acl,
        })
    }

    fn zone(&self) -> Zone<'_> {
        Zone {
            config: &self.config,
            domain: self.domain.clone(),
            datacenter: &self.node.datacenter,
            node: &self.node.name,
            node_address: &self.node.address,
        }
    }

    /// The reply to one question (its code and records, before sizing).
    fn reply(&self, query: &Query) -> Reply {
        let zone = self.zone();
        let name = query.name();
        let lookup = match dns_name::parse(&name.to_ascii(), &self.config.domain) {
            Ok(lookup) => lookup,
            // Names elsewhere would need a recursor; the agent has none
            // and refuses them, as Consul without `recursors` does.
            Err(NameError::OutsideDomain(_)) => {
                return Reply {
                    code: ResponseCode::Refused,
                    ..Reply::default()
                }
            }
            Err(_) => return zone.reply(name, query.query_type(), Found::NoSuchName),
        };
        let authz = match self.acl.resolve(None) {
            Ok(authz) => authz,
            Err(error) => {
                tracing::warn!(%error, "dns: resolving the anonymous token");
                return Reply {
                    code: ResponseCode::ServFail,
                    ..Reply::default()
                };
            }
        };
        let found = self.store.snapshot().and_then(|snap| {
            lookup::find(&snap, &self.node, &lookup, self.config.only_passing, &authz)
        });
        match found {
            Ok(found) => zone.reply(name, query.query_type(), found),
            Err(error) => {
                tracing::warn!(%error, "dns: reading the store");
                Reply {
                    code: ResponseCode::ServFail,
                    ..Reply::default()
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let standard_query =
            request.message_type() == MessageType::Query && request.op_code() == OpCode::Query;
        let info = match request.request_info() {
            Ok(info) if standard_query => info,
            _ => {
                self.metrics.query(None, Outcome::Malformed);
                let code = if standard_query {
                    ResponseCode::FormErr
                } else {
                    ResponseCode::NotImp
                };
                let response = builder.error_msg(request.header(), code);
                return send(&mut response_handle, response, request.header()).await;
            }
        };
        let query = info.query.original().clone();
        let mut reply = self.reply(&query);
        let transport = Transport {
            udp: request.protocol() == Protocol::Udp,
            edns_payload: request.edns().map(|e| e.max_payload()),
        };
        let truncated = sizing::fit(&mut reply, &query, transport, &self.config);
        self.metrics.query(
            Some(query.query_type()),
            Outcome::of(reply.code, reply.answers.len()),
        );

        let mut header = Header::response_from_request(request.header());
        header.set_authoritative(reply.code != ResponseCode::Refused);
        header.set_recursion_available(false);
        header.set_response_code(reply.code);
        header.set_truncated(truncated);
        let mut builder = builder;
        if request.edns().is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(transport.max_bytes().min(usize::from(u16::MAX)) as u16);
            builder.edns(edns);
        }
        let response = builder.build(
            header,
            reply.answers.iter(),
            reply.authority.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        send(&mut response_handle, response, request.header()).await
    }
}

async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    response: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
    >,
    request: &Header,
) -> ResponseInfo {
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "dns: sending a reply");
            let mut header = Header::response_from_request(request);
            header.set_response_code(ResponseCode::ServFail);
            header.into()
        }
    }
}
