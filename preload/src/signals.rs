//! Signal handlers of the program, wrapped so that they count themselves.
//!
//! On the kernel a blocked semop returns EINTR when a handler runs, with or
//! without SA_RESTART. shmsem blocks partly in user space (a spin, sweeps
//! between timed futex slices), where a handler leaves no trace unless it
//! tells: see `shmsem::signal`. So every way glibc offers an ordinary
//! program to install a handler is interposed here, and the handler is
//! installed wrapped (`shmsem::signal::sigaction_via` / `signal_via`): the
//! wrapper counts the handler, then calls the program's.
//!
//! Interposed: `sigaction` and `__sigaction` (Python's `signal.signal`,
//! Perl's `%SIG` and most C programs), `signal`, `bsd_signal`, `ssignal`,
//! `sysv_signal`, `__sysv_signal` and `sigset`. glibc's own functions that
//! change a handler's flags or mask (`siginterrupt`, `sigignore`,
//! `system`...) read and write the kernel's action inside glibc: they see
//! and put back the wrapper, which is what keeps working.
//!
//! The signal-like calls go to glibc's own function with the wrapper as the
//! handler, so each keeps its exact semantics (`signal`'s SA_RESTART unless
//! `siginterrupt` said otherwise, `sysv_signal`'s one-shot handlers,
//! `sigset`'s SIG_HOLD). Every query reports the program's handler, never
//! the wrapper; SIG_DFL and SIG_IGN pass through. errno is left as it was on
//! success; no panic crosses the C ABI.
//!
//! Not covered: a handler installed with a raw `rt_sigaction` system call
//! (`syscall(SYS_rt_sigaction, ...)` or inline assembly), and the obsolete
//! `sigvec` (a compatibility symbol new programs cannot link).

use std::panic::{catch_unwind, AssertUnwindSafe};

use libc::{c_int, sighandler_t};
use shmsem::signal::{sigaction_via, signal_via, RealSigaction};

use crate::real::Real;
use crate::{errno, set_errno};

/// The C library's functions this file stands in front of, looked up at
/// load time (dlsym is not async-signal-safe, and sigaction may be called
/// from a handler) and, should a call come before that, on first use.
static SIGACTION: Real = Real::new(c"sigaction");
static SIGNAL: Real = Real::new(c"signal");
static BSD_SIGNAL: Real = Real::new(c"bsd_signal");
static SSIGNAL: Real = Real::new(c"ssignal");
static SYSV_SIGNAL: Real = Real::new(c"sysv_signal");
static SIGSET: Real = Real::new(c"sigset");

/// Looks every real function up while the library is loaded.
extern "C" fn resolve_all() {
    for r in [
        &SIGACTION,
        &SIGNAL,
        &BSD_SIGNAL,
        &SSIGNAL,
        &SYSV_SIGNAL,
        &SIGSET,
    ] {
        let _ = r.addr();
    }
}

#[used]
#[link_section = ".init_array"]
static RESOLVE_AT_LOAD: extern "C" fn() = resolve_all;

type SignalFn = unsafe extern "C" fn(c_int, sighandler_t) -> sighandler_t;

/// `sigaction`, through the C library's.
fn do_sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    let saved = errno();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let Some(addr) = SIGACTION.addr() else {
            set_errno(libc::ENOSYS);
            return -1;
        };
        // SAFETY: `addr` is the C library's sigaction, of this signature.
        let real = unsafe { std::mem::transmute::<usize, RealSigaction>(addr) };
        // SAFETY: the caller's pointers, with the C function's contract;
        // `real` is sigaction(2).
        unsafe { sigaction_via(real, sig, act, old) }
    }))
    .unwrap_or_else(|_| {
        set_errno(libc::EINVAL);
        -1
    });
    if r == 0 {
        set_errno(saved);
    }
    r
}

/// A `signal`-like call, through the C library's function `real`.
fn do_signal(real: &Real, sig: c_int, handler: sighandler_t) -> sighandler_t {
    let saved = errno();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let Some(addr) = real.addr() else {
            set_errno(libc::ENOSYS);
            return libc::SIG_ERR;
        };
        // SAFETY: `addr` is the C library's function of that name, of this
        // signature.
        let f = unsafe { std::mem::transmute::<usize, SignalFn>(addr) };
        // SAFETY: the C function called with the caller's signal and a
        // handler of the same convention (the plain wrapper in place of a
        // handler).
        signal_via(sig, handler, |h| unsafe { f(sig, h) })
    }))
    .unwrap_or_else(|_| {
        set_errno(libc::EINVAL);
        libc::SIG_ERR
    });
    if r != libc::SIG_ERR {
        set_errno(saved);
    }
    r
}

/// `int sigaction(int sig, const struct sigaction *act, struct sigaction *oldact)`.
///
/// # Safety
///
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    oldact: *mut libc::sigaction,
) -> c_int {
    do_sigaction(sig, act, oldact)
}

/// `__sigaction`: glibc's other name of `sigaction`.
///
/// # Safety
///
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn __sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    oldact: *mut libc::sigaction,
) -> c_int {
    do_sigaction(sig, act, oldact)
}

/// `sighandler_t signal(int sig, sighandler_t handler)` (BSD semantics).
#[no_mangle]
pub extern "C" fn signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    do_signal(&SIGNAL, sig, handler)
}

/// `bsd_signal`: `signal` by another name.
#[no_mangle]
pub extern "C" fn bsd_signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    do_signal(&BSD_SIGNAL, sig, handler)
}

/// `ssignal`: `signal` by another name.
#[no_mangle]
pub extern "C" fn ssignal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    do_signal(&SSIGNAL, sig, handler)
}

/// `sysv_signal` (one-shot handler, not restarting).
#[no_mangle]
pub extern "C" fn sysv_signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    do_signal(&SYSV_SIGNAL, sig, handler)
}

/// `__sysv_signal`: `sysv_signal` by its other name, and what `signal`
/// is in a program compiled in a strict standard mode (`-std=c11` without
/// `_DEFAULT_SOURCE`: glibc's header redirects it).
#[no_mangle]
pub extern "C" fn __sysv_signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    do_signal(&SYSV_SIGNAL, sig, handler)
}

/// `sigset` (System V: SIG_HOLD blocks the signal).
#[no_mangle]
pub extern "C" fn sigset(sig: c_int, handler: sighandler_t) -> sighandler_t {
    do_signal(&SIGSET, sig, handler)
}
