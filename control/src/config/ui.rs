//! The web UI's settings: the file's `ui_config { ... }` block (Consul's
//! keys: `enabled`, `metrics_provider`, `metrics_proxy { base_url }`) and
//! the `--ui-*` flags. With a metrics provider the agent itself queries
//! Prometheus for the topology page (a fixed set of queries, no open proxy).

use serde::Deserialize;

use super::Source;

/// The one metrics provider there is.
pub const PROMETHEUS: &str = "prometheus";
/// The longest `base_url` accepted.
const MAX_BASE_URL_LEN: usize = 2048;

/// What the agent does for the web UI, once every layer is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSettings {
    /// Serve the UI's pages under `/ui/` [default: true].
    pub enabled: bool,
    /// Where the topology's numbers come from; `None`: no metrics.
    pub metrics: Option<MetricsProvider>,
}

impl Default for UiSettings {
    fn default() -> UiSettings {
        UiSettings {
            enabled: true,
            metrics: None,
        }
    }
}

/// A Prometheus server the agent queries (`metrics_provider =
/// "prometheus"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsProvider {
    /// `http(s)://host[:port][/path]`, without a trailing slash.
    pub base_url: String,
}

/// The provider's name as the topology answer shows it (`""`: none).
pub fn ui_provider_name(settings: &UiSettings) -> &'static str {
    if settings.metrics.is_some() {
        PROMETHEUS
    } else {
        ""
    }
}

/// The file's `ui_config` block.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfigBlock {
    pub enabled: Option<bool>,
    pub metrics_provider: Option<String>,
    pub metrics_proxy: Option<MetricsProxyBlock>,
}

/// `ui_config { metrics_proxy { ... } }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsProxyBlock {
    pub base_url: Option<String>,
}

/// The same settings as flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UiFlags {
    /// Serve the web UI under /ui/ (ui_config.enabled) [default: true].
    #[arg(long = "ui", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub enabled: Option<bool>,
    /// Where the topology page's numbers come from: only "prometheus"
    /// (ui_config.metrics_provider) [default: none, no metrics].
    #[arg(long = "ui-metrics-provider", value_name = "NAME")]
    pub metrics_provider: Option<String>,
    /// The Prometheus server the agent queries for the topology page
    /// (ui_config.metrics_proxy.base_url), e.g. http://127.0.0.1:9090;
    /// implies --ui-metrics-provider prometheus.
    #[arg(long = "ui-metrics-base-url", value_name = "URL")]
    pub metrics_base_url: Option<String>,
}

/// Applies the file's block and the flags over `settings`.
pub(super) fn apply(
    block: Option<UiConfigBlock>,
    flags: UiFlags,
    settings: &mut UiSettings,
    source: Source,
) -> Result<(), String> {
    let block = block.unwrap_or_default();
    let enabled = flags.enabled.or(block.enabled);
    let provider = flags.metrics_provider.or(block.metrics_provider);
    let base_url = flags
        .metrics_base_url
        .or(block.metrics_proxy.and_then(|p| p.base_url));
    let key = |file: &str, flag: &str| match source {
        Source::File => format!("ui_config.{file}"),
        Source::Flags => format!("--{flag}"),
    };
    if let Some(enabled) = enabled {
        settings.enabled = enabled;
    }
    if let Some(provider) = &provider {
        if provider != PROMETHEUS {
            return Err(format!(
                "{}: unsupported metrics provider {provider:?}: the only one is \"prometheus\"",
                key("metrics_provider", "ui-metrics-provider")
            ));
        }
    }
    match (provider, base_url) {
        (_, Some(url)) => {
            let base_url = validate_base_url(&url).map_err(|problem| {
                format!(
                    "{}: {problem}",
                    key("metrics_proxy.base_url", "ui-metrics-base-url")
                )
            })?;
            settings.metrics = Some(MetricsProvider { base_url });
        }
        (Some(_), None) if settings.metrics.is_none() => {
            return Err(format!(
                "{}: metrics_provider \"prometheus\" needs the Prometheus server's address in {}",
                key("metrics_provider", "ui-metrics-provider"),
                key("metrics_proxy.base_url", "ui-metrics-base-url")
            ));
        }
        _ => {}
    }
    Ok(())
}

