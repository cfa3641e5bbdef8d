//! `isthmus_dns_queries_total{type,result}`: DNS questions answered, with
//! both labels from small fixed sets.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus::{IntCounterVec, Registry};

/// The DNS interface's counters.
#[derive(Clone)]
pub struct DnsMetrics {
    queries: IntCounterVec,
}

/// How a question was answered: the bounded `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// NOERROR with records.
    Answered,
    /// NOERROR without records (the name exists, not that type).
    NoData,
    NxDomain,
    /// Outside the domain: the agent has no recursors.
    Refused,
    ServFail,
    /// Not a standard query, or not exactly one question.
    Malformed,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::NoData => "nodata",
            Outcome::NxDomain => "nxdomain",
            Outcome::Refused => "refused",
            Outcome::ServFail => "servfail",
            Outcome::Malformed => "malformed",
        }
    }

    pub fn of(code: ResponseCode, answers: usize) -> Outcome {
        match code {
            ResponseCode::NoError if answers > 0 => Outcome::Answered,
            ResponseCode::NoError => Outcome::NoData,
            ResponseCode::NXDomain => Outcome::NxDomain,
            ResponseCode::Refused => Outcome::Refused,
            ResponseCode::ServFail => Outcome::ServFail,
            _ => Outcome::Malformed,
        }
    }
}

fn type_label(qtype: Option<RecordType>) -> &'static str {
    match qtype {
        Some(RecordType::A) => "A",
        Some(RecordType::AAAA) => "AAAA",
        Some(RecordType::SRV) => "SRV",
        Some(RecordType::ANY) => "ANY",
        Some(RecordType::SOA) => "SOA",
        Some(RecordType::NS) => "NS",
        Some(RecordType::TXT) => "TXT",
        Some(RecordType::PTR) => "PTR",
        _ => "other",
    }
}

impl DnsMetrics {
    pub fn register(registry: &Registry) -> Result<DnsMetrics, prometheus::Error> {
        Ok(DnsMetrics {
            queries: isthmus_runtime::metrics::counter_vec(
                registry,
                "isthmus_dns_queries_total",
                "DNS questions the agent answered, by query type and result \
                 (answered, nodata, nxdomain, refused: outside the domain, servfail, malformed)",
                &["type", "result"],
            )?,
        })
    }

    pub fn query(&self, qtype: Option<RecordType>, outcome: Outcome) {
        self.queries
            .with_label_values(&[type_label(qtype), outcome.label()])
            .inc();
    }
}
