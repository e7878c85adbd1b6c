//! Signals: a handler that runs while a call is blocked makes the call
//! return EINTR, as the kernel's semop does.
//!
//! The kernel's rule (ipc/sem.c, `__do_semtimedop`): a call that does not
//! block never returns EINTR; a call that blocks returns EINTR when a
//! signal is pending as it sleeps or wakes it, with or without SA_RESTART,
//! unless a waker completed its operation first (then that result). A
//! signal that arrives while the call is still evaluating is pending when
//! it goes to sleep, so it counts too.
//!
//! shmsem blocks in user space: it spins, sleeps in timed futex slices
//! (SWEEP_SLICE_NS) and sweeps between them. The futex call itself returns
//! EINTR when a handler runs during it, but a handler that runs while the
//! thread is in user space — in the spin, a sweep, between two slices, or
//! at the end of a slice that timed out with the signal already pending —
//! leaves no trace the call could see. So every handler counts itself:
//!
//! * each thread has a counter of the handlers that ran on it
//!   ([`handler_ran`] adds one);
//! * a call takes a [`HandlerMark`] before the point where it may block,
//!   and a blocked call that sees the counter moved gives up with EINTR
//!   (after cancelling, where a completion that won the race is reported
//!   instead), at every point where it would otherwise go back to sleep.
//!
//! A process-directed signal is delivered to one thread, and only a call of
//! that thread is interrupted, as in the kernel: hence one counter per
//! thread. The counter is a native thread-local with constant
//! initialisation and no destructor, reached without any lazy set-up or
//! allocation in an executable or in a library loaded at start-up
//! (`LD_PRELOAD`), so bumping it is async-signal-safe there. (In a library
//! loaded later with `dlopen`, glibc may allocate a thread's block of that
//! library's thread-locals on its first access.)
//!
//! Handlers count themselves when they are installed through [`sigaction`]
//! (a drop-in for `libc::sigaction` that wraps the handler), or when they
//! call [`handler_ran`] themselves. The preload library installs every
//! handler of the program it runs through the same wrapping, so C programs
//! need nothing.
//!
//! Under loom (cfg `shmsem_loom`) there are no signals: the count never
//! moves.

#[cfg(not(shmsem_loom))]
pub use install::{sigaction, RealSigaction};
#[doc(hidden)]
#[cfg(not(shmsem_loom))]
pub use install::{sigaction_via, signal_via};

/// Records that a signal handler ran on the calling thread: a shmsem call
/// blocked on this thread (one that this handler interrupted) then returns
/// EINTR instead of going back to sleep.
///
/// Async-signal-safe: one relaxed atomic add on a thread-local. Call it
/// from every handler the program installs by other means than
/// [`sigaction`] (`libc::sigaction`, `nix`, `signal-hook`...), anywhere in
/// the handler: the blocked call looks at the count only once the handler
/// has returned. Outside a handler it has no effect (no call of the thread
/// is in progress then).
#[inline]
pub fn handler_ran() {
    counter::bump();
}

/// This thread's handler count at the moment a call may start blocking.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandlerMark(u64);

impl HandlerMark {
    /// The mark of now.
    #[inline]
    pub fn now() -> HandlerMark {
        HandlerMark(counter::read())
    }

    /// Whether a handler has run on this thread since the mark was taken.
    #[inline]
    pub fn ran_since(self) -> bool {
        counter::read() != self.0
    }
}

/// The per-thread counter.
#[cfg(not(shmsem_loom))]
mod counter {
    use crate::sync::{AtomicU64, Ordering};

    std::thread_local! {
        /// Handlers that ran on this thread. An atomic, not a Cell: the
        /// handler interrupts the thread's own code, which must read the
        /// value from memory each time (a Cell's loads could be merged
        /// across the loop that waits). `const` and no destructor: a
        /// native thread-local with no lazy registration, always alive.
        static RAN: AtomicU64 = const { AtomicU64::new(0) };
    }

    #[inline]
    pub(super) fn bump() {
        // SYNC: Relaxed: the only reader is the interrupted code of the
        // same thread, which sees its own handler's writes in program
        // order; nothing is published through the count.
        let _ = RAN.try_with(|n| n.fetch_add(1, Ordering::Relaxed));
    }

    #[inline]
    pub(super) fn read() -> u64 {
        RAN.try_with(|n| n.load(Ordering::Relaxed)).unwrap_or(0)
    }
}

/// Loom: no signals.
#[cfg(shmsem_loom)]
mod counter {
    #[inline]
    pub(super) fn bump() {}

    #[inline]
    pub(super) fn read() -> u64 {
        0
    }
}

