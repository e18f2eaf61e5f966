//! The `ferrite` binary: parse configuration (clap flags, a TOML file, env,
//! and redis-server's own command line: a redis.conf file plus
//! `--directive args...`, see `redisconf`), start the runtime, serve until
//! SIGTERM/SIGINT or SHUTDOWN.

mod redisconf;

use clap::Parser;
use ferrite::config::{Cli, Config};
use ferrite::server::Server;

#[global_allocator]
static GLOBAL: ferrite::alloc::CountingMi = ferrite::alloc::CountingMi;

/// Redis's text for a failed bind (`bind: Address already in use`).
fn bind_error_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or(&s).to_string()
}

/// A line on stdout that never panics (a closed pipe must not stop a
/// shutdown half-way).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Redis's start-up log lines (the logo with the PID, or one line).
fn startup_lines(show_logo: bool, port: u16) {
    let pid = std::process::id();
    let version = env!("CARGO_PKG_VERSION");
    redisconf::log('C', '#', "oO0OoO0OoO0Oo Ferrite is starting oO0OoO0OoO0Oo");
    redisconf::log(
        'C',
        '#',
        &format!(
            "Ferrite version={version} (Redis {} compatible), bits=64, pid={pid}, just started",
            redisconf::REDIS_VERSION
        ),
    );
    redisconf::log('C', '#', "Configuration loaded");
    let tty = unsafe { libc::isatty(1) } == 1;
    if show_logo || tty {
        redisconf::log_raw(&format!(
            "\n    Ferrite {version} (Redis {} compatible) 64 bit\n    Running in standalone mode\n    Port: \
             {port}\n    PID: {pid}\n\n",
            redisconf::REDIS_VERSION
        ));
    } else {
        redisconf::log('M', '*', &format!("Running mode=standalone, port={port}."));
    }
}

