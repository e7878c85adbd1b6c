//! The liveness host: which process-table entries belong to dead processes.

use super::{identity, Presence};
use crate::set::{Host, SetView};
use crate::sync::Ordering;
use shm_layout::{claim_byte, presence_byte, ProcOwner, ProcState};

/// The real host for one set: liveness from the processes' write locks in
/// their uids' presence files (see [`Presence`]), decided by pid and start
/// time. The entry names the uid ([`ProcOwner`]); the locks are tested
/// through this process's own descriptors (a description shared with
/// another process, an inherited descriptor, would not see that process's
/// locks as conflicting).
pub struct OsHost<'a> {
    /// `None`: /proc alone decides.
    presence: Option<&'a Presence>,
    /// The set's index (for the claim bytes of its process table).
    set: u32,
}

impl<'a> OsHost<'a> {
    /// The host that tests the locks through `presence`, for set index
    /// `set`.
    pub fn new(presence: &'a Presence, set: u32) -> OsHost<'a> {
        OsHost {
            presence: Some(presence),
            set,
        }
    }

    /// Whether a process of `uid` holds a write lock on `byte` of its
    /// presence file (`None`: cannot tell).
    fn held(&self, uid: u32, byte: Option<i64>) -> Option<bool> {
        self.presence?.write_held(uid, byte?)
    }

    /// Whether the claim `owner` of entry `slot` was abandoned: its
    /// claimer's claim byte is certainly free (it died, or its claim is
    /// over). A bare claim, or a byte that cannot be tested, is never
    /// taken for abandoned.
    pub(super) fn claim_abandoned(&self, owner: ProcOwner, slot: u32) -> bool {
        !owner.is_bare() && self.held(owner.uid(), claim_byte(self.set, slot)) == Some(false)
    }
}

impl Host for OsHost<'_> {
    fn is_dead(&self, view: &SetView<'_>, slot: u32) -> bool {
        let Some(p) = view.proc(slot) else {
            return true;
        };
        // SYNC: Acquire pairs with the AcqRel CAS to CLAIMING in
        // membership's `claim_free`, after its CAS of `owner`.
        let sg = ProcState::from_raw(p.state_gen.load(Ordering::Acquire));
        let owner = ProcOwner::from_raw(p.owner.load(Ordering::Relaxed));
        if sg.is_claiming() {
            // A claimer holds the entry's claim byte from before its claim
            // until it is ACTIVE (membership's `claim_free`), and its pid
            // is not written yet: only the byte tells, and only a byte that
            // is certainly free means dead. An owner of another generation
            // never claimed this one: the state was written by someone
            // else (a writer of the set), and nobody is claiming.
            return owner.gen() != sg.gen() || self.claim_abandoned(owner, slot);
        }
        let pid = p.pid.load(Ordering::Relaxed);
        let start = p.start_time.load(Ordering::Relaxed);
        match self.held(owner.uid(), presence_byte(pid, start)) {
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
