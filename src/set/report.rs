//! Diagnostics: a set as a tool shows it ([`SetReport`], built under the
//! lock by [`Guard::report`]), and the values read under the lock
//! ([`Guard::read_all`], [`Guard::read_one`]).

use super::{Guard, Host, Me};
use crate::sync::Ordering;
use crate::sysv::{IpcPerm, Sembuf, SemidDs};
use shm_layout::*;

/// A queued operation (see [`Guard::report`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOp {
    /// Its queue slot.
    pub slot: u32,
    /// The sleeper's pid.
    pub pid: i32,
    /// Its operations.
    pub ops: Vec<Sembuf>,
    /// CLOCK_MONOTONIC nanoseconds when it was queued.
    pub queued_at_ns: u64,
    /// Its place in the FIFO order.
    pub ticket: u64,
}

/// A process-table entry (see [`Guard::report`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessReport {
    /// Its index in the table.
    pub slot: u32,
    /// The process's pid.
    pub pid: i32,
    /// Whether it is alive (a dead one is not yet swept).
    pub alive: bool,
    /// Its non-zero SEM_UNDO adjustments: (semaphore, adjustment).
    pub adjustments: Vec<(u16, i16)>,
    /// Whether it has made a SEM_UNDO call on the set.
    pub undo_record: bool,
    /// Queue slots it has queued or not yet collected.
    pub queued: u32,
}

/// Use of the pending-queue arena (see [`Guard::report`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotUsage {
    /// Free slots.
    pub free: u32,
    /// Head slots of queued operations.
    pub queued: u32,
    /// Completed operations not yet collected by their sleeper.
    pub done: u32,
    /// Continuation slots (and slots being filled).
    pub cont: u32,
    /// Slots whose sleepers gave up while the lock was held, not yet
    /// discarded by a lock holder.
    pub withdrawn: u32,
}

/// A set as a diagnostic tool shows it (see [`Guard::report`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetReport {
    /// Values.
    pub values: Vec<u16>,
    /// sempid of each semaphore.
    pub sempids: Vec<i32>,
    /// GETNCNT of each semaphore.
    pub ncnt: Vec<u32>,
    /// GETZCNT of each semaphore.
    pub zcnt: Vec<u32>,
    /// Queued operations in FIFO order.
    pub pending: Vec<PendingOp>,
    /// Processes in the set's table.
    pub processes: Vec<ProcessReport>,
    /// The queue arena.
    pub slots: SlotUsage,
    /// What IPC_STAT would return, read without IPC_STAT's sweep of dead
    /// processes (so otime may predate an exit not yet noticed).
    pub status: SemidDs,
}

impl Guard<'_, '_> {
    /// Everything a diagnostic tool shows of the set, read under the lock:
    /// values, waiters, the pending queue in FIFO order, the processes in
    /// the table (`host` says which are alive), the use of the queue arena.
    pub fn report(&self, me: &Me, host: &dyn Host) -> SetReport {
        let n = self.v.nsems();
        let mut r = SetReport {
            status: self.status(),
            values: (0..n).map(|i| self.read_one(i).0 as u16).collect(),
            sempids: (0..n).map(|i| self.read_one(i).1).collect(),
            ncnt: (0..n).map(|i| self.count_waiters(i, false)).collect(),
            zcnt: (0..n).map(|i| self.count_waiters(i, true)).collect(),
            pending: self.pending(),
            ..SetReport::default()
        };
        r.processes = self.processes(me, host);
        r.slots = self.slot_usage();
        r
    }

    /// The IPC_STAT fields, as they are.
    fn status(&self) -> SemidDs {
        let v = self.v;
        let h = v.hdr;
        let id = h.id.load(Ordering::Relaxed);
        SemidDs {
            perm: IpcPerm {
                key: h.key.load(Ordering::Relaxed),
                uid: h.uid.load(Ordering::Relaxed),
                gid: h.gid.load(Ordering::Relaxed),
                cuid: h.cuid.load(Ordering::Relaxed),
                cgid: h.cgid.load(Ordering::Relaxed),
                mode: h.mode.load(Ordering::Relaxed),
                seq: crate::sysv::SetId::from_raw(id).seq,
            },
            otime: v.otime(),
            ctime: h.ctime.load(Ordering::Relaxed),
            nsems: v.nsems() as u64,
        }
    }

    /// The queued operations of both FIFOs, in ticket (FIFO) order (slots
    /// whose sleepers withdrew are not).
    fn pending(&self) -> Vec<PendingOp> {
        let v = self.v;
        let mut pending = Vec::new();
        let mut ops = Vec::new();
        for alter in [false, true] {
            for (i, q) in v.fifo(alter) {
                if !SlotStatus::from_raw(q.status.load(Ordering::Relaxed)).is_queued() {
                    continue; // withdrawn: nobody waits
                }
                let _ = v.read_ops(i, &mut ops);
                pending.push(PendingOp {
                    slot: i,
                    pid: q.pid.load(Ordering::Relaxed),
                    ops: ops.clone(),
                    queued_at_ns: q.since.load(Ordering::Relaxed),
                    ticket: q.ticket.load(Ordering::Relaxed),
                });
            }
        }
        pending.sort_by_key(|p| p.ticket);
        pending
    }

    /// The active entries of the process table.
    fn processes(&self, me: &Me, host: &dyn Host) -> Vec<ProcessReport> {
        let v = self.v;
        let mut out = Vec::new();
        for p in 0..v.procs_in_use() {
            let pe = &v.procs[p as usize];
            // SYNC: Acquire pairs with the Release store that makes an
            // entry ACTIVE (`activate` in liveness/membership.rs, `HeapSet::register`).
            if !ProcState::from_raw(pe.state_gen.load(Ordering::Acquire)).is_active() {
                continue;
            }
            let adjs = (0..v.nsems())
                .filter_map(|s| {
                    let a = v.undo_cell(p, s).load(Ordering::Relaxed);
                    (a != 0).then_some((s as u16, a))
                })
                .collect();
            out.push(ProcessReport {
                slot: p,
                pid: pe.pid.load(Ordering::Relaxed),
                alive: p == me.slot || !host.is_dead(v, p),
                adjustments: adjs,
                undo_record: pe.undo_record.load(Ordering::Relaxed) != 0,
                queued: pe.queued.load(Ordering::Relaxed),
            });
        }
        out
    }

    /// How the queue arena's slots are used.
    fn slot_usage(&self) -> SlotUsage {
        let mut u = SlotUsage::default();
        for q in self.v.queue {
            match SlotStatus::from_raw(q.status.load(Ordering::Relaxed)).state() {
                SLOT_FREE => u.free += 1,
                SLOT_QUEUED => u.queued += 1,
                SLOT_DONE => u.done += 1,
                SLOT_WITHDRAWN => u.withdrawn += 1,
                _ => u.cont += 1,
            }
        }
        u
    }

    /// Values and sempids of every semaphore (under the lock: consistent).
    pub fn read_all(&self, out: &mut [u16]) {
        for (o, e) in out.iter_mut().zip(self.v.sems) {
            *o = SemWord::from_raw(e.word.load(Ordering::Relaxed)).value();
        }
    }

    /// Value and sempid of one semaphore.
    pub fn read_one(&self, n: usize) -> (i32, i32) {
        let w = SemWord::from_raw(self.v.sems[n].word.load(Ordering::Relaxed));
        (w.value() as i32, w.pid())
    }
}
