//! Fitting a reply to its transport: Consul's answer caps
//! (`a_record_limit`, and `udp_answer_limit` for UDP without EDNS), then
//! the size limit (512 bytes over UDP, or what EDNS allows, at most 4096;
//! 65535 over TCP). A reply cut to fit has the TC bit set, so resolvers
//! ask again over TCP.

use std::collections::BTreeSet;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData};

use super::records::Reply;
use super::DnsConfig;

/// UDP without EDNS (RFC 1035).
pub const UDP_MAX_BYTES: usize = 512;
/// The largest UDP reply even when EDNS offers more (the size hickory
/// receives with, and beyond which fragmentation makes UDP unreliable).
pub const UDP_EDNS_MAX_BYTES: usize = 4096;
pub const TCP_MAX_BYTES: usize = 65535;

/// How the question arrived.
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    pub udp: bool,
    /// The EDNS payload size the client offered, if it used EDNS.
    pub edns_payload: Option<u16>,
}

impl Transport {
    pub fn max_bytes(self) -> usize {
        match (self.udp, self.edns_payload) {
            (false, _) => TCP_MAX_BYTES,
            (true, None) => UDP_MAX_BYTES,
            (true, Some(payload)) => usize::from(payload).clamp(UDP_MAX_BYTES, UDP_EDNS_MAX_BYTES),
        }
    }
}

/// Cuts `reply` to the caps and the size limit; returns whether the TC
/// bit must be set.
pub fn fit(reply: &mut Reply, query: &Query, transport: Transport, config: &DnsConfig) -> bool {
    let mut truncated = false;
    if config.a_record_limit > 0 && reply.answers.len() > config.a_record_limit {
        reply.answers.truncate(config.a_record_limit);
    }
    let udp_cap = config.udp_answer_limit;
    if transport.udp
        && transport.edns_payload.is_none()
        && udp_cap > 0
        && reply.answers.len() > udp_cap
    {
        reply.answers.truncate(udp_cap);
        truncated = config.enable_truncate;
    }
    sync_additionals(reply);
    let max = transport.max_bytes();
    if encoded_len(reply, query, reply.answers.len()) > max {
        // The most answers that fit, by bisection over the count.
        let (mut fits, mut too_many) = (0, reply.answers.len());
        while too_many - fits > 1 {
            let mid = (fits + too_many) / 2;
            if encoded_len(reply, query, mid) <= max {
                fits = mid;
            } else {
                too_many = mid;
            }
        }
        reply.answers.truncate(fits);
        sync_additionals(reply);
        truncated = true;
        if encoded_len(reply, query, fits) > max {
            reply.additionals.clear();
        }
    }
    truncated
}

/// Keeps only the additional records of SRV targets still answered.
fn sync_additionals(reply: &mut Reply) {
    let targets: BTreeSet<&Name> = reply
        .answers
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(srv) => Some(srv.target()),
            _ => None,
        })
        .collect();
    if targets.is_empty() {
        return;
    }
    let keep: Vec<bool> = reply
        .additionals
        .iter()
        .map(|r| targets.contains(r.name()))
        .collect();
    let mut keep = keep.into_iter();
    reply.additionals.retain(|_| keep.next().unwrap_or(false));
}

/// The wire size of `reply` with its first `answers` answers and the
/// additionals those need.
fn encoded_len(reply: &Reply, query: &Query, answers: usize) -> usize {
    let kept = &reply.answers[..answers];
    let targets: BTreeSet<&Name> = kept
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(srv) => Some(srv.target()),
            _ => None,
        })
        .collect();
    let additionals = reply
        .additionals
        .iter()
        .filter(|r| targets.is_empty() || targets.contains(r.name()))
        .cloned();
    let mut message = Message::new();
    message
        .add_query(query.clone())
        .add_answers(kept.iter().cloned())
        .add_name_servers(reply.authority.iter().cloned())
        .add_additionals(additionals);
    // An OPT record adds 11 bytes when the client used EDNS; counted
    // regardless, to stay on the safe side.
    message.to_vec().map(|v| v.len() + 11).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::rdata::{A, SRV};
    use hickory_proto::rr::{Record, RecordType};

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn srv_reply(instances: u8) -> Reply {
        let mut reply = Reply::default();
        for i in 0..instances {
            let target = name(&format!("7f0000{i:02x}.addr.dc1.consul."));
            reply.answers.push(Record::from_rdata(
                name("web.service.consul."),
                0,
                RData::SRV(SRV::new(1, 1, 8000 + u16::from(i), target.clone())),
            ));
            reply.additionals.push(Record::from_rdata(
                target,
                0,
                RData::A(A(Ipv4Addr::new(127, 0, 0, i))),
            ));
        }
        reply
    }

    fn query() -> Query {
        Query::query(name("web.service.consul."), RecordType::SRV)
    }

    #[test]
    fn udp_without_edns_keeps_three_answers_silently_and_cuts_to_512_bytes() {
        let config = DnsConfig::default();
        let udp = Transport {
            udp: true,
            edns_payload: None,
        };
        let mut reply = srv_reply(10);
        assert!(!fit(&mut reply, &query(), udp, &config));
        assert_eq!((reply.answers.len(), reply.additionals.len()), (3, 3));

        let config = DnsConfig {
            udp_answer_limit: 100,
            ..DnsConfig::default()
        };
        let mut reply = srv_reply(30);
        assert!(fit(&mut reply, &query(), udp, &config));
        assert!(!reply.answers.is_empty() && reply.answers.len() < 30);
        assert_eq!(reply.additionals.len(), reply.answers.len());
        assert!(encoded_len(&reply, &query(), reply.answers.len()) <= UDP_MAX_BYTES);
    }

    #[test]
    fn edns_and_tcp_allow_more_and_the_record_limit_caps_everything() {
        let config = DnsConfig::default();
        let edns = Transport {
            udp: true,
            edns_payload: Some(4096),
        };
        let mut reply = srv_reply(30);
        assert!(!fit(&mut reply, &query(), edns, &config));
        assert_eq!(reply.answers.len(), 30);
        let tcp = Transport {
            udp: false,
            edns_payload: None,
        };
        let config = DnsConfig {
            a_record_limit: 5,
            ..DnsConfig::default()
        };
        let mut reply = srv_reply(30);
        assert!(!fit(&mut reply, &query(), tcp, &config));
        assert_eq!((reply.answers.len(), reply.additionals.len()), (5, 5));
    }
}
