//! demo-app: `demo-app` serves; `demo-app healthcheck` checks a running instance.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use demo_app::{serve, shutdown_signal, AppState, Config};

fn main() -> ExitCode {
    let command = std::env::args().nth(1);
    match command.as_deref() {
        None => run(),
        Some("healthcheck") => healthcheck(),
        Some("-h" | "--help") => {
            println!(
                "usage: demo-app [healthcheck]\n\
                 env: PORT (8080), READY_DELAY (2s), CHAOS_TOKEN (unset: /chaos off), \
                 SHUTDOWN_DEADLINE (5s), RUST_LOG"
            );
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("unknown command {other:?}; try --help");
            ExitCode::from(2)
        }
    }
}

fn healthcheck() -> ExitCode {
    let port = match Config::from_env() {
        Ok(config) => config.port,
        Err(err) => {
            eprintln!("healthcheck: {err}");
            return ExitCode::FAILURE;
        }
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match demo_app::healthcheck::status_of(addr, "/health", Duration::from_secs(2)) {
        Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("healthcheck: /health answered {status}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("healthcheck: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> ExitCode {
    tracing_subscriber::fmt()
        // Colour codes only on a terminal: container logs stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(%err, "bad configuration");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(%err, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.port));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(
            %addr,
            chaos = config.chaos_token.is_some(),
            ready_delay_ms = config.ready_delay.as_millis(),
            "demo-app listening"
        );
        serve(
            listener,
            AppState::new(&config),
            shutdown_signal(),
            config.shutdown_deadline,
        )
        .await
    });
    // Hung handlers are parked futures, not blocked threads: dropping the runtime ends them.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(_) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(%err, "server failed");
            ExitCode::FAILURE
        }
    }
}
