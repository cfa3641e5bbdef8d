//! The records of a reply: what [`Found`] becomes for the question's type,
//! as Consul answers (A/AAAA of the instances, SRV with the targets'
//! addresses in the additional section, NXDOMAIN or NODATA with the
//! domain's SOA in the authority section).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use isthmus_api::dns_name::encode_addr;

use super::lookup::{Endpoint, Found};
use super::DnsConfig;

/// The zone a reply is written for.
pub struct Zone<'a> {
    pub config: &'a DnsConfig,
    /// `consul.` as a name.
    pub domain: Name,
    pub datacenter: &'a str,
    /// This agent's node and address: the domain's name server.
    pub node: &'a str,
    pub node_address: &'a str,
}

/// A reply before sizing.
#[derive(Debug, Default)]
pub struct Reply {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Zone<'_> {
    /// The reply to `qtype` at `qname` for what the name resolved to.
    pub fn reply(&self, qname: &Name, qtype: RecordType, found: Found) -> Reply {
        let mut reply = Reply::default();
        match found {
            Found::NoSuchName => reply.code = ResponseCode::NXDomain,
            Found::Apex => self.apex(&mut reply, qtype),
            Found::Addr(ip) => {
                reply.answers.extend(address_record(qname, ip, qtype, 0));
            }
            Found::Node { address, .. } => {
                let ttl = ttl_secs(self.config.node_ttl);
                if let Ok(ip) = address.parse() {
                    reply.answers.extend(address_record(qname, ip, qtype, ttl));
                }
            }
            Found::Endpoints(endpoints) if endpoints.is_empty() => {
                // Known, but nothing healthy to answer with: Consul says
                // NXDOMAIN.
                reply.code = ResponseCode::NXDomain;
            }
            Found::Endpoints(endpoints) => match qtype {
                RecordType::SRV => self.srv(&mut reply, qname, &endpoints),
                _ => {
                    let mut seen = BTreeSet::new();
                    for e in &endpoints {
                        let Ok(ip) = e.address.parse::<IpAddr>() else {
                            continue;
                        };
                        if seen.insert(ip) {
                            let ttl = ttl_secs(self.config.service_ttl(&e.service));
                            reply.answers.extend(address_record(qname, ip, qtype, ttl));
                        }
                    }
                }
            },
        }
        if reply.answers.is_empty() {
            reply.authority.push(self.soa());
        }
        reply
    }

    fn apex(&self, reply: &mut Reply, qtype: RecordType) {
        if matches!(qtype, RecordType::SOA | RecordType::ANY) {
            reply.answers.push(self.soa());
        }
        if matches!(qtype, RecordType::NS | RecordType::ANY) {
            let Ok(ns) = self.node_name(self.node) else {
                return;
            };
            reply.answers.push(Record::from_rdata(
                self.domain.clone(),
                ttl_secs(self.config.node_ttl),
                RData::NS(NS(ns.clone())),
            ));
            if let Ok(ip) = self.node_address.parse() {
                let ttl = ttl_secs(self.config.node_ttl);
                reply
                    .additionals
                    .extend(address_record(&ns, ip, RecordType::ANY, ttl));
            }
        }
    }

    /// One SRV per instance; its target is the node's name when the
    /// instance is at its node's address, else the address's `.addr.`
    /// name, with the target's address as an additional record.
    fn srv(&self, reply: &mut Reply, qname: &Name, endpoints: &[Endpoint]) {
        let mut targets = BTreeSet::new();
        for e in endpoints {
            let ttl = ttl_secs(self.config.service_ttl(&e.service));
            let ip = e.address.parse::<IpAddr>().ok();
            let target = match ip {
                Some(_) if e.address == e.node_address => self.node_name(&e.node),
                Some(ip) => self.addr_name(ip),
                // A host name is its own target (its addresses are not ours to give).
                None => Name::from_ascii(format!("{}.", e.address.trim_end_matches('.'))),
            };
            let Ok(target) = target else { continue };
            reply.answers.push(Record::from_rdata(
                qname.clone(),
                ttl,
                RData::SRV(SRV::new(1, 1, e.port, target.clone())),
            ));
            if let Some(ip) = ip {
                if targets.insert(target.clone()) {
                    reply
                        .additionals
                        .extend(address_record(&target, ip, RecordType::ANY, ttl));
                }
            }
        }
    }

    /// `<node>.node.<dc>.<domain>.`
    pub fn node_name(&self, node: &str) -> Result<Name, hickory_proto::ProtoError> {
        Name::from_ascii(format!("{node}.node.{}.", self.datacenter))?.append_domain(&self.domain)
    }

    fn addr_name(&self, ip: IpAddr) -> Result<Name, hickory_proto::ProtoError> {
        Name::from_ascii(format!("{}.addr.{}.", encode_addr(ip), self.datacenter))?
            .append_domain(&self.domain)
    }

    /// The domain's SOA, as Consul writes it (TTL and minimum 0).
    pub fn soa(&self) -> Record {
        let under = |label: &str| {
            Name::from_ascii(label)
                .and_then(|n| n.append_domain(&self.domain))
                .unwrap_or_else(|_| self.domain.clone())
        };
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        Record::from_rdata(
            self.domain.clone(),
            0,
            RData::SOA(SOA::new(
                under("ns"),
                under("hostmaster"),
                serial,
                3600,
                600,
                86400,
                0,
            )),
        )
    }
}

/// An A or AAAA record of `ip` if `qtype` asks for its family.
fn address_record(name: &Name, ip: IpAddr, qtype: RecordType, ttl: u32) -> Option<Record> {
    let rdata = match ip {
        IpAddr::V4(v4) if matches!(qtype, RecordType::A | RecordType::ANY) => RData::A(A(v4)),
        IpAddr::V6(v6) if matches!(qtype, RecordType::AAAA | RecordType::ANY) => {
            RData::AAAA(AAAA(v6))
        }
        _ => return None,
    };
    Some(Record::from_rdata(name.clone(), ttl, rdata))
}

fn ttl_secs(ttl: Duration) -> u32 {
    u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX)
}
