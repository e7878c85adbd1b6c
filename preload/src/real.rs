//! The C library's functions the preload library stands in front of (open,
//! sigaction…), each found once with `dlsym(RTLD_NEXT)`: the next
//! definition after this library.

use std::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A function of the C library, looked up on first use (or earlier, by
/// calling [`Real::addr`] at load time where a later lookup would not be
/// safe: dlsym is not async-signal-safe).
pub(crate) struct Real {
    name: &'static CStr,
    addr: AtomicUsize,
}

impl Real {
    pub(crate) const fn new(name: &'static CStr) -> Real {
        Real {
            name,
            addr: AtomicUsize::new(0),
        }
    }

    /// Its address, or None if the C library has no such function.
    pub(crate) fn addr(&self) -> Option<usize> {
        // SYNC: Acquire pairs with the Release store below (only the
        // address is published, but it is an address of code read as data).
        let addr = self.addr.load(Ordering::Acquire);
        if addr != 0 {
            return Some(addr);
        }
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name is always
        // safe to call; it returns the next definition after this library
        // or null.
        let addr = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) } as usize;
        if addr == 0 {
            return None;
        }
        // SYNC: Release pairs with the Acquire load above; racing
        // initialisers store the same address.
        self.addr.store(addr, Ordering::Release);
        Some(addr)
    }
}
