//! Gauges computed at scrape time from one store snapshot and the live
//! peering status (the HTTP API reads them, see `http::metrics`). Nothing
//! here is maintained on events, so the figures cannot drift from the
//! store, and a deleted peering has no series.

use std::time::Duration;

use isthmus_api::catalog::{STATUS_CRITICAL, STATUS_PASSING, STATUS_WARNING};
use isthmus_api::peering as api;
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntGauge, IntGaugeVec, Opts, Registry};
use time::OffsetDateTime;

/// Every state a peering can be in: the bounded `state` label.
pub const STATES: [&str; 6] = [
    api::STATE_PENDING,
    api::STATE_ESTABLISHING,
    api::STATE_ACTIVE,
    api::STATE_FAILING,
    api::STATE_DELETING,
    api::STATE_TERMINATED,
];

/// Check statuses counted by `isthmus_catalog_checks`.
pub const CHECK_STATUSES: [&str; 3] = [STATUS_PASSING, STATUS_WARNING, STATUS_CRITICAL];

/// One peering's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerFigures {
    pub name: String,
    pub state: String,
    pub healthy: bool,
    pub imported_services: usize,
    pub exported_services: usize,
    /// When the last heartbeat arrived, in seconds since the Unix epoch.
    pub last_heartbeat: Option<f64>,
}

/// What a scrape reports besides the registry's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub peers: Vec<PeerFigures>,
    /// Distinct service names in the catalog (as `/v1/catalog/services`).
    pub catalog_services: usize,
    /// Service instances registered on this agent.
    pub catalog_service_instances: usize,
    /// Checks by status, in [`CHECK_STATUSES`] order.
    pub checks: [usize; 3],
}

/// ACTIVE with a heartbeat heard within the silence limit (three
/// intervals), as DESIGN.md defines ACTIVE: an open socket is not enough.
pub fn healthy(
    state: &str,
    last_heartbeat: Option<OffsetDateTime>,
    now: OffsetDateTime,
    heartbeat: Duration,
) -> bool {
    state == api::STATE_ACTIVE
        && last_heartbeat.is_some_and(|t| {
            let age = now - t;
            age.is_negative() || age.unsigned_abs() <= heartbeat * 3
        })
}

impl Figures {
    /// The figures as metric families, through a registry of their own
    /// built per scrape: concurrent scrapes share no mutable gauges.
    pub fn families(&self) -> Result<Vec<MetricFamily>, prometheus::Error> {
        let registry = Registry::new();
        let peer_gauge = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
            let gauge = IntGaugeVec::new(Opts::new(name, help), &["peer"])?;
            registry.register(Box::new(gauge.clone()))?;
            Ok(gauge)
        };
        let healthy = peer_gauge(
            "isthmus_peering_healthy",
            "1 if the peering is ACTIVE and a heartbeat arrived within three heartbeat intervals, else 0",
        )?;
        let imported = peer_gauge(
            "isthmus_peering_imported_services",
            "Services imported from the peer",
        )?;
        let exported = peer_gauge(
            "isthmus_peering_exported_services",
            "Services exported to the peer that its identity may see",
        )?;
        let state = IntGaugeVec::new(
            Opts::new(
                "isthmus_peering_state",
                "1 for the peering's current state, 0 for the others",
            ),
            &["peer", "state"],
        )?;
        registry.register(Box::new(state.clone()))?;
        let last_heartbeat = GaugeVec::new(
            Opts::new(
                "isthmus_peering_last_heartbeat_timestamp_seconds",
                "When the last heartbeat from the peer arrived (Unix time); absent before the first",
            ),
            &["peer"],
        )?;
        registry.register(Box::new(last_heartbeat.clone()))?;

