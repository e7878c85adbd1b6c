//! The one concurrency shim: atomics, fences, futex wait/wake, clocks,
//! spinning, and (in [`crash`]) the crash-point hooks.
//!
//! Built the way crossbeam-utils builds its `primitive` module: two
//! mirrored blocks named `primitive`, one per configuration, exporting the
//! same items, and one `pub use primitive::*` — no cfg on each item.
//!
//! * **Production** (`not(shmsem_loom)`): `core`'s atomics; futex calls are
//!   shared (not `FUTEX_PRIVATE_FLAG`) futexes through rustix, so a wake
//!   crosses process boundaries (DESIGN.md decision 1); the clocks are
//!   CLOCK_MONOTONIC and `time(2)`.
//! * **Loom** (`shmsem_loom`): loom's atomics, and a futex is one Mutex +
//!   Condvar: the waiter compares the word under the mutex before sleeping,
//!   as the kernel compares under its hash-bucket lock, so no wake-up can be
//!   lost between check and sleep; a wake picks at most `n` sleepers on that
//!   word, oldest first, as the kernel does, so a protocol that wakes too few
//!   is caught. Time is a counter the models move with `advance_clock` (the
//!   one item only the loom block has). One processor, no wall clock.
//!
//! Both blocks export: `Ordering`, `fence`, every atomic type (`AtomicBool`,
//! `AtomicI8`..`AtomicI64`, `AtomicIsize`, `AtomicU8`..`AtomicU64`,
//! `AtomicUsize`, `AtomicPtr`), `monotonic_ns`, `realtime_secs`,
//! `futex_wait`, `futex_wait_low`, `futex_wake`, `spin_hint`, `current_cpu`, `online_cpus`,
//! `lone_thread`, `Mutex` (and `MutexGuard`), and the asymmetric fence pair `light_fence` /
//! `heavy_fence` (with `register_heavy_fence`). Under loom only the engine and the set are built, so the
//! items only the registry, liveness and shm modules use go unused there.
//!
//! No other module issues a futex system call or names a `core`/`std`
//! atomic: the workspace's `clippy.toml` bans them (`disallowed-types`,
//! `disallowed-methods`) everywhere but here. The atomic types are exported
//! as type aliases, not re-exports, because the lint matches the definition
//! a path resolves to: a re-export would carry the ban to every user of the
//! shim, an alias is the shim's own item. For the same reason `fence` is a
//! wrapper function.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod crash;

pub use crash::*;
pub use primitive::*;

/// How a futex wait ended. Callers re-check their condition in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Woken, or the word no longer held the expected value, or spurious.
    Woken,
    /// The absolute deadline passed.
    TimedOut,
    /// A signal handler ran (EINTR). Never under loom: the model has no
    /// signals.
    #[cfg_attr(shmsem_loom, allow(dead_code))]
    Interrupted,
}

/// Production: `core` atomics, shared futexes, the kernel's clocks.
#[cfg(not(shmsem_loom))]
mod primitive {
    use super::Wake;

    pub use core::sync::atomic::Ordering;

    /// The atomics (`core`'s; the same types as `shm_layout`'s). The whole
    /// family, so that no module needs `core`'s; the widths marked
    /// `allow(dead_code)` have no user yet, or only in some builds (the
    /// heap-built set of tests and models uses `AtomicI64` and `AtomicU8`).
    pub type AtomicBool = core::sync::atomic::AtomicBool;
    #[allow(dead_code)]
    pub type AtomicI8 = core::sync::atomic::AtomicI8;
    pub type AtomicI16 = core::sync::atomic::AtomicI16;
    pub type AtomicI32 = core::sync::atomic::AtomicI32;
    #[allow(dead_code)]
    pub type AtomicI64 = core::sync::atomic::AtomicI64;
    #[allow(dead_code)]
    pub type AtomicIsize = core::sync::atomic::AtomicIsize;
    #[allow(dead_code)]
    pub type AtomicU8 = core::sync::atomic::AtomicU8;
    pub type AtomicU16 = core::sync::atomic::AtomicU16;
    pub type AtomicU32 = core::sync::atomic::AtomicU32;
    pub type AtomicU64 = core::sync::atomic::AtomicU64;
    #[allow(dead_code)]
    pub type AtomicUsize = core::sync::atomic::AtomicUsize;
    #[allow(dead_code)]
    pub type AtomicPtr<T> = core::sync::atomic::AtomicPtr<T>;

    /// A memory fence (`core::sync::atomic::fence`).
    #[inline(always)]
    pub fn fence(order: Ordering) {
        core::sync::atomic::fence(order);
    }

    /// Nanoseconds on CLOCK_MONOTONIC.
    pub fn monotonic_ns() -> u64 {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    }

    /// Seconds since the epoch: `time(2)`, which glibc answers from the vDSO
    /// with one read of the kernel's current second (the value the kernel's
    /// own sem_otime takes), no system call; cheaper than clock_gettime of the
    /// coarse clock, and this is read on every operation.
    #[inline]
    pub fn realtime_secs() -> i64 {
        // SAFETY: time(NULL) writes nothing and has no preconditions.
        unsafe { libc::time(core::ptr::null_mut()) }
    }