/// Installing handlers wrapped so that they count themselves.
///
/// The kernel is given one of two wrappers, chosen by the handler's
/// calling convention: `plain` (`void h(int)`) or `info` (`void h(int,
/// siginfo_t *, void *)`, SA_SIGINFO). A wrapper counts the handler
/// ([`handler_ran`]) and calls the program's handler, which it finds in
/// the table of its convention under the signal's number. The flags and the
/// mask go to the kernel unchanged, so SA_RESTART, SA_NODEFER, SA_ONSTACK
/// and SA_RESETHAND behave exactly as without the wrapping.
///
/// A query reads the kernel's action and puts the program's handler back in
/// place of a wrapper: after an SA_RESETHAND handler ran, the kernel says
/// SIG_DFL and so does the query.
///
/// Installing is a critical section per process (the table and the kernel
/// change together, and the previous handler is read from the table of the
/// moment): two threads installing handlers for one signal at once end as
/// in the kernel, one after the other. The section's word names its holder
/// (pid and tid): a handler that interrupts the holder and installs a
/// handler goes through, and a child forked while another thread held it
/// takes it over.
#[cfg(not(shmsem_loom))]
mod install {
    use super::handler_ran;
    use crate::sync::{self, AtomicU64, AtomicUsize, Ordering};
    use libc::{c_int, c_void, sighandler_t, siginfo_t};

    /// Signal numbers are 1..NSIG (glibc's NSIG: 64 signals).
    const NSIG: usize = 65;

    /// `libc::sigaction`'s signature: the real call a wrapping call goes
    /// through.
    pub type RealSigaction =
        unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;

    #[allow(clippy::declare_interior_mutable_const)]
    const NONE: AtomicUsize = AtomicUsize::new(0);
    /// The program's `void h(int)` handlers, by signal number.
    static PLAIN: [AtomicUsize; NSIG] = [NONE; NSIG];
    /// The program's SA_SIGINFO handlers, by signal number.
    static INFO: [AtomicUsize; NSIG] = [NONE; NSIG];

    /// The holder of the installing section: pid << 32 | tid, 0 when free.
    static LOCK: AtomicU64 = AtomicU64::new(0);

    type PlainFn = unsafe extern "C" fn(c_int);
    type InfoFn = unsafe extern "C" fn(c_int, *mut siginfo_t, *mut c_void);

    /// The wrapper of `void h(int)` handlers.
    extern "C" fn plain(sig: c_int) {
        handler_ran();
        let h = slot(&PLAIN, sig).map_or(0, load_handler);
        if is_function(h) {
            // SAFETY: the table holds only handlers the program installed
            // with this convention (see `sigaction_via` / `signal_via`);
            // calling one with its signal number is what the kernel would
            // have done.
            unsafe { std::mem::transmute::<usize, PlainFn>(h)(sig) }
        }
    }

    /// The wrapper of SA_SIGINFO handlers.
    extern "C" fn info(sig: c_int, si: *mut siginfo_t, ctx: *mut c_void) {
        handler_ran();
        let h = slot(&INFO, sig).map_or(0, load_handler);
        if is_function(h) {
            // SAFETY: as in `plain`, with the kernel's siginfo and context
            // passed through.
            unsafe { std::mem::transmute::<usize, InfoFn>(h)(sig, si, ctx) }
        }
    }

    fn load_handler(a: &AtomicUsize) -> usize {
        // SYNC: Acquire pairs with the Release store in `put` (made before
        // the kernel was given the wrapper that reads it).
        a.load(Ordering::Acquire)
    }

    fn put(a: &AtomicUsize, h: usize) {
        // SYNC: Release pairs with the wrappers' Acquire load.
        a.store(h, Ordering::Release)
    }

    fn slot(table: &'static [AtomicUsize; NSIG], sig: c_int) -> Option<&'static AtomicUsize> {
        usize::try_from(sig)
            .ok()
            .filter(|&s| s >= 1)
            .and_then(|s| table.get(s))
    }

    /// Whether `h` is a handler to call: not SIG_DFL, SIG_IGN, SIG_HOLD or
    /// SIG_ERR.
    fn is_function(h: usize) -> bool {
        h != libc::SIG_DFL && h != libc::SIG_IGN && h != 2 && h != libc::SIG_ERR
    }

    fn plain_addr() -> usize {
        plain as extern "C" fn(c_int) as usize
    }

    fn info_addr() -> usize {
        info as extern "C" fn(c_int, *mut siginfo_t, *mut c_void) as usize
    }

    /// Whether `h` is one of the wrappers (a disposition the program never
    /// sees: queries report the program's handler instead).
    fn is_wrapper(h: sighandler_t) -> bool {
        h == plain_addr() || h == info_addr()
    }

    /// The program's handler for a disposition `h` the kernel reported for
    /// `sig`, given the tables' entries of before the call (`plain`,
    /// `info`).
    fn reported(h: usize, plain: usize, info: usize) -> usize {
        if h == plain_addr() {
            plain
        } else if h == info_addr() {
            info
        } else {
            h
        }
    }

    /// Runs `f` in the installing section.
    ///
    /// The program's signal mask is left alone: glibc's `sigset` reads it
    /// to tell what it returns. A handler that installs a handler while its
    /// own thread is in the section enters it (the word names this thread)
    /// and runs to its end before the interrupted call goes on.
    fn locked<R>(f: impl FnOnce() -> R) -> R {
        // SAFETY: getpid and gettid have no preconditions.
        let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
        let me = (pid as u32 as u64) << 32 | tid as u32 as u64;
        let mut nested = false;
        loop {
            // SYNC: Acquire pairs with the Release store that frees the
            // section: the previous holder's table writes are visible.
            match LOCK.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                // A handler on the holding thread itself.
                Err(cur) if cur == me => {
                    nested = true;
                    break;
                }
                // Held by a thread of the process we were forked from: it
                // will never free it here.
                Err(cur) if cur >> 32 != pid as u32 as u64 => {
                    let _ = LOCK.compare_exchange(cur, 0, Ordering::Relaxed, Ordering::Relaxed);
                }
                Err(_) => sync::spin_hint(),
            }
        }
        let r = f();
        if !nested {
            // SYNC: Release pairs with the Acquire of the next holder.
            LOCK.store(0, Ordering::Release);
        }
        r
    }

