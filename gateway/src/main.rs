//! `isthmus-gateway`: the mesh gateway as a process.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use isthmus_dataplane::shutdown::terminated;
use isthmus_gateway::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    isthmus_runtime::process::init_logging(cli.log_json);
    isthmus_runtime::process::raise_fd_limit();
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let started = tokio::select! {
            started = isthmus_gateway::start(config) => started,
            _ = terminated() => return ExitCode::SUCCESS,
        };
        let mut gateway = match started {
            Ok(gateway) => gateway,
            Err(e) => {
                eprintln!("Error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(
            stdout,
            "isthmus-gateway running: bind={} advertise={} admin=http://{}",
            gateway.bind_addr(),
            gateway.advertise_addr(),
            gateway.admin_addr()
        );
        let _ = stdout.flush();
        drop(stdout);
        match gateway.until_terminated().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
