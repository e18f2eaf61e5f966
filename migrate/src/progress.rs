//! Progress display: indicatif bars (slots done/total with ETA, keys and
//! bytes copied with rates, replication lag), or nothing (`--quiet`), or one
//! JSON object per second on stderr (`--json`). The figures come from the
//! metrics, refreshed by a background thread.

use crate::metrics;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Quiet,
    Json,
}

pub struct Progress {
    mode: Mode,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
    mp: Option<MultiProgress>,
}

fn lag_totals() -> (i64, i64) {
    let m = metrics::get();
    let mut bytes = 0;
    let mut ms = 0;
    for mf in m.registry.gather() {
        let name = mf.get_name();
        for metric in mf.get_metric() {
            if name == "ferrite_migrate_replication_lag_bytes" {
                bytes += metric.get_gauge().get_value() as i64;
            } else if name == "ferrite_migrate_replication_lag_milliseconds" {
                ms = ms.max(metric.get_gauge().get_value() as i64);
            }
        }
    }
    (bytes, ms)
}

impl Progress {
    /// Start displaying; `total` = slots in scope.
    pub fn start(mode: Mode, total: u64) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        if mode == Mode::Quiet {
            return Progress { mode, stop, handle: None, mp: None };
        }
        let st = stop.clone();
        if mode == Mode::Json {
            let handle = std::thread::spawn(move || {
                let t0 = Instant::now();
                while !st.load(Ordering::Relaxed) {
                    let m = metrics::get();
                    let (lb, lm) = lag_totals();
                    eprintln!(
                        "{}",
                        serde_json::json!({
                            "event": "progress",
                            "elapsed_s": t0.elapsed().as_secs_f64(),
                            "slots_total": total,
                            "slots_flipped": m.slots.with_label_values(&["flipped"]).get(),
                            "keys_copied": m.keys_copied.get(),
                            "bytes_copied": m.bytes_copied.get(),
                            "lag_bytes": lb,
                            "lag_ms": lm,
                        })
                    );
                    for _ in 0..10 {
                        if st.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            });
            return Progress { mode, stop, handle: Some(handle), mp: None };
        }
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5));
        let slots = mp.add(ProgressBar::new(total));
        slots.set_style(
            ProgressStyle::with_template("slots  [{bar:40}] {pos}/{len} flipped  {elapsed_precise} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let keys = mp.add(ProgressBar::new_spinner());
        keys.set_style(
            ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let lag = mp.add(ProgressBar::new_spinner());
        lag.set_style(ProgressStyle::with_template("  {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut last = (Instant::now(), 0u64, 0u64);
            let mut rate = (0.0, 0.0);
            while !st.load(Ordering::Relaxed) {
                let m = metrics::get();
                slots.set_position(m.slots.with_label_values(&["flipped"]).get().max(0) as u64);
                let (k, b) = (m.keys_copied.get(), m.bytes_copied.get());
                let dt = last.0.elapsed().as_secs_f64();
                if dt >= 1.0 {
                    rate = ((k - last.1) as f64 / dt, (b - last.2) as f64 / dt);
                    last = (Instant::now(), k, b);
                }
                keys.set_message(format!(
                    "keys {k} ({:.0}/s)  bytes {:.1} MB ({:.1} MB/s)  re-copied {}  errors {}  [{}s]",
                    rate.0,
                    b as f64 / 1e6,
                    rate.1 / 1e6,
                    m.keys_recopied.get(),
                    m.copy_errors.get(),
                    t0.elapsed().as_secs()
                ));
                keys.tick();
                let (lb, lm) = lag_totals();
                lag.set_message(format!("replication lag {lb} bytes, {lm} ms"));
                std::thread::sleep(Duration::from_millis(200));
            }
            slots.set_position(metrics::get().slots.with_label_values(&["flipped"]).get().max(0) as u64);
            slots.abandon();
            keys.abandon();
            lag.abandon();
        });
        Progress { mode, stop, handle: Some(handle), mp: Some(mp) }
    }

    /// Print a line above the bars (or to stderr).
    pub fn println(&self, line: &str) {
        if self.mode == Mode::Quiet {
            return;
        }
        match &self.mp {
            Some(mp) if !mp.is_hidden() => {
                let _ = mp.println(line);
            }
            _ => eprintln!("{line}"),
        }
    }

    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
