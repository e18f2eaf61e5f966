//! The `ferrite-proxy` binary: read the configuration, start the runtime and the proxy, serve until
//! SIGTERM/SIGINT, then shut down gracefully (in-flight requests finish).

use clap::Parser;
use ferrite_proxy::config::{Cli, Config};

#[global_allocator]
static GLOBAL: ferrite::alloc::CountingMi = ferrite::alloc::CountingMi;

fn main() {
    ferrite::alloc::mark_installed();
    let cfg = match Config::load(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrite-proxy: {e}");
            std::process::exit(1);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cfg.log_format == "json" {
        sub.json().init();
    } else {
        sub.init();
    }
    // One worker in front of remote backends: tokio's single-threaded scheduler (no work-stealing bookkeeping per
    // wake-up). The embedded store needs the multi-threaded one (it parks workers with `block_in_place`).
    let embedded = cfg.upstream_cluster.is_empty() && cfg.ferrite.is_none();
    let rt = if cfg.threads == 1 && !embedded {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cfg.threads).enable_all().build()
    }
    .expect("tokio runtime");
    rt.block_on(async move {
        let running = match ferrite_proxy::Proxy::start(cfg).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("ferrite-proxy: {e}");
                std::process::exit(1);
            }
        };
        println!("ferrite-proxy {} ready to accept connections on {}", env!("CARGO_PKG_VERSION"), running.addr);
        if let Some(m) = running.metrics_addr {
            println!("ferrite-proxy metrics on http://{m}/metrics");
        }
        let p = running.proxy.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            tracing::info!("received shutdown signal");
            p.shutdown();
        });
        let _ = running.done.await;
        tracing::info!("bye");
    });
}
