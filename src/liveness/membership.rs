//! This process's entry in one set's process table: adopted after an exec,
//! claimed from the free ones, or, when the table is full, made free by
//! releasing the entries of dead processes that hold nothing.

use std::sync::Mutex;

use super::presence::Own;
use super::{identity, OsHost, Presence};
use crate::set::{Host, Me, SetView};
use crate::shm;
use crate::sync::{self, AtomicI32, AtomicU64, Ordering};
use crate::{Error, Result};
use shm_layout::{claim_byte, CpuTag, ProcEntry, ProcOwner, ProcState};

/// This process's membership of one mapped set: its process-table entry,
/// claimed on first use (and again in a forked child), and a lock-free copy
/// of it for the calls that follow. It holds no descriptor: liveness is the
/// namespace's [`Presence`].
pub struct Membership {
    /// pid that `me` belongs to (0: none); checked before `me` is used.
    pid: AtomicI32,
    /// `Me` packed: slot | gen << 32.
    me: AtomicU64,
    reg: Mutex<Option<Me>>,
}

impl Membership {
    /// No registration yet.
    pub fn new() -> Membership {
        Membership {
            pid: AtomicI32::new(0),
            me: AtomicU64::new(0),
            reg: Mutex::new(None),
        }
    }

    /// This process's identity in set `v` (index `set`, in the namespace
    /// where this process is `presence`), registering on first use (and
    /// again in a forked child).
    #[inline]
    pub fn me(&self, v: &SetView<'_>, presence: &Presence, set: u32) -> Result<Me> {
        let pid = identity::pid();
        // SYNC: Acquire pairs with the Release store of `pid` at the end of
        // `Membership::me_slow`, after `me`.
        if self.pid.load(Ordering::Acquire) == pid {
            let m = self.me.load(Ordering::Relaxed);
            return Ok(Me {
                slot: m as u32,
                gen: (m >> 32) as u32,
                pid,
                lone: sync::lone_thread(),
            });
        }
        self.me_slow(v, presence, set, pid)
    }

    /// [`Membership::me`] before this process (`pid`) has registered, or
    /// from another thread while it registers: under the registration
    /// lock. Out of line so that the registered case stays small enough to
    /// inline into every call.
    #[cold]
    #[inline(never)]
    fn me_slow(&self, v: &SetView<'_>, presence: &Presence, set: u32, pid: i32) -> Result<Me> {
        let mut reg = self.reg.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = reg.as_ref() {
            if r.pid == pid {
                return Ok(Me {
                    lone: sync::lone_thread(),
                    ..*r
                });
            }
        }
        // First use, or a forked child holding the parent's registration.
        *reg = None;
        let r = presence.own(|own| register(v, presence, &own, set, pid))?;
        let me = Me {
            lone: sync::lone_thread(),
            ..r
        };
        *reg = Some(r);
        self.me
            .store(me.slot as u64 | ((me.gen as u64) << 32), Ordering::Relaxed);
        // SYNC: Release publishes `me` to the Acquire load of `pid` in
        // `Membership::me`.
        self.pid.store(pid, Ordering::Release);
        Ok(me)
    }
}

/// Registers process `pid` in set `v` (index `set`; `own` is this
/// process's presence file in the namespace `presence`): the same process
/// before an exec adopts its entry; otherwise a free entry is claimed,
/// after freeing idle entries of the dead if there is none. ENOMEM when
/// the table stays full.
fn register(v: &SetView<'_>, presence: &Presence, own: &Own<'_>, set: u32, pid: i32) -> Result<Me> {
    let start = identity::start_time();
    if let Some(me) = adopt_after_exec(v, pid, start) {
        return Ok(me);
    }
    let host = OsHost::new(presence, set);
    match claim_free(v, own, &host, set, pid, start)? {
        Some(me) => Ok(me),
        None => {
            free_idle_dead(v, &host);
            claim_free(v, own, &host, set, pid, start)?.ok_or(Error::NoMemory)
        }
    }
}

