//! Memory accounting: the `ferrite` binary's global allocator is mimalloc
//! wrapped in a counter of the bytes it hands out (usable sizes, like
//! Redis's zmalloc), so `used_memory` and `maxmemory` see what the process
//! really allocated. Counts are kept per thread and folded into a global
//! counter every 64 KiB of change, so allocation stays contention-free.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

static USED: AtomicIsize = AtomicIsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);
const FLUSH: isize = 64 * 1024;

thread_local! {
    static LOCAL: Cell<isize> = const { Cell::new(0) };
}

#[inline]
fn account(delta: isize) {
    // `try_with`: TLS may already be gone while a thread exits.
    let folded = LOCAL.try_with(|c| {
        let v = c.get() + delta;
        if v.abs() >= FLUSH {
            USED.fetch_add(v, Ordering::Relaxed);
            c.set(0);
        } else {
            c.set(v);
        }
    });
    if folded.is_err() {
        USED.fetch_add(delta, Ordering::Relaxed);
    }
}

/// mimalloc with byte accounting.
pub struct CountingMi;

unsafe impl GlobalAlloc for CountingMi {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract of GlobalAlloc::alloc.
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !p.is_null() {
            // SAFETY: p was just returned by mimalloc.
            account(unsafe { mimalloc::MiMalloc.usable_size(p) } as isize);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract of GlobalAlloc::alloc_zeroed.
        let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            // SAFETY: p was just returned by mimalloc.
            account(unsafe { mimalloc::MiMalloc.usable_size(p) } as isize);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from this allocator (GlobalAlloc contract).
        unsafe {
            account(-(mimalloc::MiMalloc.usable_size(ptr) as isize));
            mimalloc::MiMalloc.dealloc(ptr, layout)
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: ptr came from this allocator (GlobalAlloc contract).
        unsafe {
            let old = mimalloc::MiMalloc.usable_size(ptr) as isize;
            let p = mimalloc::MiMalloc.realloc(ptr, layout, new_size);
            if !p.is_null() {
                account(mimalloc::MiMalloc.usable_size(p) as isize - old);
            }
            p
        }
    }
}

/// Fold this thread's pending count into the global counter (eviction
/// wants an exact figure right after freeing).
pub fn flush_local() {
    let _ = LOCAL.try_with(|c| {
        let v = c.replace(0);
        if v != 0 {
            USED.fetch_add(v, Ordering::Relaxed);
        }
    });
}

/// Called once by the binary after installing `CountingMi`.
pub fn mark_installed() {
    INSTALLED.store(true, Ordering::Relaxed);
}

/// Bytes currently allocated, if the counting allocator is installed.
pub fn allocated() -> Option<usize> {
    INSTALLED.load(Ordering::Relaxed).then(|| USED.load(Ordering::Relaxed).max(0) as usize)
}

/// The process's resident set size in bytes (from /proc/self/statm).
pub fn rss() -> usize {
    let page = 4096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<usize>().ok()))
        .map_or(0, |p| p * page)
}

/// `used_memory`: allocated bytes when counted, else the RSS.
pub fn used_memory() -> usize {
    allocated().unwrap_or_else(rss)
}