fn main() {
    ferrite::alloc::mark_installed();
    ferrite::crash::install();
    let cl = redisconf::split_cmdline(std::env::args_os().collect());
    let cli = Cli::parse_from(&cl.clap);
    let mut config = match Config::load(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrite: {e}");
            std::process::exit(1);
        }
    };
    // Absolute, like Redis: `dir` changes the working directory.
    config.redis_conf = cl.file.as_ref().map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()));
    let mut boot = redisconf::startup(&cl, &mut config).unwrap_or_else(|e| e.exit());
    if boot.daemonize {
        redisconf::daemonize();
    }
    redisconf::stderr_to_logfile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let srv = Server::new(config);
        if let Err(e) = redisconf::apply_runtime(&srv, &mut boot) {
            e.exit();
        }
        if let Err(e) = ferrite::cmd::acl::load_at_startup(&srv) {
            eprintln!("ferrite: Aborting startup because of ACL errors: {e}");
            std::process::exit(1);
        }
        // Load the data set before accepting connections (Redis refuses a
        // corrupt file and exits too).
        if let Err(e) = ferrite::persist::load_at_startup(&srv) {
            // Redis logs its start-up lines (with the PID) before it loads:
            // tools and Redis's test harness wait for them, then for the error.
            let port = srv.config.read().port;
            startup_lines(boot.show_logo, port);
            eprintln!("ferrite: {e}");
            std::process::exit(1);
        }
        let listener = match srv.bind().await {
            Ok(l) => l,
            Err(e) => {
                let (bind, port) = {
                    let c = srv.config.read();
                    (boot.bind_display.clone().unwrap_or_else(|| c.bind.clone()), c.port)
                };
                // Redis's two lines (the Tcl test harness retries another
                // port when it sees "Failed listening on port").
                redisconf::log(
                    'M',
                    '#',
                    &format!(
                        "Warning: Could not create server TCP listening socket {bind}:{port}: bind: {}",
                        bind_error_text(&e)
                    ),
                );
                redisconf::log('M', '#', &format!("Failed listening on port {port} (TCP), aborting."));
                eprintln!("ferrite: cannot listen on {bind}:{port}: {e}");
                std::process::exit(1);
            }
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        // Further `bind` addresses (Redis listens on all; `-addr` may fail).
        for (addr, optional) in &boot.extra_binds {
            match tokio::net::TcpListener::bind((addr.as_str(), port)).await {
                Ok(l) => {
                    srv.register_listener(std::os::fd::AsRawFd::as_raw_fd(&l));
                    let srv = srv.clone();
                    tokio::spawn(async move {
                        loop {
                            match l.accept().await {
                                Ok((sock, peer)) => {
                                    let local = sock.local_addr().unwrap_or(peer);
                                    tokio::spawn(ferrite::conn::handle(srv.clone(), sock, peer, local));
                                }
                                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                            }
                        }
                    });
                }
                Err(e) if *optional => {
                    redisconf::log('M', '#', &format!("Skipping optional bind address {addr}:{port}: {e}"))
                }
                Err(e) => {
                    let text = bind_error_text(&e);
                    redisconf::log(
                        'M',
                        '#',
                        &format!("Warning: Could not create server TCP listening socket {addr}:{port}: bind: {text}"),
                    );
                    redisconf::log('M', '#', &format!("Failed listening on port {port} (TCP), aborting."));
                    std::process::exit(1);
                }
            }
        }
        // `unixsocket`: a stale socket file is removed first, as Redis does.
        let unix_listener = match &boot.unixsocket {
            Some(path) => {
                let _ = std::fs::remove_file(path);
                match tokio::net::UnixListener::bind(path) {
                    Ok(l) => {
                        srv.register_listener(std::os::fd::AsRawFd::as_raw_fd(&l));
                        let perm = ferrite::cmd::config::accepted_value("unixsocketperm")
                            .and_then(|v| u32::from_str_radix(&v, 8).ok())
                            .unwrap_or(0);
                        if perm != 0 {
                            use std::os::unix::fs::PermissionsExt;
                            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(perm));
                        }
                        Some((l, path.clone()))
                    }
                    Err(e) => {
                        redisconf::log('M', '#', &format!("Failed opening Unix socket: {e}"));
                        std::process::exit(1);
                    }
                }
            }
            None => None,
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
        // First stdout line: scripts and tests read the address from it.
        say(&format!("ferrite {} ready to accept connections on {addr}", env!("CARGO_PKG_VERSION")));
        // Second line (scripts and tests read it too).
        if let Some(ml) = metrics_listener {
            let maddr = ml.local_addr().map(|a| a.to_string()).unwrap_or_default();
            say(&format!("ferrite metrics on http://{maddr}/metrics"));
            let m = ferrite::metrics::Metrics::new(srv.clone());
            tokio::spawn(ferrite::metrics::serve(ml, srv.clone(), m));
        }
        let pid = std::process::id();
        startup_lines(boot.show_logo, port);
        redisconf::log('M', '#', "Server initialized");
        if let Some(p) = &boot.pidfile {
            if let Err(e) = std::fs::write(p, format!("{pid}\n")) {
                redisconf::log('M', '#', &format!("Failed to write PID file: {e}"));
            }
        }
        redisconf::log('M', '*', "Ready to accept connections");
        if let Some((l, path)) = unix_listener {
            redisconf::log('M', '*', &format!("The server is now ready to accept connections at {}", path.display()));
            let srv = srv.clone();
            let name: std::sync::Arc<str> = path.display().to_string().into();
            tokio::spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((sock, _)) => {
                            tokio::spawn(ferrite::conn::handle_unix(srv.clone(), sock, name.clone()));
                        }
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                    }
                }
            });
        }
        if boot.notify_systemd {
            redisconf::notify_systemd("STATUS=Ready to accept connections\nREADY=1\n");
        }
        let s2 = srv.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            loop {
                let sig = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                // shutdown-on-sigterm / shutdown-on-sigint: save, nosave, force.
                let flags = ferrite::cmd::config::accepted_value(&format!("shutdown-on-{}", sig.to_ascii_lowercase()))
                    .unwrap_or_default();
                let has = |f: &str| flags.split(' ').any(|x| x == f);
                say("ferrite: received shutdown signal, closing connections");
                redisconf::log('M', '#', &format!("Received {sig} scheduling shutdown..."));
                redisconf::log('M', '#', "User requested shutdown...");
                if ferrite::persist::on_shutdown(&s2, has("save"), has("nosave")).is_err() {
                    if !has("force") {
                        // Redis keeps running when it cannot save.
                        redisconf::log(
                            'M',
                            '#',
                            &format!(
                                "{sig} received but errors trying to shut down the server, check the logs for more \
                                 information"
                            ),
                        );
                        continue;
                    }
                    eprintln!("ferrite: shutting down without saving");
                }
                s2.shutdown();
                break;
            }
        });
        srv.serve(listener).await;
        if let Some(p) = &boot.pidfile {
            let _ = std::fs::remove_file(p);
        }
        if let Some(p) = &boot.unixsocket {
            let _ = std::fs::remove_file(p);
        }
        redisconf::log('M', '#', "Ferrite is now ready to exit, bye bye...");
        say("ferrite: bye");
    });
}
