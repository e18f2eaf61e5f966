//! Prometheus metrics (one registry, every name prefixed `ferrite_proxy_`) and a minimal HTTP server for
//! `GET /metrics`. The list of names is in `proxy/README.md`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub struct Metrics {
    pub registry: Registry,
    /// Requests by command and side (`upstream`, `ferrite`, `proxy` for local answers, `fanout`).
    pub requests: IntCounterVec,
    /// Error replies sent to clients by command, side and origin (`backend` = the backend's own error reply,
    /// `upstream`/`downstream`/`internal` = a fault found by the proxy).
    pub errors: IntCounterVec,
    /// Backend round-trip latency per backend node.
    pub latency: HistogramVec,
    /// `-MOVED` / `-ASK` redirects followed, by kind.
    pub redirects: IntCounterVec,
    pub client_connections: IntGauge,
    pub clients_accepted: IntCounter,
    pub backend_connections: IntGaugeVec,
    pub backend_connect_failures: IntCounterVec,
    pub topology_refreshes: IntCounterVec,
    /// Slot count per state (`upstream`, `ferrite`, `paused`).
    pub slots: IntGaugeVec,
    pub slots_mirrored: IntGauge,
    pub slots_tracked: IntGauge,
    pub config_epoch: IntGauge,
    pub paused_requests: IntGauge,
    pub pause_wait: Histogram,
    pub pause_timeouts: IntCounter,
    pub pause_rejected: IntCounter,
    pub mirror_writes: IntCounterVec,
    pub mirror_inflight: IntGauge,
    pub mirror_lag: Histogram,
    pub dirty_keys: IntGauge,
}

fn buckets() -> Vec<f64> {
    vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m;
                registry.register(Box::new(m.clone())).expect("register metric");
                m
            }};
        }
        let cv = |n: &str, h: &str, l: &[&str]| IntCounterVec::new(Opts::new(n, h), l).expect("metric");
        let gv = |n: &str, h: &str, l: &[&str]| IntGaugeVec::new(Opts::new(n, h), l).expect("metric");
        let g = |n: &str, h: &str| IntGauge::new(n, h).expect("metric");
        let c = |n: &str, h: &str| IntCounter::new(n, h).expect("metric");
        let hist =
            |n: &str, h: &str| Histogram::with_opts(HistogramOpts::new(n, h).buckets(buckets())).expect("metric");
        Arc::new(Metrics {
            requests: reg!(cv(
                "ferrite_proxy_requests_total",
                "Client requests by command and side",
                &["command", "side"]
            )),
            errors: reg!(cv(
                "ferrite_proxy_errors_total",
                "Error replies sent to clients by command, side and origin",
                &["command", "side", "origin"]
            )),
            latency: reg!(HistogramVec::new(
                HistogramOpts::new("ferrite_proxy_backend_latency_seconds", "Backend round-trip latency")
                    .buckets(buckets()),
                &["backend", "side"]
            )
            .expect("metric")),
            redirects: reg!(cv("ferrite_proxy_redirects_total", "MOVED/ASK redirects followed", &["kind"])),
            client_connections: reg!(g("ferrite_proxy_client_connections", "Open client connections")),
            clients_accepted: reg!(c("ferrite_proxy_clients_accepted_total", "Client connections accepted")),
            backend_connections: reg!(gv(
                "ferrite_proxy_backend_connections",
                "Open backend connections",
                &["backend", "side"]
            )),
            backend_connect_failures: reg!(cv(
                "ferrite_proxy_backend_connect_failures_total",
                "Failed backend connection attempts",
                &["backend", "side"]
            )),
            topology_refreshes: reg!(cv(
                "ferrite_proxy_topology_refreshes_total",
                "Upstream topology refreshes by result",
                &["result"]
            )),
            slots: reg!(gv("ferrite_proxy_slots", "Slots per state", &["state"])),
            slots_mirrored: reg!(g("ferrite_proxy_slots_mirrored", "Slots with the mirror flag")),
            slots_tracked: reg!(g("ferrite_proxy_slots_tracked", "Slots with TRACK on")),
            config_epoch: reg!(g("ferrite_proxy_config_epoch", "Current slot-table epoch")),
            paused_requests: reg!(g("ferrite_proxy_paused_requests", "Requests waiting on paused slots now")),
            pause_wait: reg!(hist("ferrite_proxy_pause_wait_seconds", "Time requests waited on paused slots")),
            pause_timeouts: reg!(c(
                "ferrite_proxy_pause_timeouts_total",
                "Requests answered TRYAGAIN after waiting the pause timeout, plus slots auto-resumed"
            )),
            pause_rejected: reg!(c(
                "ferrite_proxy_pause_rejected_total",
                "Requests answered TRYAGAIN because the pause queue was full"
            )),
            mirror_writes: reg!(cv("ferrite_proxy_mirror_writes_total", "Mirrored writes by result", &["result"])),
            mirror_inflight: reg!(g(
                "ferrite_proxy_mirror_inflight",
                "Mirrored writes sent and not yet acknowledged (mirror lag in writes)"
            )),
            mirror_lag: reg!(hist(
                "ferrite_proxy_mirror_lag_seconds",
                "Time from the owner's acknowledgement to the mirror's acknowledgement"
            )),
            dirty_keys: reg!(g("ferrite_proxy_dirty_keys", "Keys recorded by TRACK and not yet read by DIRTY")),
            registry,
        })
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Serve `GET /metrics` (and `/` with a pointer) until the process ends. Requests are read with a size bound
/// and a timeout; anything else gets 404/400.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                let mut tmp = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                true
            })
            .await;
            if !matches!(read, Ok(true)) {
                return;
            }
            let line = buf.split(|&c| c == b'\n').next().unwrap_or(b"");
            let line = String::from_utf8_lossy(line);
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, ctype, body) = if method != "GET" {
                ("405 Method Not Allowed", "text/plain", b"only GET\n".to_vec())
            } else if path == "/metrics" || path.starts_with("/metrics?") {
                ("200 OK", "text/plain; version=0.0.4", m.render())
            } else if path == "/" {
                ("200 OK", "text/plain", b"ferrite-proxy: see /metrics\n".to_vec())
            } else {
                ("404 Not Found", "text/plain", b"not found\n".to_vec())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(&body).await;
            let _ = sock.shutdown().await;
        });
    }
}
