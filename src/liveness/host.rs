//! The liveness host: which process-table entries belong to dead processes.

use std::os::fd::BorrowedFd;

use super::identity;
use crate::set::{Host, SetView};
use crate::shm;
use crate::sync::Ordering;
use shm_layout::{claim_byte, presence_byte, ProcState};

/// The real host for one set: liveness from the processes' presence locks
/// on the namespace's registry, decided by pid and start time. The locks
/// are tested through this process's own descriptor of the registry
/// (`fd`): a description shared with another process (an inherited
/// descriptor) would not see that process's locks as conflicting.
pub struct OsHost<'a> {
    fd: Option<BorrowedFd<'a>>,
    /// The set's index (for the claim bytes of its process table).
    set: u32,
}

impl<'a> OsHost<'a> {
    /// The host that tests the locks through `fd` (`None`: this process has
    /// no descriptor of the registry; /proc alone decides) for set index
    /// `set`.
    pub fn new(fd: Option<BorrowedFd<'a>>, set: u32) -> OsHost<'a> {
        OsHost { fd, set }
    }

    /// Whether a lock is held on `byte` (`None`: cannot tell).
    fn locked(&self, byte: Option<i64>) -> Option<bool> {
        shm::ofd_is_locked(self.fd?, byte?).ok()
    }
}

impl Host for OsHost<'_> {
    fn is_dead(&self, view: &SetView<'_>, slot: u32) -> bool {
        let Some(p) = view.proc(slot) else {
            return true;
        };
        if ProcState::from_raw(p.state_gen.load(Ordering::Relaxed)).is_claiming() {
            // A claimer holds the entry's claim byte from before its claim
            // until it is ACTIVE (membership's `claim_free`), and its pid
            // is not written yet: only the byte tells, and only a byte that
            // is certainly free means dead.
            return self.locked(claim_byte(self.set, slot)) == Some(false);
        }
        let pid = p.pid.load(Ordering::Relaxed);
        let start = p.start_time.load(Ordering::Relaxed);
        match self.locked(presence_byte(pid, start)) {
            // Held: by the process, or by a child that inherited its
            // descriptor. A child forked without exec closes its copy
            // (`presence::close_inherited`), but only once it runs, which
            // may be after its parent was killed; exec closes it too. So
            // the pid confirms, for one system call. A dead process that
            // is still a zombie (or whose pid was reused) while such a copy
            // is open is taken for alive (README difference 4).
            Some(true) => !identity::pid_exists(pid),
            // Free, or cannot tell: a process that closed its descriptors
            // or exec'd holds no lock and is alive. Pid and start time
            // decide.
            _ => !identity::is_alive(pid, start),
        }
    }
}
