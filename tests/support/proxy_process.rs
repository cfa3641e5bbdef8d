//! `isthmus-proxy` processes.

use std::collections::HashMap;

use super::process::{field, spawn_logged, ChildProcess, Logs};

/// An `isthmus-proxy` child process; killed on drop.
pub struct ProxyProcess {
    process: ChildProcess,
    pub service: String,
    pub inbound: String,
    pub admin: String,
    /// `backend` or `backend@cluster-01` → local listener address.
    pub upstreams: HashMap<String, String>,
    /// Its log lines (stderr) so far.
    pub logs: Logs,
}

impl ProxyProcess {
    /// Starts a sidecar for `service` in front of `local_app`, with
    /// `upstreams` given as `svc[@peer]` (each on an ephemeral local port).
    pub fn spawn(
        control: &str,
        service: &str,
        local_app: &str,
        upstreams: &[&str],
        extra: &[&str],
    ) -> ProxyProcess {
        let program = isthmus_testkit::process::binary("isthmus-proxy");
        let mut args: Vec<String> = vec![
            "--service".into(),
            service.into(),
            "--control".into(),
            control.into(),
            "--inbound-bind".into(),
            "127.0.0.1:0".into(),
            "--local-app".into(),
            local_app.into(),
            "--admin-bind".into(),
            "127.0.0.1:0".into(),
            "--drain-timeout".into(),
            "2s".into(),
        ];
        for upstream in upstreams {
            args.push("--upstream".into());
            args.push(format!("{upstream}:0"));
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ProxyProcess::spawn_args(&program, &refs)
            .unwrap_or_else(|e| panic!("proxy for {service} did not start: {e}"))
    }

    /// Starts `isthmus-proxy` with exactly `args` (e.g. `--sidecar-for web`
    /// and listeners on loopback), waiting for its ready line; `Err` is its
    /// stderr if it exits first.
    pub fn spawn_with(args: &[&str]) -> Result<ProxyProcess, String> {
        let program = isthmus_testkit::process::binary("isthmus-proxy");
        ProxyProcess::spawn_args(&program, args)
    }

    fn spawn_args(program: &std::path::Path, args: &[&str]) -> Result<ProxyProcess, String> {
        let (child, line, logs) = spawn_logged(program, args, "isthmus-proxy running:")?;
        let upstreams = field(&line, "upstreams")
            .split(',')
            .filter(|u| !u.is_empty())
            .map(|u| {
                let (name, addr) = u.split_once('=').expect("upstream=addr");
                (name.to_owned(), addr.to_owned())
            })
            .collect();
        Ok(ProxyProcess {
            process: child,
            service: field(&line, "service"),
            inbound: field(&line, "inbound"),
            admin: field(&line, "admin"),
            upstreams,
            logs,
        })
    }

    /// The local address of upstream `name` (`svc` or `svc@peer`).
    pub fn upstream(&self, name: &str) -> &str {
        self.upstreams
            .get(name)
            .unwrap_or_else(|| panic!("no upstream {name} in {:?}", self.upstreams))
    }

    pub fn terminate(self) -> std::process::ExitStatus {
        self.process.terminate()
    }
}