        for peer in &self.peers {
            let name = peer.name.as_str();
            healthy
                .with_label_values(&[name])
                .set(i64::from(peer.healthy));
            imported
                .with_label_values(&[name])
                .set(peer.imported_services as i64);
            exported
                .with_label_values(&[name])
                .set(peer.exported_services as i64);
            for s in STATES {
                state
                    .with_label_values(&[name, s])
                    .set(i64::from(peer.state == s));
            }
            if let Some(t) = peer.last_heartbeat {
                last_heartbeat.with_label_values(&[name]).set(t);
            }
        }

        let services = IntGauge::new(
            "isthmus_catalog_services",
            "Distinct service names in the catalog",
        )?;
        services.set(self.catalog_services as i64);
        registry.register(Box::new(services))?;
        let instances = IntGauge::new(
            "isthmus_catalog_service_instances",
            "Service instances registered on this agent, sidecars and gateways included",
        )?;
        instances.set(self.catalog_service_instances as i64);
        registry.register(Box::new(instances))?;
        let checks = IntGaugeVec::new(
            Opts::new(
                "isthmus_catalog_checks",
                "Health checks registered on this agent, by status",
            ),
            &["status"],
        )?;
        for (status, count) in CHECK_STATUSES.iter().zip(self.checks) {
            checks.with_label_values(&[status]).set(count as i64);
        }
        registry.register(Box::new(checks))?;

        Ok(registry.gather())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEAT: Duration = Duration::from_secs(1);

    #[test]
    fn healthy_needs_active_and_a_recent_heartbeat() {
        let now = OffsetDateTime::now_utc();
        let recent = Some(now - Duration::from_millis(2500));
        let stale = Some(now - Duration::from_millis(3500));
        assert!(healthy(api::STATE_ACTIVE, recent, now, BEAT));
        assert!(!healthy(api::STATE_ACTIVE, stale, now, BEAT));
        assert!(!healthy(api::STATE_ACTIVE, None, now, BEAT));
        assert!(!healthy(api::STATE_FAILING, recent, now, BEAT));
        // A clock step backwards is not a stale heartbeat.
        assert!(healthy(
            api::STATE_ACTIVE,
            Some(now + Duration::from_secs(5)),
            now,
            BEAT
        ));
    }

    #[test]
    fn families_carry_every_peer_and_state() {
        let figures = Figures {
            peers: vec![PeerFigures {
                name: "cluster-02".into(),
                state: api::STATE_ACTIVE.into(),
                healthy: true,
                imported_services: 2,
                exported_services: 3,
                last_heartbeat: Some(1_700_000_000.5),
            }],
            catalog_services: 4,
            catalog_service_instances: 5,
            checks: [1, 0, 2],
        };
        let text = super::super::encode_text(&figures.families().unwrap()).unwrap();
        for series in [
            r#"isthmus_peering_healthy{peer="cluster-02"} 1"#,
            r#"isthmus_peering_imported_services{peer="cluster-02"} 2"#,
            r#"isthmus_peering_exported_services{peer="cluster-02"} 3"#,
            r#"isthmus_peering_state{peer="cluster-02",state="ACTIVE"} 1"#,
            r#"isthmus_peering_state{peer="cluster-02",state="FAILING"} 0"#,
            r#"isthmus_peering_last_heartbeat_timestamp_seconds{peer="cluster-02"} 1700000000.5"#,
            "isthmus_catalog_services 4",
            "isthmus_catalog_service_instances 5",
            r#"isthmus_catalog_checks{status="passing"} 1"#,
            r#"isthmus_catalog_checks{status="critical"} 2"#,
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
        assert_eq!(text.matches("isthmus_peering_state{").count(), STATES.len());
    }

    #[test]
    fn no_peers_no_peer_series() {
        let text = super::super::encode_text(&Figures::default().families().unwrap()).unwrap();
        assert!(!text.contains("peer=\""), "{text}");
        // Families without series are left out; the catalog's are always there.
        assert!(!text.contains("isthmus_peering_healthy"), "{text}");
        assert!(text.contains("isthmus_catalog_services 0"), "{text}");
    }
}
