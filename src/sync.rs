//! The one concurrency shim: atomics, futex wait/wake, clocks, spinning.
//!
//! In production the atomics are `core`'s and the futex calls are shared
//! (not `FUTEX_PRIVATE_FLAG`) futexes through rustix, so a wake crosses
//! process boundaries (DESIGN.md decision 1). Under `cfg(shmsem_loom)` the
//! atomics are loom's and a futex is one Mutex + Condvar: the waiter compares
//! the word under the mutex before sleeping, as the kernel compares under its
//! hash-bucket lock, so no wake-up can be lost between check and sleep; a
//! wake picks at most `n` sleepers on that word, oldest first, as the kernel
//! does, so a protocol that wakes too few is caught.
//! No other module issues a futex system call or names an atomic type.

pub use shm_layout::{
    AtomicBool, AtomicI16, AtomicI32, AtomicI64, AtomicU16, AtomicU32, AtomicU64, AtomicU8,
};

#[cfg(not(shmsem_loom))]
pub use core::sync::atomic::{fence, Ordering};
#[cfg(shmsem_loom)]
use loom::sync::atomic::AtomicBool as LoomBool;
#[cfg(shmsem_loom)]
pub use loom::sync::atomic::{fence, Ordering};

/// How a futex wait ended. Callers re-check their condition in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Woken, or the word no longer held the expected value, or spurious.
    Woken,
    /// The absolute deadline passed.
    TimedOut,
    /// A signal handler ran (EINTR).
    Interrupted,
}

/// Nanoseconds on CLOCK_MONOTONIC.
#[cfg(not(shmsem_loom))]
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Seconds since the epoch: `time(2)`, which glibc answers from the vDSO
/// with one read of the kernel's current second (the value the kernel's
/// own sem_otime takes), no system call; cheaper than clock_gettime of the
/// coarse clock, and this is read on every operation.
#[cfg(not(shmsem_loom))]
#[inline]
pub fn realtime_secs() -> i64 {
    // SAFETY: time(NULL) writes nothing and has no preconditions.
    unsafe { libc::time(core::ptr::null_mut()) }
}

/// Sleeps while `*word == expected`, until woken or until the absolute
/// CLOCK_MONOTONIC time `deadline_ns`. Always timed (DESIGN.md decision 2):
/// an untimed wait is restarted by the kernel after an SA_RESTART handler,
/// so it could never report EINTR.
#[cfg(not(shmsem_loom))]
pub fn futex_wait(word: &AtomicU32, expected: u32, deadline_ns: u64) -> Wake {
    use rustix::io::Errno;
    use rustix::thread::futex;
    let ts = rustix::time::Timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as i64,
        tv_nsec: (deadline_ns % 1_000_000_000) as i64,
    };
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline; empty
    // flags mean a shared futex, keyed on the page, visible to every process
    // that maps it.
    // The bitset matches every waker (FUTEX_BITSET_MATCH_ANY).
    match futex::wait_bitset(
        word,
        futex::Flags::empty(),
        expected,
        Some(&ts),
        core::num::NonZeroU32::MAX,
    ) {
        Ok(()) => Wake::Woken,
        Err(Errno::TIMEDOUT) => Wake::TimedOut,
        Err(Errno::INTR) => Wake::Interrupted,
        Err(_) => Wake::Woken, // EAGAIN: value changed; anything else: re-check.
    }
}

/// Wakes up to `n` sleepers on `word` (shared futex).
#[cfg(not(shmsem_loom))]
pub fn futex_wake(word: &AtomicU32, n: u32) {
    let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), n);
}

/// A spin-wait hint.
#[cfg(not(shmsem_loom))]
pub fn spin_hint() {
    core::hint::spin_loop();
}

/// Gives the processor away (between spinning and sleeping).
#[cfg(not(shmsem_loom))]
pub fn yield_now() {
    std::thread::yield_now();
}

/// The CPU this thread runs on now.
#[cfg(not(shmsem_loom))]
pub fn current_cpu() -> u32 {
    rustix::thread::sched_getcpu() as u32
}