    /// Sleeps while `*word == expected`, until woken or until the absolute
    /// CLOCK_MONOTONIC time `deadline_ns`. Always timed (DESIGN.md decision 2):
    /// an untimed wait is restarted by the kernel after an SA_RESTART handler,
    /// so it could never report EINTR.
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
    pub fn futex_wake(word: &AtomicU32, n: u32) {
        let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), n);
    }

    /// Sleeps while the low 32 bits of `*word` equal `expected`, until the
    /// absolute CLOCK_MONOTONIC time `deadline_ns` (or a wake, a signal,
    /// spuriously): [`futex_wait`] on the word's low half. The kernel
    /// reads the half; Rust code never makes a 32-bit access to the 64-bit
    /// atomic (the address goes to the system call as a raw pointer). A
    /// FUTEX_WAIT only reads the word, so it works in a PROT_READ shared
    /// mapping (a reader of a set waits for zero this way).
    pub fn futex_wait_low(word: &AtomicU64, expected: u32, deadline_ns: u64) -> Wake {
        let ts = libc::timespec {
            tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
        };
        let low = word as *const AtomicU64 as *const u32;
        let low = if cfg!(target_endian = "big") {
            low.wrapping_add(1)
        } else {
            low
        };
        // SAFETY: `low` points into the live, 4-byte-aligned 64-bit word
        // (8-byte aligned); FUTEX_WAIT_BITSET (shared: no PRIVATE flag)
        // only reads it, and reads `ts`, a valid timespec.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                low,
                libc::FUTEX_WAIT_BITSET,
                expected,
                &ts as *const libc::timespec,
                core::ptr::null::<u32>(),
                libc::FUTEX_BITSET_MATCH_ANY,
            )
        };
        if r == 0 {
            return Wake::Woken;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ETIMEDOUT) => Wake::TimedOut,
            Some(libc::EINTR) => Wake::Interrupted,
            _ => Wake::Woken, // EAGAIN: the half changed; anything else: re-check.
        }
    }

    /// A spin-wait hint.
    pub fn spin_hint() {
        core::hint::spin_loop();
    }

    /// A process-local mutex and its guard (std's).
    pub use std::sync::{Mutex, MutexGuard};

    /// The light half of an asymmetric fence pair: a compiler fence only.
    /// Together with a [`heavy_fence`] on another thread it orders as a
    /// SeqCst fence on both sides would: `membarrier(2)` makes every running
    /// thread of the process execute a full barrier before it returns, and a
    /// thread not running passed one when it was switched out, so each
    /// thread's program is split at some point into what the heavy side's
    /// later reads see and what sees the heavy side's earlier writes. The
    /// compiler fence keeps the compiler from moving accesses across the
    /// point the hardware would. Valid only after [`register_heavy_fence`]
    /// returned true in this process.
    #[inline(always)]
    pub fn light_fence() {
        // SYNC: pairs with `heavy_fence` on the reclaiming thread (above).
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
    }

    /// Registers this process for [`heavy_fence`]
    /// (`MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED`); false if the kernel has
    /// no private expedited membarrier (before Linux 4.14, or a seccomp
    /// filter refuses it): then no thread may rely on [`light_fence`].
    pub fn register_heavy_fence() -> bool {
        use rustix::thread::{membarrier, membarrier_query, MembarrierCommand as C};
        membarrier_query().contains_command(C::PrivateExpedited)
            && membarrier(C::RegisterPrivateExpedited).is_ok()
    }

    /// The heavy half (see [`light_fence`]):
    /// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, a few microseconds.
    /// False if it failed (then nothing may be concluded from it). A process
    /// that is not registered (EPERM: after an exec, or a fork on a kernel
    /// that does not pass the registration on) registers and tries again.
    pub fn heavy_fence() -> bool {
        use rustix::thread::{membarrier, MembarrierCommand as C};
        match membarrier(C::PrivateExpedited) {
            Ok(()) => true,
            Err(rustix::io::Errno::PERM) => {
                register_heavy_fence() && membarrier(C::PrivateExpedited).is_ok()
            }
            Err(_) => false,
        }
    }

    /// The CPU this thread runs on now.
    pub fn current_cpu() -> u32 {
        rustix::thread::sched_getcpu() as u32
    }

    /// Processors online in the system (not this process's affinity: a
    /// partner pinned elsewhere runs on another one), read once.
    pub fn online_cpus() -> u32 {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.load(Ordering::Relaxed);
        if n != 0 {
            return n;
        }
        // SAFETY: sysconf has no memory-safety preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.clamp(1, 4096) as u32;
        N.store(n, Ordering::Relaxed);
        n
    }

    /// Whether the calling thread is its process's lone locker: the first
    /// thread of the process to ask, for the life of the process (a forked
    /// child's only thread keeps the answer of the thread that forked). At most
    /// one thread of a process ever gets `true`, so that thread may count its
    /// lock sections in a process-table field with plain stores.
    #[inline]
    pub fn lone_thread() -> bool {
        static CLAIMED: AtomicBool = AtomicBool::new(false);
        std::thread_local! {
            // 0: not asked yet, 1: the lone thread, 2: another thread.
            static LONE: core::cell::Cell<u8> = const { core::cell::Cell::new(0) };
        }
        LONE.try_with(|l| match l.get() {
            0 => {
                let first = !CLAIMED.swap(true, Ordering::Relaxed);
                l.set(if first { 1 } else { 2 });
                first
            }
            x => x == 1,
        })
        // A thread being torn down counts as "another thread": the safe answer.
        .unwrap_or(false)
    }
}

