//! The `ferrite` binary: parse configuration, start the runtime, serve
//! until SIGTERM/SIGINT or SHUTDOWN.

use clap::Parser;
use ferrite::config::{Cli, Config};
use ferrite::server::Server;

#[global_allocator]
static GLOBAL: ferrite::alloc::CountingMi = ferrite::alloc::CountingMi;

fn main() {
    ferrite::alloc::mark_installed();
    let cli = Cli::parse();
    let config = match Config::load(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrite: {e}");
            std::process::exit(1);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let srv = Server::new(config);
        if let Err(e) = ferrite::cmd::acl::load_at_startup(&srv) {
            eprintln!("ferrite: Aborting startup because of ACL errors: {e}");
            std::process::exit(1);
        }
        // Load the data set before accepting connections (Redis refuses a
        // corrupt file and exits too).
        if let Err(e) = ferrite::persist::load_at_startup(&srv) {
            eprintln!("ferrite: {e}");
            std::process::exit(1);
        }
        let listener = match srv.bind().await {
            Ok(l) => l,
            Err(e) => {
                let c = srv.config.read();
                eprintln!("ferrite: cannot listen on {}:{}: {e}", c.bind, c.port);
                std::process::exit(1);
            }
        };
        let metrics_addr = srv.config.read().metrics_listen.clone();
        let metrics_listener = match metrics_addr {
            Some(a) => match tokio::net::TcpListener::bind(a.as_str()).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("ferrite: cannot listen for metrics on {a}: {e}");
                    std::process::exit(1);
                }
            },
            None => None,
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        println!("ferrite {} ready to accept connections on {addr}", env!("CARGO_PKG_VERSION"));
        if let Some(ml) = metrics_listener {
            let maddr = ml.local_addr().map(|a| a.to_string()).unwrap_or_default();
            println!("ferrite metrics on http://{maddr}/metrics");
            let m = ferrite::metrics::Metrics::new(srv.clone());
            tokio::spawn(ferrite::metrics::serve(ml, srv.clone(), m));
        }
        let s2 = srv.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            println!("ferrite: received shutdown signal, closing connections");
            if ferrite::persist::on_shutdown(&s2, false, false).is_err() {
                eprintln!("ferrite: shutting down without saving");
            }
            s2.shutdown();
        });
        srv.serve(listener).await;
        println!("ferrite: bye");
    });
}
