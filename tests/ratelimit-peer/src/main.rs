//! `ratelimit-peer`: serves Envoy's rate limit service API on a loopback address, counting
//! with Limitador in Redis. Prints `listening on ADDR` on stdout once it accepts calls;
//! SIGTERM or SIGINT stops it (calls in flight get up to two seconds to finish).
//!
//! ```text
//! ratelimit-peer --listen 127.0.0.1:8081 --redis redis://127.0.0.1:6379 [--limits limits.yaml]
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use stakeguard_ratelimit_peer::counting::Counting;
use stakeguard_ratelimit_peer::limits_file;
use stakeguard_ratelimit_peer::service::RateLimitService;
use tokio::signal::unix::{SignalKind, signal};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// How long calls in flight may take to finish once asked to stop.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(
    name = "ratelimit-peer",
    about = "Envoy's rate limit service (RLS v3, gRPC h2c) on Limitador with Redis storage"
)]
struct Args {
    /// Address to serve on (port 0 picks a free one; the line on stdout says which).
    #[arg(long)]
    listen: SocketAddr,
    /// Redis holding the counters, e.g. redis://127.0.0.1:6379.
    #[arg(long)]
    redis: String,
    /// limitador-server's limits file (YAML); descriptors that carry their own limit need
    /// none.
    #[arg(long)]
    limits: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("tokio runtime: {e}")),
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("ratelimit-peer: {message}");
    ExitCode::FAILURE
}

async fn serve(args: Args) -> Result<(), String> {
    let limits = match &args.limits {
        Some(path) => limits_file::read(path)?,
        None => Vec::new(),
    };
    let service = RateLimitService::new(Counting::connect(&args.redis, limits).await?);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", args.listen))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("listen on {}: {e}", args.listen))?;
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::builder().serve_with_incoming_shutdown(
        service,
        TcpIncoming::from(listener),
        async {
            let _ = stopped.await;
        },
    );
    tokio::pin!(server);
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {address}")
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    tokio::select! {
        served = &mut server => return served.map_err(|e| format!("serving on {address}: {e}")),
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    // Stop accepting, then give the calls in flight their time.
    let _ = stop.send(());
    tokio::time::timeout(DRAIN, server)
        .await
        .unwrap_or(Ok(()))
        .map_err(|e| format!("serving on {address}: {e}"))
}
