//! What every isthmus component's Prometheus registry holds from the start
//! (`process_*` and `isthmus_build_info`), and the text exposition. Each
//! component owns its registry, so several can run in one process.

use prometheus::proto::MetricFamily;
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// A registry with the process collector (on Linux) and
/// `isthmus_build_info{version}`.
pub fn component_registry() -> Result<Registry, prometheus::Error> {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let build_info = IntGaugeVec::new(
        Opts::new("isthmus_build_info", "isthmus build information; always 1"),
        &["version"],
    )?;
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    registry.register(Box::new(build_info))?;
    Ok(registry)
}

/// Registers and returns a counter family.
pub fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let family = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}

/// The Prometheus text exposition (format 0.0.4) of `families`.
pub fn encode_text(families: &[MetricFamily]) -> Result<String, prometheus::Error> {
    let mut out = Vec::with_capacity(8192);
    TextEncoder::new().encode(families, &mut out)?;
    String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_registry_starts_with_build_info() {
        let registry = component_registry().unwrap();
        let requests = counter_vec(&registry, "x_total", "Xs", &["kind"]).unwrap();
        requests.with_label_values(&["a"]).inc();
        let text = encode_text(&registry.gather()).unwrap();
        assert!(text.contains("isthmus_build_info{version=\""), "{text}");
        assert!(text.contains("x_total{kind=\"a\"} 1"), "{text}");
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
