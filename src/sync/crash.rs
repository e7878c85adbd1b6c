//! Crash-point hooks: the set code calls [`wrote`] after every counted
//! write to a segment (a write under the global lock, or one word of a
//! multi-word update), and asks [`crashing`] before releasing anything
//! while it unwinds. A test arms the hooks with `crash_after`.
//!
//! Two mirrored blocks, as in the rest of the shim:
//!
//! * **Production**: `crash_after(k, signal)` makes the process send itself
//!   `signal` after `k` more counted writes (the tests in
//!   `tests/crash_points.rs` and `tests/stale.rs`); `crash_countdown` says
//!   how many are left. A dead process runs no more code, so [`crashing`] is
//!   always `false`.
//! * **Loom**: `crash_after(k)` makes a model thread "die" after `k` more
//!   counted writes by panicking with `Crash` (the model catches it); while
//!   it unwinds [`crashing`] is `true`, so the set releases nothing, as a
//!   SIGKILLed process releases nothing; `someone_crashed` tells the
//!   model's host.

pub use hooks::*;

/// Production: a countdown and a signal, process-wide.
#[cfg(not(shmsem_loom))]
mod hooks {
    use crate::sync::{AtomicI32, AtomicU64, Ordering::Relaxed};

    /// Crash-point test mode: counted writes left before the process stops
    /// itself (0: off). See [`crash_after`].
    static CRASH_COUNTDOWN: AtomicU64 = AtomicU64::new(0);
    /// The signal [`wrote`] raises when the countdown reaches zero.
    static CRASH_SIGNAL: AtomicI32 = AtomicI32::new(0);

    /// Crash-point test mode: after `k` more writes to a segment under the
    /// global lock (or of a multi-word update), this process sends itself
    /// `signal` (SIGKILL: it dies there; SIGSTOP: it stops there, holding
    /// whatever it holds). `k = 0` turns the mode off. For tests; costs one
    /// relaxed load per counted write when off.
    pub fn crash_after(k: u64, signal: i32) {
        CRASH_SIGNAL.store(signal, Relaxed);
        CRASH_COUNTDOWN.store(k, Relaxed);
    }

    /// Counted writes left before the crash (see [`crash_after`]): with a
    /// large `k`, `k - crash_countdown()` is how many writes an update made.
    pub fn crash_countdown() -> u64 {
        CRASH_COUNTDOWN.load(Relaxed)
    }

    /// Called after every counted write to a segment.
    #[inline]
    pub fn wrote() {
        if CRASH_COUNTDOWN.load(Relaxed) != 0 {
            wrote_slow();
        }
    }

    #[cold]
    fn wrote_slow() {
        if CRASH_COUNTDOWN.fetch_sub(1, Relaxed) == 1 {
            // SAFETY: raise has no memory-safety preconditions.
            unsafe { libc::raise(CRASH_SIGNAL.load(Relaxed)) };
        }
    }

    /// Whether this thread is dying: never, in a real process (a killed
    /// process runs no more code; a stopped one runs none until resumed).
    /// Whether this thread is dying mid-update: never, outside the models.
    #[inline(always)]
    pub fn crashing() -> bool {
        false
    }
}

/// Loom: a countdown per model thread, and a panic for a death.
#[cfg(shmsem_loom)]
mod hooks {
    use crate::sync::{AtomicBool, Ordering};

    loom::thread_local! {
        /// This model thread's counted writes left before it "dies" (0: off).
        static CRASH_LEFT: core::cell::Cell<u64> = core::cell::Cell::new(0);
        /// Whether this model thread has "died" (its unwinding must not
        /// release anything: a dead process releases nothing).
        static CRASHED: core::cell::Cell<bool> = core::cell::Cell::new(false);
    }
    loom::lazy_static! {
        static ref SOMEONE_CRASHED: AtomicBool = AtomicBool::new(false);
    }

    /// Crash-point mode for a model thread: after `k` more counted writes
    /// the thread "dies": it panics with [`Crash`] (the model catches it),
    /// and while it unwinds nothing of the set is released.
    pub fn crash_after(k: u64) {
        CRASH_LEFT.with(|c| c.set(k));
    }

    /// The payload of a model thread's crash.
    pub struct Crash;

    /// Whether some model thread has died (for the models' hosts).
    pub fn someone_crashed() -> bool {
        // SYNC: SeqCst, as every model-only flag: pairs with the store in
        // `wrote` (loom explores every order anyway; nothing rides on it).
        SOMEONE_CRASHED.load(Ordering::SeqCst)
    }

    /// Whether this model thread is dying (set code skips its releases).
    pub fn crashing() -> bool {
        CRASHED.with(|c| c.get())
    }

    /// Counts a write in crash-point mode.
    #[inline]
    pub fn wrote() {
        let left = CRASH_LEFT.with(|c| c.get());
        if left == 0 {
            return;
        }
        CRASH_LEFT.with(|c| c.set(left - 1));
        if left == 1 {
            CRASHED.with(|c| c.set(true));
            // SYNC: pairs with the load in `someone_crashed`.
            SOMEONE_CRASHED.store(true, Ordering::SeqCst);
            std::panic::panic_any(Crash);
        }
    }
}