    /// `sigaction(2)`, wrapping the handler so that it counts itself (see
    /// the [module](super)). A drop-in for `libc::sigaction`: same
    /// arguments, 0 on success, -1 with `errno` set on error. `oldact`
    /// reports the program's handler, never the wrapper (ask through this
    /// function: `libc::sigaction` reports the wrapper). SIG_DFL and
    /// SIG_IGN are passed through as they are.
    ///
    /// # Safety
    ///
    /// As for `libc::sigaction`:
    ///
    /// * `act` is null or points to a valid `struct sigaction`;
    /// * `oldact` is null or valid for writing one (it may be `act`);
    /// * the handler is async-signal-safe, and has the convention its
    ///   SA_SIGINFO flag says.
    pub unsafe fn sigaction(
        signum: c_int,
        act: *const libc::sigaction,
        oldact: *mut libc::sigaction,
    ) -> c_int {
        // SAFETY: the caller's obligations, passed on; libc::sigaction is
        // the C library's.
        unsafe { sigaction_via(libc::sigaction, signum, act, oldact) }
    }

    /// [`sigaction`] through `real` (the preload library's next
    /// definition of `sigaction`, which its own would otherwise call).
    ///
    /// # Safety
    ///
    /// * As for [`sigaction`];
    /// * `real` behaves as `sigaction(2)`.
    pub unsafe fn sigaction_via(
        real: RealSigaction,
        signum: c_int,
        act: *const libc::sigaction,
        oldact: *mut libc::sigaction,
    ) -> c_int {
        let (Some(p), Some(i)) = (slot(&PLAIN, signum), slot(&INFO, signum)) else {
            // Not a signal number: the real call says EINVAL.
            // SAFETY: the caller's arguments, unchanged.
            return unsafe { real(signum, act, oldact) };
        };
        // Read before anything is written: `oldact` may be `act`.
        // SAFETY: `act` is null or valid (the caller's obligation).
        let new = unsafe { act.as_ref() }.copied();
        // SAFETY: as above, for `locked`'s closure: it only runs the real
        // call with a valid copy and our own out-buffer.
        locked(|| unsafe {
            let (old_plain, old_info) = (load_handler(p), load_handler(i));
            let mut kernel_act = new;
            let mut restore: Option<(&AtomicUsize, usize)> = None;
            if let Some(a) = kernel_act.as_mut() {
                if is_function(a.sa_sigaction) && !is_wrapper(a.sa_sigaction) {
                    let (table, wrapper) = if a.sa_flags & libc::SA_SIGINFO != 0 {
                        (i, info_addr())
                    } else {
                        (p, plain_addr())
                    };
                    restore = Some((table, load_handler(table)));
                    // Before the kernel has the wrapper: a signal
                    // delivered just after finds its handler.
                    put(table, a.sa_sigaction);
                    a.sa_sigaction = wrapper;
                }
            }
            let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
            let act_ptr = kernel_act
                .as_ref()
                .map_or(std::ptr::null(), |a| a as *const libc::sigaction);
            let r = real(signum, act_ptr, old.as_mut_ptr());
            if r != 0 {
                if let Some((table, h)) = restore {
                    put(table, h);
                }
                return r;
            }
            if !oldact.is_null() {
                let mut o = old.assume_init();
                o.sa_sigaction = reported(o.sa_sigaction, old_plain, old_info);
                oldact.write(o);
            }
            r
        })
    }

    /// A `signal`-like call (`signal`, `sysv_signal`, `bsd_signal`,
    /// `sigset`...): `install` is the real call, given the handler to
    /// install (the plain wrapper in place of a handler) and returning the
    /// previous disposition or SIG_ERR; the previous disposition returned
    /// is the program's handler, never the wrapper.
    pub fn signal_via(
        signum: c_int,
        handler: sighandler_t,
        install: impl FnOnce(sighandler_t) -> sighandler_t,
    ) -> sighandler_t {
        let (Some(p), Some(i)) = (slot(&PLAIN, signum), slot(&INFO, signum)) else {
            return install(handler);
        };
        locked(|| {
            let (old_plain, old_info) = (load_handler(p), load_handler(i));
            if !is_function(handler) || is_wrapper(handler) {
                return reported(install(handler), old_plain, old_info);
            }
            put(p, handler);
            let old = install(plain_addr());
            if old == libc::SIG_ERR {
                put(p, old_plain);
                return old;
            }
            reported(old, old_plain, old_info)
        })
    }
}
