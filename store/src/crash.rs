//! Crash reports: on SIGSEGV, SIGBUS, SIGFPE, SIGILL or SIGABRT the server writes a report to stderr (the log
//! file when `logfile` is set) in Redis's shape: a "crashed by signal" line, then a `STACK TRACE` section with
//! the faulting thread's backtrace, then dies of the same signal (so a core dump or the exit status still says
//! what happened). Only async-signal-safe calls are made in the handler (`write`, glibc's `backtrace` /
//! `backtrace_symbols_fd`, `sigaction`, `raise`); nothing is allocated.
//!
//! What it does not do: Redis's extra sections (INFO, client list, memory test) and the software watchdog.

use std::sync::atomic::{AtomicBool, Ordering};

static INSTALLED: AtomicBool = AtomicBool::new(false);

const SIGNALS: [libc::c_int; 5] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, libc::SIGABRT];

/// Install the handlers (once per process). Called by the `ferrite` binary at start-up, not by embedders.
pub fn install() {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    // glibc loads its unwinder on the first `backtrace` call (which allocates): do it now, not in the handler.
    let mut frames = [std::ptr::null_mut::<libc::c_void>(); 4];
    // SAFETY: `frames` has room for the 4 entries asked for.
    unsafe {
        libc::backtrace(frames.as_mut_ptr(), frames.len() as libc::c_int);
    }
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction is a valid starting value; the handler has the SA_SIGINFO signature and
        // only makes async-signal-safe calls. SA_ONSTACK uses the alternate stack Rust gives every thread (so a
        // stack overflow is reported too); SA_RESETHAND restores the default action for the final `raise`.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESETHAND | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn out(bytes: &[u8]) {
    // SAFETY: writing a valid buffer to fd 2; errors are ignored (nothing better can be done while crashing).
    unsafe {
        libc::write(2, bytes.as_ptr().cast(), bytes.len());
    }
}

/// Decimal digits of `n` into `buf`, without allocating.
fn num(n: i64, buf: &mut [u8; 24]) -> &[u8] {
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let mut b = [0u8; 24];
    out(b"\n\n=== FERRITE BUG REPORT START: Cut & paste starting from here ===\n");
    // SAFETY: getpid is async-signal-safe.
    out(num(i64::from(unsafe { libc::getpid() }), &mut b));
    out(b":M # ferrite ");
    out(env!("CARGO_PKG_VERSION").as_bytes());
    out(b" crashed by signal: ");
    out(num(i64::from(sig), &mut b));
    if !info.is_null() {
        out(b", si_code: ");
        // SAFETY: the kernel passes a valid siginfo_t with SA_SIGINFO.
        out(num(i64::from(unsafe { (*info).si_code }), &mut b));
    }
    out(b"\n\n------ STACK TRACE ------\n\nBacktrace (resolve the +0x offsets with `addr2line -f -C -e <binary>`):\n");
    let mut frames = [std::ptr::null_mut::<libc::c_void>(); 100];
    // SAFETY: `frames` has room for 100 entries; backtrace_symbols_fd writes straight to fd 2.
    unsafe {
        let n = libc::backtrace(frames.as_mut_ptr(), frames.len() as libc::c_int);
        libc::backtrace_symbols_fd(frames.as_ptr(), n, 2);
    }
    out(b"\n=== FERRITE BUG REPORT END. Make sure to include from START to END. ===\n\n");
    // The default action is back (SA_RESETHAND): die of the same signal. For a fault, returning would re-run the
    // faulting instruction; for a signal sent by another process, it would go on running.
    // SAFETY: raise is async-signal-safe.
    unsafe {
        libc::raise(sig);
    }
}

/// `DEBUG SEGFAULT`: crash the way a bad memory access does (the report above, then death by SIGSEGV).
pub fn segfault() -> ! {
    // SAFETY: raising a signal in our own process; the handler (or the default action) ends the process.
    unsafe {
        libc::raise(libc::SIGSEGV);
    }
    std::process::abort()
}
