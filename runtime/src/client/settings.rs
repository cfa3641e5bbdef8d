//! Where a client of the agent's API finds the agent, its token and the
//! TLS files: flags first, then the environment (Consul's variable names,
//! with `ISTHMUS_` ones winning over `CONSUL_` ones), then the default.
//! One function, [`ClientFlags::settings`], so the CLI, `isthmus-proxy` and
//! `isthmus-gateway` resolve them alike.

use std::path::{Path, PathBuf};

use super::{ClientError, DEFAULT_ADDR};

/// The longest token file read (a token is a UUID; this leaves room for
/// whitespace and other token formats, and refuses a wrong file quickly).
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// The flags every client of the agent's API takes (flatten them into a
/// command); unset ones fall back to the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientFlags {
    /// The ACL token sent with every request as X-Consul-Token
    /// [env: ISTHMUS_HTTP_TOKEN, CONSUL_HTTP_TOKEN].
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// A file holding the ACL token (read and trimmed); wins over -token
    /// [env: ISTHMUS_HTTP_TOKEN_FILE, CONSUL_HTTP_TOKEN_FILE].
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The CA certificate (PEM) to verify an https agent's certificate with;
    /// without it the system's trust store is used [env: CONSUL_CACERT].
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for agents that verify incoming
    /// connections, with -client-key [env: CONSUL_CLIENT_CERT].
    #[arg(long, value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM) [env: CONSUL_CLIENT_KEY].
    #[arg(long, value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// The name to verify an https agent's certificate against instead of
    /// the address's host (and to send as SNI) [env: CONSUL_TLS_SERVER_NAME].
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

/// How to authenticate to the agent and trust it, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Sent as `X-Consul-Token`; `None` sends none (the anonymous token).
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub tls_server_name: Option<String>,
}

/// The first of `names` set to a non-empty value.
fn first_env(env: &dyn Fn(&str) -> Option<String>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| env(name).filter(|v| !v.trim().is_empty()))
}

impl ClientFlags {
    /// Resolves the flags over the process environment.
    pub fn credentials(&self) -> Result<Credentials, ClientError> {
        self.credentials_with(&|name| std::env::var(name).ok())
    }

    /// Resolves the flags over `env` (a variable lookup). Per source, a
    /// token file wins over a token (as Consul's client has it); any flag
    /// wins over any variable.
    pub fn credentials_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Credentials, ClientError> {
        let token = match (&self.token_file, &self.token) {
            (Some(file), _) => read_token_file(file)?,
            (None, Some(token)) => Some(token.trim().to_owned()).filter(|t| !t.is_empty()),
            (None, None) => {
                match first_env(env, &["ISTHMUS_HTTP_TOKEN_FILE", "CONSUL_HTTP_TOKEN_FILE"]) {
                    Some(file) => read_token_file(Path::new(&file))?,
                    None => first_env(env, &["ISTHMUS_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"])
                        .map(|t| t.trim().to_owned()),
                }
            }
        };
        let file = |flag: &Option<PathBuf>, names: &[&str]| {
            flag.clone()
                .or_else(|| first_env(env, names).map(PathBuf::from))
        };
        let credentials = Credentials {
            token,
            ca_file: file(&self.ca_file, &["CONSUL_CACERT"]),
            client_cert: file(&self.client_cert, &["CONSUL_CLIENT_CERT"]),
            client_key: file(&self.client_key, &["CONSUL_CLIENT_KEY"]),
            tls_server_name: self
                .tls_server_name
                .clone()
                .or_else(|| first_env(env, &["CONSUL_TLS_SERVER_NAME"])),
        };
        if credentials.client_cert.is_some() != credentials.client_key.is_some() {
            return Err(ClientError::Settings(
                "a client certificate needs its key and a key its certificate: \
                 give both -client-cert and -client-key (or CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY)"
                    .into(),
            ));
        }
        if let Some(token) = &credentials.token {
            http::HeaderValue::from_str(token).map_err(|_| {
                ClientError::Settings(
                    "the ACL token contains characters a header cannot carry".into(),
                )
            })?;
        }
        Ok(credentials)
    }
}