/// `http(s)://host[:port][/path]`, returned without a trailing slash.
pub fn validate_base_url(url: &str) -> Result<String, String> {
    if url.len() > MAX_BASE_URL_LEN {
        return Err(format!(
            "the URL is longer than {MAX_BASE_URL_LEN} characters"
        ));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL ({e}): give http://host:port"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{url:?} names no host: give http://host:port"));
    };
    if authority.as_str().contains('@') {
        return Err(format!("{url:?}: credentials in the URL are not supported"));
    }
    if authority.host().is_empty() {
        return Err(format!("{url:?} names no host: give http://host:port"));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(format!("{url:?}: no query or fragment, only a base path"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_base_url_is_judged_without_panicking(url in "\\PC{0,80}") {
            if let Ok(base) = validate_base_url(&url) {
                prop_assert!(base.starts_with("http://") || base.starts_with("https://"));
                prop_assert!(!base.ends_with('/'));
                prop_assert!(!base.contains(['?', '#']));
            }
        }

        #[test]
        fn host_and_port_urls_are_accepted(host in "[a-z][a-z0-9-]{0,20}", port in 1u16.., path in "(/[a-z]{1,8}){0,2}/?") {
            let url = format!("http://{host}:{port}{path}");
            prop_assert_eq!(validate_base_url(&url), Ok(url.trim_end_matches('/').to_owned()));
        }
    }

    fn from_file(hcl: &str) -> Result<UiSettings, String> {
        let settings: super::super::Settings = hcl::from_str(hcl).map_err(|e| e.to_string())?;
        let mut config = super::super::AgentConfig::dev();
        settings.apply(&mut config, Source::File)?;
        Ok(config.ui)
    }

    #[test]
    fn consuls_block_configures_prometheus() {
        let ui = from_file(
            r#"ui_config {
                 enabled = true
                 metrics_provider = "prometheus"
                 metrics_proxy { base_url = "http://127.0.0.1:9090/" }
               }"#,
        )
        .unwrap();
        assert!(ui.enabled);
        assert_eq!(
            ui.metrics,
            Some(MetricsProvider {
                base_url: "http://127.0.0.1:9090".into()
            })
        );
        assert_eq!(from_file("").unwrap(), UiSettings::default());
        assert!(!from_file("ui_config { enabled = false }").unwrap().enabled);
    }

    #[test]
    fn bad_settings_say_which_key_and_why() {
        let error = from_file(r#"ui_config { metrics_provider = "grafana" }"#).unwrap_err();
        assert_eq!(
            error,
            "ui_config.metrics_provider: unsupported metrics provider \"grafana\": the only one is \"prometheus\""
        );
        let error = from_file(r#"ui_config { metrics_provider = "prometheus" }"#).unwrap_err();
        assert!(
            error.contains("ui_config.metrics_proxy.base_url"),
            "{error}"
        );
        for url in [
            "127.0.0.1:9090",
            "ftp://prom:21",
            "http://",
            "http://user:pw@prom:9090",
            "http://prom:9090/?x=1",
            "not a url",
        ] {
            let hcl = format!(
                r#"ui_config {{
                     metrics_provider = "prometheus"
                     metrics_proxy {{ base_url = "{url}" }}
                   }}"#
            );
            let error = from_file(&hcl).unwrap_err();
            assert!(
                error.starts_with("ui_config.metrics_proxy.base_url: "),
                "{url}: {error}"
            );
        }
        let error = from_file(r#"ui_config { dashboard = 1 }"#).unwrap_err();
        assert!(error.contains("dashboard"), "{error}");
    }

    #[test]
    fn the_base_url_flag_implies_prometheus() {
        let mut ui = UiSettings::default();
        let flags = UiFlags {
            metrics_base_url: Some("https://prom.example:9090/prom".into()),
            ..UiFlags::default()
        };
        apply(None, flags, &mut ui, Source::Flags).unwrap();
        assert_eq!(
            ui.metrics.unwrap().base_url,
            "https://prom.example:9090/prom"
        );
        let flags = UiFlags {
            metrics_provider: Some("datadog".into()),
            ..UiFlags::default()
        };
        let error = apply(None, flags, &mut UiSettings::default(), Source::Flags).unwrap_err();
        assert!(error.starts_with("--ui-metrics-provider: "), "{error}");
    }
}