/// The same process before an exec (same pid and start time): its entry,
/// and with it its undo, is ours again. (Its presence lock went with the
/// close-on-exec descriptor; the namespace's [`Presence`] takes it again.)
fn adopt_after_exec(v: &SetView<'_>, pid: i32, start: u64) -> Option<Me> {
    for s in 0..v.procs_in_use() {
        let p = v.proc(s).expect("in range");
        // SYNC: Acquire pairs with the Release store of PROC_ACTIVE in
        // `claim_free`, after the pid and start time.
        let sg = ProcState::from_raw(p.state_gen.load(Ordering::Acquire));
        if sg.is_active()
            && p.pid.load(Ordering::Relaxed) == pid
            && p.start_time.load(Ordering::Relaxed) == start
        {
            return Some(Me {
                slot: s,
                gen: sg.gen(),
                pid,
                lone: false,
            });
        }
    }
    None
}

/// Claims an entry for process `pid` (started at `start`): a free one, or
/// one left CLAIMING by a claimer that died mid-claim. `None`: none is.
///
/// A claim takes three steps: this process's claim byte of the entry
/// (`shm_layout::claim_byte`, in its uid's presence file, `own`), then a
/// CAS of the entry's `owner` to this claim (the next generation, our uid:
/// the first claimer of a generation gets it), then a CAS of the state to
/// CLAIMING; the byte is held until the entry is ACTIVE. So a claim whose
/// claimer's byte can be seen free (through `host`) was abandoned by a
/// claimer that died (nothing else can end it), or is over: it may be
/// taken over. A byte held means a live claimer (or a descriptor inherited
/// from a dead one): the entry is left for later. When another user's read
/// locks keep us from our byte, or we have no presence file, the claim is
/// *bare* (said so in `owner`): nobody can tell whether we live until the
/// entry is ACTIVE, so if we die in between it is lost (README difference
/// 4).
fn claim_free(
    v: &SetView<'_>,
    own: &Own<'_>,
    host: &OsHost<'_>,
    set: u32,
    pid: i32,
    start: u64,
) -> Result<Option<Me>> {
    for s in 0..v.proc_slots() {
        let p = v.proc(s).expect("in range");
        // SYNC: Acquire pairs with the Release CAS that freed the entry
        // (`free_idle_dead`, or INTENT_REAP in `SetView::redo`), and with
        // the AcqRel CAS to CLAIMING below, after the CAS of `owner`.
        let sg = ProcState::from_raw(p.state_gen.load(Ordering::Acquire));
        if !sg.is_free() && !sg.is_claiming() {
            continue;
        }
        let claiming = sg.claiming();
        let Some(byte) = claim_byte(set, s) else {
            return Ok(None);
        };
        // SYNC: Relaxed: ordered after the Acquire load of the state; the
        // CAS below decides.
        let was = ProcOwner::from_raw(p.owner.load(Ordering::Relaxed));
        let under_way = if was.gen() == claiming.gen() {
            // A claim of the generation we want, whose claimer has not
            // CASed the state yet (or failed to and left it).
            true
        } else {
            // A CLAIMING entry whose owner is of its generation: its claim.
            sg.is_claiming() && was.gen() == sg.gen()
        };
        if under_way && !host.claim_abandoned(was, s) {
            continue;
        }
        let bare = match own.fd {
            None => true,
            Some(fd) => match take_claim_byte(fd, byte)? {
                Some(taken) => !taken,
                // Another claimer of our uid: the entry is its, for now.
                None => continue,
            },
        };
        let unlock = || {
            if let (false, Some(fd)) = (bare, own.fd) {
                shm::ofd_unlock(fd, byte);
            }
        };
        let mine = ProcOwner::new(claiming.gen(), own.uid, bare);
        // SYNC: AcqRel: Release orders nothing of ours before it (the byte
        // is a system call); Acquire as the load of the state. Paired with
        // the Acquire load of the state in `OsHost::is_dead` through the
        // CAS of the state below.
        if p.owner
            .compare_exchange(was.raw(), mine.raw(), Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            // Another claimer was first.
            unlock();
            continue;
        }
        // SYNC: AcqRel: Acquire as the load above; Release publishes our
        // `owner` to the Acquire loads of the state in `OsHost::is_dead`
        // and `claim_free`.
        if p.state_gen
            .compare_exchange(
                sg.raw(),
                claiming.raw(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            // Claimed (or changed) since we looked: not ours. The owner we
            // replaced was a finished claim's (or a dead claimer's): give
            // it back, unless it changed again.
            // SYNC: Relaxed: restores a hint.
            let _ = p.owner.compare_exchange(
                mine.raw(),
                was.raw(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            unlock();
            continue;
        }
        // Before activating: a claim left half-done must be below the
        // high-water mark, where sweeps look.
        v.note_claimed(s);
        activate(p, claiming, pid, start);
        // ACTIVE: pid and start time now say who holds the entry.
        unlock();
        return Ok(Some(Me {
            slot: s,
            gen: claiming.gen(),
            pid,
            lone: false,
        }));
    }
    Ok(None)
}

/// Takes claim byte `byte` through `fd`: `Some(true)` taken; `None` held
/// by another claimer of our uid (a write lock); `Some(false)` kept from us
/// by read locks only, which only another user's processes take.
fn take_claim_byte(fd: std::os::fd::BorrowedFd<'_>, byte: i64) -> Result<Option<bool>> {
    // A claimer of ours that lets go between our try and our test is
    // tried again; a few rounds, then we claim without (bare).
    for _ in 0..3 {
        if shm::ofd_try_lock(fd, byte)? {
            return Ok(Some(true));
        }
        if shm::ofd_write_held(fd, byte).unwrap_or(true) {
            return Ok(None);
        }
    }
    Ok(Some(false))
}

/// Makes claimed entry `p` (state word `claiming`) process `pid`'s,
/// holding nothing, and ACTIVE.
fn activate(p: &ProcEntry, claiming: ProcState, pid: i32, start: u64) {
    p.pid.store(pid, Ordering::Relaxed);
    p.start_time.store(start, Ordering::Relaxed);
    p.undo_count.store(0, Ordering::Relaxed);
    p.queued.store(0, Ordering::Relaxed);
    p.undo_record.store(0, Ordering::Relaxed);
    p.asleep.store(0, Ordering::Relaxed);
    p.cpu.store(CpuTag::UNKNOWN.raw(), Ordering::Relaxed);
    p.locking.store(0, Ordering::Relaxed);
    p.holding.store(0, Ordering::Relaxed);
    // SYNC: Release publishes pid/start before the entry is ACTIVE (to the
    // Acquire loads of `state_gen` in `adopt_after_exec` and the sweeps).
    p.state_gen
        .store(claiming.activated().raw(), Ordering::Release);
}

/// The table is full: frees the entries of dead processes that hold
/// nothing (those holding undo or queue slots are reaped by sweeps, which
/// apply what they hold).
fn free_idle_dead(v: &SetView<'_>, host: &OsHost<'_>) {
    for s in 0..v.procs_in_use() {
        let p = v.proc(s).expect("in range");
        // SYNC: Acquire pairs with the Release store of PROC_ACTIVE in
        // `activate`.
        let sg = ProcState::from_raw(p.state_gen.load(Ordering::Acquire));
        if sg.is_active()
            && p.undo_count.load(Ordering::Relaxed) == 0
            && p.queued.load(Ordering::Relaxed) == 0
            && host.is_dead(v, s)
        {
            // SYNC: AcqRel: Release pairs with the Acquire load of a later
            // claimer (`claim_free`); the CAS fails if the entry changed.
            let _ = p.state_gen.compare_exchange(
                sg.raw(),
                sg.freed().raw(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }
}
