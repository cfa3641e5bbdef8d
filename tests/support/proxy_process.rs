//! `isthmus-proxy` processes.

use std::collections::HashMap;
use std::process::Child;

use super::bin_dir;
use super::process::{field, spawn_announcing, terminate_child};

pub struct ProxyProcess {
    child: Option<Child>,
    pub service: String,
    pub inbound: String,
    pub admin: String,
    /// `backend` or `backend@cluster-01` → local listener address.
    pub upstreams: HashMap<String, String>,
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
        let program = bin_dir().join("isthmus-proxy");
        assert!(program.exists(), "{} not built", program.display());
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
        let (child, line) = spawn_announcing(&program, &refs, "isthmus-proxy running:")
            .unwrap_or_else(|e| panic!("proxy for {service} did not start: {e}"));
        let upstreams = field(&line, "upstreams")
            .split(',')
            .filter(|u| !u.is_empty())
            .map(|u| {
                let (name, addr) = u.split_once('=').expect("upstream=addr");
                (name.to_owned(), addr.to_owned())
            })
            .collect();
        ProxyProcess {
            child: Some(child),
            service: service.to_owned(),
            inbound: field(&line, "inbound"),
            admin: field(&line, "admin"),
            upstreams,
        }
    }

    /// The local address of upstream `name` (`svc` or `svc@peer`).
    pub fn upstream(&self, name: &str) -> &str {
        self.upstreams
            .get(name)
            .unwrap_or_else(|| panic!("no upstream {name} in {:?}", self.upstreams))
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        terminate_child(self.child.take().unwrap())
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
