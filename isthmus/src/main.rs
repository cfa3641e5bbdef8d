//! The `isthmus` binary. The control plane and the mesh gateway are
//! separate libraries; this is the one place they meet, so that
//! `isthmus agent --dev` can run a gateway in its own process.
#![forbid(unsafe_code)]

use isthmus_control::cli::dev_gateway::{BoxFuture, DevGateway, DevGatewaySettings};

fn main() -> std::process::ExitCode {
    isthmus_control::cli::main(Some(start_gateway))
}

fn start_gateway(settings: DevGatewaySettings) -> BoxFuture<Result<Box<dyn DevGateway>, String>> {
    Box::pin(async move {
        let config = isthmus_gateway::GatewayConfig {
            bind: settings.bind,
            admin_bind: settings.admin_bind,
            advertise: settings.advertise,
            agent_credentials: isthmus_runtime::client::Credentials {
                token: settings.token,
                ..Default::default()
            },
            ..isthmus_gateway::GatewayConfig::loopback(settings.agent_url)
        };
        match isthmus_gateway::start(config).await {
            Ok(gateway) => Ok(Box::new(InProcess(gateway)) as Box<dyn DevGateway>),
            Err(e) => Err(e.to_string()),
        }
    })
}

struct InProcess(isthmus_gateway::RunningGateway);

impl DevGateway for InProcess {
    fn service_id(&self) -> &str {
        self.0.service_id()
    }

    fn advertise_addr(&self) -> String {
        self.0.advertise_addr()
    }

    fn admin_addr(&self) -> std::net::SocketAddr {
        self.0.admin_addr()
    }

    fn shutdown(self: Box<Self>) -> BoxFuture<Result<(), String>> {
        Box::pin(async move { self.0.shutdown().await.map_err(|e| e.to_string()) })
    }
}