/// Loom: loom's atomics, a Mutex + Condvar futex, a hand-moved clock, one
/// processor.
#[cfg(shmsem_loom)]
// Only the engine and the set are built under loom: the items the
// registry and liveness use are mirrored here but unused.
#[allow(dead_code)]
mod primitive {
    use super::Wake;
    use loom::sync::Condvar;

    pub use loom::sync::atomic::Ordering;

    /// The atomics (loom's; the same types as `shm_layout`'s under loom).
    pub type AtomicBool = loom::sync::atomic::AtomicBool;
    pub type AtomicI8 = loom::sync::atomic::AtomicI8;
    pub type AtomicI16 = loom::sync::atomic::AtomicI16;
    pub type AtomicI32 = loom::sync::atomic::AtomicI32;
    pub type AtomicI64 = loom::sync::atomic::AtomicI64;
    pub type AtomicIsize = loom::sync::atomic::AtomicIsize;
    pub type AtomicU8 = loom::sync::atomic::AtomicU8;
    pub type AtomicU16 = loom::sync::atomic::AtomicU16;
    pub type AtomicU32 = loom::sync::atomic::AtomicU32;
    pub type AtomicU64 = loom::sync::atomic::AtomicU64;
    pub type AtomicUsize = loom::sync::atomic::AtomicUsize;
    pub type AtomicPtr<T> = loom::sync::atomic::AtomicPtr<T>;

    /// A memory fence (loom's).
    #[inline(always)]
    pub fn fence(order: Ordering) {
        loom::sync::atomic::fence(order);
    }

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
        // SYNC: SeqCst pairs with the fetch_add in `advance_clock`: a model's
        // clock is one total order, as a real clock is.
        CLOCK.load(Ordering::SeqCst)
    }
    /// Advances loom's clock (a model's "timeout thread"); sleepers whose
    /// deadline has passed return TimedOut. Loom only.
    pub fn advance_clock(ns: u64) {
        // SYNC: pairs with the load in `monotonic_ns`.
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
        // SYNC: SeqCst under the futex mutex, as the kernel compares under
        // its bucket lock: pairs with the wakers' stores to `word`, which
        // precede their `futex_wake` (taking the same mutex).
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
    /// [`futex_wait`] on the low half of a 64-bit word, as the production
    /// block has it; under loom a check and a yield (no model sleeps so).
    #[allow(dead_code)]
    pub fn futex_wait_low(word: &AtomicU64, expected: u32, deadline_ns: u64) -> Wake {
        // SYNC: SeqCst as in `futex_wait`.
        if word.load(Ordering::SeqCst) as u32 != expected {
            return Wake::Woken;
        }
        if monotonic_ns() >= deadline_ns {
            return Wake::TimedOut;
        }
        loom::thread::yield_now();
        Wake::Woken
    }

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

    /// Loom's mutex and its guard.
    pub use loom::sync::{Mutex, MutexGuard};

    /// Whether the models' process has membarrier (see [`light_fence`]);
    /// std's atomic on purpose: a setting of the model, not a part of it.
    static MEMBARRIER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

    /// Models a process without membarrier (`false`): [`light_fence`] is
    /// then nothing, as a compiler fence is to the hardware. Loom only.
    pub fn model_membarrier(on: bool) {
        MEMBARRIER.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// What the pair [`light_fence`] / [`heavy_fence`] guarantees in
    /// production (a SeqCst fence on each side), as loom models it; nothing
    /// in a model without membarrier ([`model_membarrier`]).
    pub fn light_fence() {
        if MEMBARRIER.load(std::sync::atomic::Ordering::Relaxed) {
            // SYNC: pairs with the SeqCst fence of `heavy_fence`.
            loom::sync::atomic::fence(Ordering::SeqCst);
        }
    }
    /// Nothing to register under loom.
    pub fn register_heavy_fence() -> bool {
        true
    }
    /// The heavy side: a SeqCst fence (see [`light_fence`]).
    pub fn heavy_fence() -> bool {
        // SYNC: pairs with the SeqCst fence of `light_fence`.
        loom::sync::atomic::fence(Ordering::SeqCst);
        true
    }
    /// Loom models one processor: sleepers never spin.
    pub fn current_cpu() -> u32 {
        0
    }
    /// One processor.
    pub fn online_cpus() -> u32 {
        1
    }
    /// Every model thread counts as "another thread" (the safe answer); the
    /// models build their `Me` themselves.
    pub fn lone_thread() -> bool {
        false
    }
}
