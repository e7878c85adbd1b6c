//! Undo: the kernel's exit_sem. A process's SEM_UNDO adjustments live in
//! its row of the set's undo table; when it dies, a sweep
//! ([`Guard::sweep_dead`], [`Guard::sweep_undo_on`]) finds it dead (through
//! the [`Host`]) and reaps it ([`Guard::reap`]): value += adjustment,
//! clamped, its queued operations and its process-table entry freed, in one
//! REAP intent record (applied by `SetView::apply_reap`).

use super::{Guard, Host, Me, SetView};
use crate::sync::Ordering;
use shm_layout::*;

/// Which process-table entries a sweep checks for death.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Those holding undo adjustments (before using their semaphores).
    Undo,
    /// Those holding adjustments, an undo record or queue slots.
    Holding,
    /// Every entry, idle ones too (their entries are freed).
    All,
}

impl SetView<'_> {
    /// Notes that process table entry `slot` made a SEM_UNDO call (the
    /// kernel's undo record: its exit sets otime).
    pub(super) fn note_undo_record(&self, slot: u32) {
        if let Some(p) = self.proc(slot) {
            if p.undo_record.load(Ordering::Relaxed) == 0 {
                p.undo_record.store(1, Ordering::Relaxed);
            }
        }
    }
}

impl Guard<'_, '_> {
    /// Looks for dead processes and reaps them: their undo adjustments are
    /// applied (clamped to [0, SEMVMX]), their queue slots and entries
    /// freed. `what` says which entries are worth a liveness check. Slots
    /// that sleepers withdrew while the lock was held are discarded first.
    pub fn sweep_dead(&mut self, me: &Me, host: &dyn Host, what: Sweep) {
        // Slots withdrawn while the lock was held go too.
        self.tidy(false);
        self.sweep(me, host, |pe, _| {
            let has_undo = pe.undo_count.load(Ordering::Relaxed) != 0;
            // A record with only zero adjustments matters for otime alone:
            // full sweeps look at it, undo-only sweeps (on the semop path)
            // do not.
            let holds = pe.queued.load(Ordering::Relaxed) != 0
                || pe.undo_record.load(Ordering::Relaxed) != 0;
            match what {
                Sweep::Undo => has_undo,
                Sweep::Holding => has_undo || holds,
                Sweep::All => true,
            }
        });
    }

    /// Reaps the dead among the processes holding an adjustment on one of
    /// `sems`: only their undo can change what a call on `sems` sees.
    pub(super) fn sweep_undo_on(&mut self, me: &Me, host: &dyn Host, sems: &[u16]) {
        let v = self.v;
        self.sweep(me, host, |pe, p| {
            pe.undo_count.load(Ordering::Relaxed) != 0
                && sems
                    .iter()
                    .any(|&n| v.undo_cell(p, n as usize).load(Ordering::Relaxed) != 0)
        });
    }

    /// Checks the liveness of every other active process `worth(entry,
    /// index)` picks, and reaps the dead.
    fn sweep(&mut self, me: &Me, host: &dyn Host, worth: impl Fn(&ProcEntry, u32) -> bool) {
        let v = self.v;
        let mut changed = false;
        for p in 0..v.procs_in_use() {
            if p == me.slot {
                continue;
            }
            let pe = &v.procs[p as usize];
            // SYNC: Acquire pairs with the Release store that makes an
            // entry ACTIVE (`activate` in liveness/membership.rs, `HeapSet::register`).
            let sg = pe.state_gen.load(Ordering::Acquire);
            let state = ProcState::from_raw(sg);
            if state.is_claiming() {
                // Left by a claimer that died between its claim and its
                // activation: it holds nothing, so it is only freed.
                if host.is_dead(v, p) {
                    // SYNC: Release pairs with the Acquire load of a later
                    // claimer (`claim_free`); the CAS fails if the entry
                    // changed since we looked.
                    let _ = pe.state_gen.compare_exchange(
                        sg,
                        state.freed().raw(),
                        Ordering::Release,
                        Ordering::Relaxed,
                    );
                }
                continue;
            }
            if !state.is_active() {
                continue;
            }
            if !worth(pe, p) {
                continue;
            }
            if !host.is_dead(v, p) {
                continue;
            }
            changed |= self.reap(p, sg);
        }
        if changed {
            self.update_queue();
        }
    }

    /// Reaps dead process `p` (state_gen `sg`), as the kernel's exit_sem:
    /// value += adjustment, clamped; its queued operations and its entry
    /// freed. Returns whether a value changed.
    pub(super) fn reap(&mut self, p: u32, sg: u32) -> bool {
        let v = self.v;
        let pe = &v.procs[p as usize];
        // Its queued operations leave the FIFOs first (derived state: if we
        // die here, recovery relinks them and the next sweep reaps it).
        for i in 0..v.queue.len() as u32 {
            let q = &v.queue[i as usize];
            if !cfg!(shmsem_mutant = "reap_no_dequeue")
                && q.proc_slot.load(Ordering::Relaxed) == p
                && SlotStatus::from_raw(q.status.load(Ordering::Relaxed)).is_queued()
            {
                self.unlink(i);
            }
        }
        let mut entries = core::mem::take(&mut self.b.intent.entries);
        entries.clear();
        if pe.undo_count.load(Ordering::Relaxed) != 0 && v.hdr.removed.load(Ordering::Relaxed) == 0
        {
            for n in 0..v.nsems() {
                let adj = v.undo_cell(p, n).load(Ordering::Relaxed) as i32;
                if adj == 0 {
                    continue;
                }
                self.own(n);
                let val = (self.value(n) + adj).clamp(0, SEMVMX);
                entries.push(pack_intent(n as u16, val as u16, None));
            }
        }
        let changed = !entries.is_empty();
        let pid = pe.pid.load(Ordering::Relaxed);
        let it = self.intent(INTENT_REAP);
        it.entries = entries;
        it.proc_slot = p;
        it.proc_sg = sg;
        it.pid = pid;
        self.commit().is_ok() && changed
    }
}