/// The agent's address: the flag, else `ISTHMUS_HTTP_ADDR`, else
/// `CONSUL_HTTP_ADDR` (made https when `CONSUL_HTTP_SSL` is true and it
/// names no scheme, as Consul does), else [`DEFAULT_ADDR`].
pub fn http_addr(flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> String {
    if let Some(addr) = flag {
        return addr.to_owned();
    }
    if let Some(addr) = first_env(env, &["ISTHMUS_HTTP_ADDR"]) {
        return addr;
    }
    if let Some(addr) = first_env(env, &["CONSUL_HTTP_ADDR"]) {
        let ssl = env("CONSUL_HTTP_SSL")
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true"));
        if ssl && !addr.contains("://") {
            return format!("https://{addr}");
        }
        return addr;
    }
    DEFAULT_ADDR.to_owned()
}

fn read_token_file(path: &Path) -> Result<Option<String>, ClientError> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| {
        ClientError::Settings(format!("reading the token file {}: {e}", path.display()))
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(ClientError::Settings(format!(
            "the token file {} is longer than {MAX_TOKEN_FILE_BYTES} bytes: not a token",
            path.display()
        )));
    }
    let token = text.trim();
    Ok((!token.is_empty()).then(|| token.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn token_file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn a_flag_wins_over_the_environment_and_isthmus_over_consul() {
        let env = env_of(&[
            ("CONSUL_HTTP_TOKEN", "consul"),
            ("ISTHMUS_HTTP_TOKEN", "isthmus"),
        ]);
        let flags = ClientFlags {
            token: Some("flag".into()),
            ..ClientFlags::default()
        };
        assert_eq!(
            flags.credentials_with(&env).unwrap().token.as_deref(),
            Some("flag")
        );
        let none = ClientFlags::default();
        assert_eq!(
            none.credentials_with(&env).unwrap().token.as_deref(),
            Some("isthmus")
        );
        let consul = env_of(&[("CONSUL_HTTP_TOKEN", "consul")]);
        assert_eq!(
            none.credentials_with(&consul).unwrap().token.as_deref(),
            Some("consul")
        );
        assert_eq!(
            none.credentials_with(&env_of(&[])).unwrap(),
            Credentials::default()
        );
    }

    #[test]
    fn a_token_file_is_read_trimmed_and_wins_over_a_token_of_its_source() {
        let file = token_file("  secret-from-file\n");
        let flags = ClientFlags {
            token: Some("flag".into()),
            token_file: Some(file.path().to_owned()),
            ..ClientFlags::default()
        };
        let env = env_of(&[]);
        assert_eq!(
            flags.credentials_with(&env).unwrap().token.as_deref(),
            Some("secret-from-file")
        );
        let path = file.path().to_str().unwrap().to_owned();
        let env = env_of(&[
            ("CONSUL_HTTP_TOKEN_FILE", &path),
            ("CONSUL_HTTP_TOKEN", "t"),
        ]);
        assert_eq!(
            ClientFlags::default()
                .credentials_with(&env)
                .unwrap()
                .token
                .as_deref(),
            Some("secret-from-file")
        );
        // A flag token still wins over an environment file.
        let flags = ClientFlags {
            token: Some("flag".into()),
            ..ClientFlags::default()
        };
        assert_eq!(
            flags.credentials_with(&env).unwrap().token.as_deref(),
            Some("flag")
        );
    }

    #[test]
    fn an_unreadable_token_file_is_a_clear_error() {
        let flags = ClientFlags {
            token_file: Some("/nonexistent/isthmus-token".into()),
            ..ClientFlags::default()
        };
        let e = flags
            .credentials_with(&env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("reading the token file /nonexistent/isthmus-token"),
            "{e}"
        );
    }

    #[test]
    fn tls_files_come_from_consuls_variables_and_a_cert_needs_its_key() {
        let env = env_of(&[
            ("CONSUL_CACERT", "/ca.pem"),
            ("CONSUL_CLIENT_CERT", "/c.pem"),
        ]);
        let e = ClientFlags::default()
            .credentials_with(&env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("-client-key"), "{e}");
        let env = env_of(&[
            ("CONSUL_CACERT", "/ca.pem"),
            ("CONSUL_CLIENT_CERT", "/c.pem"),
            ("CONSUL_CLIENT_KEY", "/k.pem"),
        ]);
        let resolved = ClientFlags::default().credentials_with(&env).unwrap();
        assert_eq!(resolved.ca_file.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(resolved.client_key.as_deref(), Some(Path::new("/k.pem")));
    }

    #[test]
    fn the_address_comes_from_the_flag_then_isthmus_then_consul() {
        let env = env_of(&[
            ("ISTHMUS_HTTP_ADDR", "http://a:1"),
            ("CONSUL_HTTP_ADDR", "b:2"),
        ]);
        assert_eq!(http_addr(Some("https://f:3"), &env), "https://f:3");
        assert_eq!(http_addr(None, &env), "http://a:1");
        assert_eq!(
            http_addr(None, &env_of(&[("CONSUL_HTTP_ADDR", "b:2")])),
            "b:2"
        );
        let ssl = env_of(&[("CONSUL_HTTP_ADDR", "b:2"), ("CONSUL_HTTP_SSL", "true")]);
        assert_eq!(http_addr(None, &ssl), "https://b:2");
        assert_eq!(http_addr(None, &env_of(&[])), DEFAULT_ADDR);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the token text, resolution either refuses it with a
        /// reason or yields exactly the trimmed text (none when blank),
        /// and a client built from it sends it.
        #[test]
        fn any_token_is_sent_trimmed_or_refused(token in any::<String>()) {
            let flags = ClientFlags { token: Some(token.clone()), ..ClientFlags::default() };
            match flags.credentials_with(&|_| None) {
                Ok(credentials) => {
                    let trimmed = token.trim();
                    prop_assert_eq!(
                        credentials.token.as_deref(),
                        (!trimmed.is_empty()).then_some(trimmed)
                    );
                    prop_assert!(crate::client::Client::with_credentials(
                        "http://127.0.0.1:8500",
                        &credentials
                    )
                    .is_ok());
                }
                Err(e) => prop_assert!(e.to_string().contains("header"), "{}", e),
            }
        }
    }
}
