//! The liveness host: which process-table entries belong to dead processes.

use std::os::fd::BorrowedFd;

use super::identity;
use crate::set::{Host, SetView};
use crate::shm;
use crate::sync::Ordering;
use shm_layout::{ProcState, PROC_LOCK_BASE};

/// The real host: liveness from OFD locks, confirmed by pid + start time.
/// The locks are tested through this process's own open file description
/// (its registration's): one shared with another process (an inherited
/// descriptor) would not see that process's locks as conflicting.
pub struct OsHost<'a> {
    fd: BorrowedFd<'a>,
}

impl<'a> OsHost<'a> {
    /// The host that tests the locks through `fd`.
    pub fn new(fd: BorrowedFd<'a>) -> OsHost<'a> {
        OsHost { fd }
    }
}

impl Host for OsHost<'_> {
    fn is_dead(&self, view: &SetView<'_>, slot: u32) -> bool {
        let Some(p) = view.proc(slot) else {
            return true;
        };
        // The entry's lock byte is held as long as a descriptor of the
        // process's registration is open: free means dead. Held means alive,
        // unless a child forked without ever using the set still has a
        // copy: then the pid tells, for one system call (reading
        // /proc/PID/stat for the start time costs some microseconds, on
        // every call that blocks behind a holder of undo). A dead process
        // that is still a zombie, or whose pid was reused, while such a
        // child lives is reaped only once the child's copy is closed
        // (README difference 4).
        let locked = shm::ofd_is_locked(self.fd, PROC_LOCK_BASE + slot as i64);
        if ProcState::from_raw(p.state_gen.load(Ordering::Relaxed)).is_claiming() {
            // A claimer holds the byte from before its claim (membership's
            // `claim_free`), and its pid is not written yet: only the byte
            // tells.
            return matches!(locked, Ok(false));
        }
        match locked {
            Ok(false) => true,
            Ok(true) => !identity::pid_exists(p.pid.load(Ordering::Relaxed)),
            Err(_) => false, // cannot tell: never reap a possibly live process
        }
    }
}