/// Processors online in the system (not this process's affinity: a
/// partner pinned elsewhere runs on another one), read once.
#[cfg(not(shmsem_loom))]
pub fn online_cpus() -> u32 {
    static N: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    let n = N.load(core::sync::atomic::Ordering::Relaxed);
    if n != 0 {
        return n;
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.clamp(1, 4096) as u32;
    N.store(n, core::sync::atomic::Ordering::Relaxed);
    n
}

/// Crash-point test mode: counted writes left before the process stops
/// itself (0: off). See [`crash_after`].
#[cfg(not(shmsem_loom))]
static CRASH_COUNTDOWN: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
#[cfg(not(shmsem_loom))]
static CRASH_SIGNAL: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(0);

/// Crash-point test mode: after `k` more writes to a segment under the
/// global lock (or of a multi-word update), this process sends itself
/// `signal` (SIGKILL: it dies there; SIGSTOP: it stops there, holding
/// whatever it holds). `k = 0` turns the mode off. For tests; costs one
/// relaxed load per counted write when off.
#[cfg(not(shmsem_loom))]
pub fn crash_after(k: u64, signal: i32) {
    CRASH_SIGNAL.store(signal, core::sync::atomic::Ordering::Relaxed);
    CRASH_COUNTDOWN.store(k, core::sync::atomic::Ordering::Relaxed);
}

/// Counted writes left before the crash (see [`crash_after`]): with a
/// large `k`, `k - crash_countdown()` is how many writes an update made.
#[cfg(not(shmsem_loom))]
pub fn crash_countdown() -> u64 {
    CRASH_COUNTDOWN.load(core::sync::atomic::Ordering::Relaxed)
}

/// Whether the calling thread is its process's lone locker: the first
/// thread of the process to ask, for the life of the process (a forked
/// child's only thread keeps the answer of the thread that forked). At most
/// one thread of a process ever gets `true`, so that thread may count its
/// lock sections in a process-table field with plain stores.
#[cfg(not(shmsem_loom))]
#[inline]
pub fn lone_thread() -> bool {
    use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
    static CLAIMED: AtomicBool = AtomicBool::new(false);
    std::thread_local! {
        // 0: not asked yet, 1: the lone thread, 2: another thread.
        static LONE: core::cell::Cell<u8> = const { core::cell::Cell::new(0) };
    }
    LONE.try_with(|l| match l.get() {
        0 => {
            let first = !CLAIMED.swap(true, Relaxed);
            l.set(if first { 1 } else { 2 });
            first
        }
        x => x == 1,
    })
    // A thread being torn down counts as "another thread": the safe answer.
    .unwrap_or(false)
}

/// Called after every counted write to a segment.
#[cfg(not(shmsem_loom))]
#[inline]
pub fn wrote() {
    if CRASH_COUNTDOWN.load(core::sync::atomic::Ordering::Relaxed) != 0 {
        wrote_slow();
    }
}

#[cfg(not(shmsem_loom))]
#[cold]
fn wrote_slow() {
    use core::sync::atomic::Ordering::Relaxed;
    if CRASH_COUNTDOWN.fetch_sub(1, Relaxed) == 1 {
        // SAFETY: raise has no memory-safety preconditions.
        unsafe { libc::raise(CRASH_SIGNAL.load(Relaxed)) };
    }
}

#[cfg(shmsem_loom)]
mod loom_futex {
    use super::*;
    use loom::sync::{Condvar, Mutex};

    /// The sleepers, as the kernel's futex hash keeps them: word address
    /// and ticket, in arrival order.
    #[derive(Default)]
    struct Sleepers {
        next: u64,
        queue: Vec<(usize, u64)>,
    }

    loom::lazy_static! {
        static ref FUTEX: (Mutex<Sleepers>, Condvar) =
            (Mutex::new(Sleepers::default()), Condvar::new());
        static ref CLOCK: AtomicU64 = AtomicU64::new(1);
    }

    /// Loom's clock: a counter the models advance by hand.
    pub fn monotonic_ns() -> u64 {
        CLOCK.load(Ordering::SeqCst)
    }
    /// Advances loom's clock (a model's "timeout thread"); sleepers whose
    /// deadline has passed return TimedOut.
    pub fn advance_clock(ns: u64) {
        CLOCK.fetch_add(ns, Ordering::SeqCst);
        let _g = FUTEX.0.lock().unwrap();
        FUTEX.1.notify_all();
    }
    /// Loom has no wall clock.
    pub fn realtime_secs() -> i64 {
        0
    }
    /// Compare-then-sleep under the one mutex, until a wake for this word
    /// picks us or the deadline passes.
    pub fn futex_wait(word: &AtomicU32, expected: u32, deadline_ns: u64) -> Wake {
        let mut g = FUTEX.0.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return Wake::Woken;
        }
        if monotonic_ns() >= deadline_ns {
            return Wake::TimedOut;
        }
        let ticket = g.next;
        g.next += 1;
        g.queue.push((word as *const AtomicU32 as usize, ticket));
        loop {
            g = FUTEX.1.wait(g).unwrap();
            let Some(i) = g.queue.iter().position(|&(_, t)| t == ticket) else {
                return Wake::Woken;
            };
            if monotonic_ns() >= deadline_ns {
                g.queue.remove(i);
                return Wake::TimedOut;
            }
        }
    }
    /// Wakes the `n` longest sleepers on `word`, as FUTEX_WAKE does.
    pub fn futex_wake(word: &AtomicU32, n: u32) {
        let mut g = FUTEX.0.lock().unwrap();
        let addr = word as *const AtomicU32 as usize;
        let mut woken = 0;
        g.queue.retain(|&(a, _)| {
            let wake = a == addr && woken < n;
            woken += wake as u32;
            !wake
        });
        if woken > 0 {
            FUTEX.1.notify_all();
        }
    }
    /// Spinning is a yield under loom.
    pub fn spin_hint() {
        loom::thread::yield_now();
    }
    /// A yield.
    pub fn yield_now() {
        loom::thread::yield_now();
    }
    loom::thread_local! {
        /// This model thread's counted writes left before it "dies" (0: off).
        static CRASH_LEFT: core::cell::Cell<u64> = core::cell::Cell::new(0);
        /// Whether this model thread has "died" (its unwinding must not
        /// release anything: a dead process releases nothing).
        static CRASHED: core::cell::Cell<bool> = core::cell::Cell::new(false);
    }
    loom::lazy_static! {
        static ref SOMEONE_CRASHED: super::LoomBool = super::LoomBool::new(false);
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
            SOMEONE_CRASHED.store(true, Ordering::SeqCst);
            std::panic::panic_any(Crash);
        }
    }
    /// Loom models one processor: sleepers never spin.
    pub fn current_cpu() -> u32 {
        0
    }
    /// One processor.
    pub fn online_cpus() -> u32 {
        1
    }
}
#[cfg(shmsem_loom)]
pub use loom_futex::*;
