//! Who this process is: its pid and start time (which name it across exec
//! and tell a reused pid apart), and whether a process still exists.

use crate::sync::{AtomicI32, AtomicU64, Ordering};
use std::sync::Once;

static PID: AtomicI32 = AtomicI32::new(0);
static START: AtomicU64 = AtomicU64::new(0);
static ATFORK: Once = Once::new();

extern "C" fn after_fork_in_child() {
    // Async-signal-safe: atomic stores and close. The next call recomputes.
    PID.store(0, Ordering::Relaxed);
    START.store(0, Ordering::Relaxed);
    super::presence::close_inherited();
}

/// This process's pid, cached (getpid is a system call), refreshed in a
/// child after fork(2) by a pthread_atfork handler.
#[inline]
pub fn pid() -> i32 {
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    refresh()
}

#[cold]
fn refresh() -> i32 {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only does atomic stores and
        // close(2) (async-signal-safe).
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    let p = rustix::process::getpid().as_raw_nonzero().get();
    PID.store(p, Ordering::Relaxed);
    p
}

/// This process's start time.
pub fn start_time() -> u64 {
    let s = START.load(Ordering::Relaxed);
    if s != 0 {
        return s;
    }
    let s = stat_of(pid()).map(|(t, _)| t).unwrap_or(1);
    START.store(s, Ordering::Relaxed);
    s
}

/// (start time, state letter) of `pid`, from /proc.
pub fn stat_of(pid: i32) -> Option<(u64, u8)> {
    let text = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: the
    // fields after it start after the last ')'.
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut it = rest.split_ascii_whitespace();
    let state = it.next()?.as_bytes().first().copied()?;
    // `state` was field 3; start time is field 22, i.e. 19 fields later.
    let start = it.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// Whether process `pid` started at `start` is alive: it exists, with that
/// start time, and is not a zombie (one that died and was not reaped yet:
/// it holds nothing and runs no more code). When /proc does not show the
/// process (a /proc mounted with hidepid), one that exists counts as alive:
/// a live process is never taken for dead.
pub fn is_alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match stat_of(pid) {
        Some((s, state)) => s == start && !matches!(state, b'Z' | b'X' | b'x'),
        None => pid_exists(pid),
    }
}

/// Whether a process `pid` exists (perhaps a zombie, perhaps a newcomer
/// that reused the pid): one system call, kill(pid, 0).
pub fn pid_exists(pid: i32) -> bool {
    // The pid comes from shared memory: 0 and negative values (a process
    // group, every process) name no single process.
    if pid <= 0 {
        return false;
    }
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    // EPERM: it exists, we may not signal it.
    !matches!(
        rustix::process::test_kill_process(p),
        Err(rustix::io::Errno::SRCH)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn identity_is_stable() {
        let p = super::pid();
        assert_eq!(p, std::process::id() as i32);
        let s = super::start_time();
        assert!(s > 1);
        assert_eq!(super::stat_of(p).map(|(t, _)| t), Some(s));
        assert!(super::pid_exists(p));
        assert!(!super::pid_exists(0));
        assert!(!super::pid_exists(-1));
        assert!(!super::pid_exists(i32::MIN));
    }
}
