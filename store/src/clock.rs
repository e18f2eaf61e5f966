//! A cheap wall clock for the command path.
//!
//! Every command reads the clock twice (its time and the end of its
//! duration). A vDSO `clock_gettime` costs ~35 ns on the VMs this runs on;
//! reading the CPU's time-stamp counter costs ~10 ns. [`now_us`] reads the
//! real wall clock at most once per millisecond per thread and extrapolates
//! from it with the TSC in between, at the TSC rate measured against the
//! wall clock since the first reading.
//!
//! It is only used where the kernel itself trusts the TSC (x86_64, the
//! `tsc` clocksource, `constant_tsc` and `nonstop_tsc`); anywhere else, and
//! until the rate has been measured over 100 ms, it is the plain system
//! clock. What it does not know: a step of the system clock (settimeofday)
//! is seen up to 1 ms late, like a reading taken 1 ms earlier.

/// Current unix time in microseconds (see the module documentation).
#[inline]
pub fn now_us() -> i64 {
    #[cfg(target_arch = "x86_64")]
    {
        tsc::now_ns().div_euclid(1000)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        system_ns().div_euclid(1000)
    }
}

/// The system wall clock in nanoseconds since the epoch.
fn system_ns() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

#[cfg(target_arch = "x86_64")]
mod tsc {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// Re-read the wall clock after this long (in nanoseconds).
    const ANCHOR_NS: u64 = 1_000_000;
    /// Measure the TSC rate over at least this long before using it.
    const CALIBRATE_NS: i64 = 100_000_000;
    /// A wall clock reading taking more TSC ticks than this was interrupted.
    const GOOD_TICKS: u64 = 10_000;

    /// Nanoseconds per TSC tick, as a 32.32 fixed-point number (0 = not
    /// measured yet).
    pub(super) static MULT: AtomicU64 = AtomicU64::new(0);
    /// TSC ticks in ANCHOR_NS at the measured rate.
    static MAX_TICKS: AtomicU64 = AtomicU64::new(0);
    /// The first (tsc, wall ns) pair; the rate is measured from it.
    static BASE: OnceLock<(u64, i64)> = OnceLock::new();
    static USABLE: OnceLock<bool> = OnceLock::new();

    thread_local! {
        /// This thread's last (tsc, wall ns) reading.
        static ANCHOR: Cell<(u64, i64)> = const { Cell::new((0, 0)) };
    }

    fn rdtsc() -> u64 {
        // SAFETY: RDTSC exists on every x86_64 CPU and has no side effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// Does the kernel keep time with an invariant TSC?
    pub(super) fn usable() -> bool {
        *USABLE.get_or_init(|| {
            let source = std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
                .unwrap_or_default();
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or("");
            let has = |f: &str| flags.split_whitespace().any(|x| x == f);
            source.trim() == "tsc" && has("constant_tsc") && has("nonstop_tsc")
        })
    }

    #[inline]
    pub fn now_ns() -> i64 {
        let mult = MULT.load(Ordering::Relaxed);
        if mult != 0 {
            let (a_tsc, a_ns) = ANCHOR.with(Cell::get);
            // A counter behind the anchor (another CPU) wraps to a huge delta and re-anchors.
            let d = rdtsc().wrapping_sub(a_tsc);
            if a_ns != 0 && d < MAX_TICKS.load(Ordering::Relaxed) {
                return a_ns + ((d as u128 * mult as u128) >> 32) as i64;
            }
        }
        anchor()
    }

    /// Read the wall clock, make it this thread's anchor and refine the rate.
    #[cold]
    fn anchor() -> i64 {
        if !usable() {
            return super::system_ns();
        }
        // A reading counts only if the TSC read on both sides of it are close together (not
        // preempted in between); the pair (midpoint, wall clock) is then good to a few microseconds.
        let mut ns = 0;
        for _ in 0..4 {
            let a = rdtsc();
            ns = super::system_ns();
            let b = rdtsc();
            if b.wrapping_sub(a) < GOOD_TICKS {
                let t = a + (b - a) / 2;
                let _ = ANCHOR.try_with(|c| c.set((t, ns)));
                let &(t0, ns0) = BASE.get_or_init(|| (t, ns));
                let (dt, dns) = (t.wrapping_sub(t0), ns - ns0);
                if dns >= CALIBRATE_NS && dt > 0 && dt < (1 << 62) {
                    let mult = ((dns as u128) << 32) / dt as u128;
                    if mult > 0 && mult < u64::MAX as u128 {
                        MAX_TICKS.store(((ANCHOR_NS as u128) << 32).div_ceil(mult) as u64, Ordering::Relaxed);
                        MULT.store(mult as u64, Ordering::Relaxed);
                    }
                }
                break;
            }
        }
        ns
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn follows_the_system_clock() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut prev = 0;
        let mut n = 0u64;
        while std::time::Instant::now() < deadline {
            let sys = super::system_ns() / 1000;
            let fast = super::now_us();
            let sys2 = super::system_ns() / 1000;
            // Within 2 us of the system clock read around it.
            assert!(fast >= sys - 2 && fast <= sys2 + 2, "{sys} {fast} {sys2}");
            assert!(fast >= prev - 2, "went back: {prev} -> {fast}");
            prev = fast;
            n += 1;
            if n.is_multiple_of(1000) {
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
        }
        // Where the TSC is usable, the fast path was taken (the rate was measured).
        #[cfg(target_arch = "x86_64")]
        assert!(!super::tsc::usable() || super::tsc::MULT.load(std::sync::atomic::Ordering::Relaxed) != 0);
    }
}
