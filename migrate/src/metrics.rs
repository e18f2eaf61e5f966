//! Prometheus metrics (all named `ferrite_migrate_*`) and a minimal HTTP
//! endpoint serving them (`GET /metrics`, any other path = 404).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::Duration;

pub struct Metrics {
    pub registry: Registry,
    /// Slots per state (`pending`, `copied`, `flipped`).
    pub slots: IntGaugeVec,
    pub keys_copied: IntCounter,
    pub bytes_copied: IntCounter,
    pub keys_recopied: IntCounter,
    pub copy_errors: IntCounter,
    /// Commands of the replication stream applied to Ferrite.
    pub stream_commands: IntCounterVec,
    /// Replication lag per source master, bytes (master offset - applied).
    pub lag_bytes: IntGaugeVec,
    /// Replication lag per source master, milliseconds since the last time
    /// the applied offset caught up with the master's.
    pub lag_ms: IntGaugeVec,
    pub applied_offset: IntGaugeVec,
    pub pause_seconds: Histogram,
    pub verify_mismatches: IntGauge,
    pub source_refreshes: IntCounter,
}

fn build() -> Metrics {
    let registry = Registry::new();
    let slots =
        IntGaugeVec::new(Opts::new("ferrite_migrate_slots", "Slots in scope per migration state"), &["state"]).unwrap();
    let keys_copied = IntCounter::new("ferrite_migrate_keys_copied_total", "Keys written to Ferrite").unwrap();
    let bytes_copied =
        IntCounter::new("ferrite_migrate_bytes_copied_total", "Payload bytes written to Ferrite").unwrap();
    let keys_recopied =
        IntCounter::new("ferrite_migrate_keys_recopied_total", "Dirty keys copied again (scan method)").unwrap();
    let copy_errors = IntCounter::new("ferrite_migrate_copy_errors_total", "Keys or commands Ferrite refused").unwrap();
    let stream_commands = IntCounterVec::new(
        Opts::new("ferrite_migrate_stream_commands_total", "Replication stream commands per outcome"),
        &["outcome"],
    )
    .unwrap();
    let lag_bytes = IntGaugeVec::new(
        Opts::new("ferrite_migrate_replication_lag_bytes", "Source master offset minus applied offset"),
        &["master"],
    )
    .unwrap();
    let lag_ms = IntGaugeVec::new(
        Opts::new("ferrite_migrate_replication_lag_milliseconds", "Time since the applied offset last caught up"),
        &["master"],
    )
    .unwrap();
    let applied_offset = IntGaugeVec::new(
        Opts::new("ferrite_migrate_replication_applied_offset", "Replication offset applied to Ferrite"),
        &["master"],
    )
    .unwrap();
    let pause_seconds = Histogram::with_opts(
        HistogramOpts::new("ferrite_migrate_pause_seconds", "Duration slots stayed paused at the proxies")
            .buckets(vec![0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]),
    )
    .unwrap();
    let verify_mismatches =
        IntGauge::new("ferrite_migrate_verify_mismatches", "Keys that differed in the last verify").unwrap();
    let source_refreshes =
        IntCounter::new("ferrite_migrate_source_topology_refreshes_total", "Source topology re-reads").unwrap();
    for c in [&keys_copied, &bytes_copied, &keys_recopied, &copy_errors, &source_refreshes] {
        registry.register(Box::new(c.clone())).unwrap();
    }
    registry.register(Box::new(slots.clone())).unwrap();
    registry.register(Box::new(stream_commands.clone())).unwrap();
    registry.register(Box::new(lag_bytes.clone())).unwrap();
    registry.register(Box::new(lag_ms.clone())).unwrap();
    registry.register(Box::new(applied_offset.clone())).unwrap();
    registry.register(Box::new(pause_seconds.clone())).unwrap();
    registry.register(Box::new(verify_mismatches.clone())).unwrap();
    Metrics {
        registry,
        slots,
        keys_copied,
        bytes_copied,
        keys_recopied,
        copy_errors,
        stream_commands,
        lag_bytes,
        lag_ms,
        applied_offset,
        pause_seconds,
        verify_mismatches,
        source_refreshes,
    }
}

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(build)
}

/// Text exposition of every metric.
pub fn render() -> Vec<u8> {
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&get().registry.gather(), &mut out);
    out
}

/// Serve `/metrics` on `addr` in a background thread.
pub fn serve(addr: &str) -> crate::Result<std::net::SocketAddr> {
    let l = TcpListener::bind(addr).map_err(|e| crate::Error::Config(format!("--metrics-listen {addr}: {e}")))?;
    let local = l.local_addr()?;
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(Duration::from_secs(2))).ok();
            s.set_write_timeout(Some(Duration::from_secs(2))).ok();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while req.len() < 8192 && !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let first = req.split(|b| *b == b'\n').next().unwrap_or_default();
            let resp = if first.starts_with(b"GET /metrics") {
                let body = render();
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            };
            let _ = s.write_all(&resp);
        }
    });
    Ok(local)
}
