//! `isthmus-proxy`: the sidecar proxy as a process.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use isthmus_dataplane::shutdown::terminated;
use isthmus_proxy::cli::{Cli, Launch};

fn main() -> ExitCode {
    let launch = match Cli::parse_args().into_launch() {
        Ok(launch) => launch,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    isthmus_runtime::process::init_logging(launch.log_json());
    isthmus_runtime::process::raise_fd_limit();
    let workers = launch
        .workers()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
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
        let config = match launch {
            Launch::Config(config) => config,
            Launch::FromRegistration(from) => match from.resolve().await {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("Error: {e}");
                    return ExitCode::FAILURE;
                }
            },
        };
        let mut proxy = match isthmus_proxy::start(config).await {
            Ok(proxy) => proxy,
            Err(e) => {
                eprintln!("Error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let signalled = tokio::select! {
            _ = terminated() => true,
            ready = proxy.ready() => match ready {
                Ok(()) => {
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{}", proxy.ready_line());
                    let _ = stdout.flush();
                    false
                }
                // Stopped before it was ready (POST /shutdown): wait reports why.
                Err(_) => false,
            },
        };
        let result = if signalled {
            proxy.shutdown().await
        } else {
            proxy.until_terminated().await
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
