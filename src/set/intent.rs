//! Intent records and their application.
//!
//! Every update of a set's values, adjustments, owner or mode, and every
//! completion of a queued operation, is written first as an intent record
//! ([`IntentHeader`] and its entries), committed, and then applied from the
//! record ([`Guard::commit`] → [`SetView::redo`]): normal updates go through
//! here, not only recovery. A process that dies anywhere in a section
//! leaves either no committed record (nothing applied yet) or one that the
//! next lock holder applies again ([`SetView::repair`]): every application
//! is idempotent. One function applies each kind of record:
//!
//! * APPLY, a semop (or a queued operation's completion):
//!   [`SetView::apply_ops`];
//! * SETVAL and SETALL: [`SetView::apply_setval`], [`SetView::apply_setall`];
//! * REAP, a dead process's undo and exit: [`SetView::apply_reap`];
//! * RMID: [`SetView::apply_rmid`];
//! * SETPERM (IPC_SET): [`SetView::apply_setperm`].

use super::{inc, Guard, SetView};
use crate::sync::{self, AtomicU32, AtomicU64, Ordering};
use crate::{Error, Result};
use shm_layout::*;

/// An intent record being built in process memory, written to the segment
/// by [`Guard::commit`] (see [`IntentHeader`]).
#[derive(Default)]
pub(super) struct Intent {
    pub(super) kind: u32,
    pub(super) proc_slot: u32,
    pub(super) pid: i32,
    /// (slot, status before, status after).
    pub(super) q: Option<(u32, u32, u32)>,
    /// (uid, gid, mode) of a SETPERM record.
    pub(super) perm: (u32, u32, u32),
    pub(super) proc_sg: u32,
    pub(super) time: i64,
    pub(super) otime_sem: u32,
    pub(super) entries: Vec<u64>,
}

/// What every kind of record carries, read and validated by
/// [`SetView::redo`].
struct Record<'r> {
    /// The entries (semaphore numbers and values in range).
    entries: &'r [AtomicU64],
    /// The pid the values are written with.
    pid: i32,
    /// The process-table entry the record is about (unchecked).
    proc_slot: u32,
    /// Whether some entry carries an adjustment.
    adjs: bool,
}

impl Record<'_> {
    /// Each entry: (semaphore, value, adjustment).
    fn each(&self) -> impl Iterator<Item = (u16, u16, Option<i16>)> + '_ {
        self.entries
            .iter()
            .map(|w| unpack_intent(w.load(Ordering::Relaxed)))
    }
}

impl SetView<'_> {
    /// Applies the committed intent record. Idempotent: values are
    /// absolute, a status or a process entry changes by compare-and-swap
    /// from the value the record names. The record is untrusted: anything
    /// out of range makes it `Corrupt` before any of it is applied.
    /// `recovering`: counts may be stale, so nothing is skipped by them.
    pub(super) fn redo(&self, recovering: bool) -> Result<()> {
        let ih = self.intent;
        let kind = ih.kind.load(Ordering::Relaxed);
        let count = ih.count.load(Ordering::Relaxed) as usize;
        let entries = self.intent_entries.get(..count).ok_or(Error::Corrupt)?;
        let nsems = self.nsems();
        let mut adjs = false;
        for w in entries {
            let (n, val, adj) = unpack_intent(w.load(Ordering::Relaxed));
            if n as usize >= nsems || val as i32 > SEMVMX {
                return Err(Error::Corrupt);
            }
            adjs |= adj.is_some();
        }
        let r = Record {
            entries,
            pid: ih.pid.load(Ordering::Relaxed),
            proc_slot: ih.proc_slot.load(Ordering::Relaxed),
            adjs,
        };
        match kind {
            INTENT_APPLY => self.apply_ops(&r)?,
            INTENT_SETVAL => self.apply_setval(&r, recovering),
            INTENT_SETALL => self.apply_setall(&r, recovering),
            INTENT_REAP => self.apply_reap(&r)?,
            INTENT_RMID => self.apply_rmid(),
            INTENT_SETPERM => self.apply_setperm(),
            _ => return Err(Error::Corrupt),
        }
        Ok(())
    }

    /// APPLY: for a queued operation, first its completion: the waker's
    /// completion store (see [`super::sleep`]), which decides the race with
    /// a sleeper that gives up; then, unless the sleeper withdrew first,
    /// the call's new values and sempid, its process's adjustments, otime.
    fn apply_ops(&self, r: &Record<'_>) -> Result<()> {
        let ih = self.intent;
        let p = r.proc_slot;
        if r.adjs && p >= self.proc_slots() {
            return Err(Error::Corrupt);
        }
        if let Some(q) = self.queue.get(ih.q_slot.load(Ordering::Relaxed) as usize) {
            let (from, to) = (
                ih.q_from.load(Ordering::Relaxed),
                ih.q_to.load(Ordering::Relaxed),
            );
            if !self.complete(q, from, to) && !cfg!(shmsem_mutant = "completion_ignores_withdrawal")
            {
                // The sleeper gave up first: nothing of its operation
                // happens.
                return Ok(());
            }
        }
        for (n, val, adj) in r.each() {
            self.put_value(n as usize, val as i32, r.pid);
            if let Some(a) = adj {
                self.put_adj(p, n as usize, a as i32);
            }
        }
        if let Some(e) = self.sems.get(ih.otime_sem.load(Ordering::Relaxed) as usize) {
            self.set_otime(e);
        }
        Ok(())
    }

    /// The waker's completion store: queue slot `q`'s status from `from`
    /// (QUEUED) to `to` (DONE with the errno), by compare-and-swap, racing
    /// the sleeper's withdrawal (QUEUED to WITHDRAWN, `SetView::cancel`):
    /// whichever CAS comes first decides. Returns whether the completion
    /// stands: it won now, or earlier (a redo after a dead waker finds DONE,
    /// or FREE once the sleeper collected it). Only a withdrawal of this
    /// generation says no: nobody but a lock holder frees a WITHDRAWN slot,
    /// and no section runs between a record's commit and its application.
    #[inline(never)]
    pub(super) fn complete(&self, q: &QueueSlot, from: u32, to: u32) -> bool {
        // SYNC: Release pairs with the sleeper's Acquire load of its status
        // (SetView::sleep_loop, SetView::spin) and its withdrawal CAS
        // (SetView::cancel): the section's odd `seq` and its GLOBAL marks
        // (and the committed record) happen before the sleeper returns, so
        // whatever it reads next either waits for this section or reads the
        // committed state (SetView::committed_read), which holds its values.
        let r = q
            .status
            .compare_exchange(from, to, Ordering::Release, Ordering::Relaxed);
        sync::wrote();
        match r {
            Ok(_) => true,
            Err(cur) => cur != SlotStatus::from_raw(from).withdrawn().raw(),
        }
    }

    /// SETVAL: every process's adjustment for the semaphore cleared, the
    /// value and sempid, ctime.
    fn apply_setval(&self, r: &Record<'_>, recovering: bool) {
        for (n, _, _) in r.each() {
            self.clear_adjs(Some(n as usize), recovering);
        }
        self.put_values(r);
    }

    /// SETALL: every adjustment cleared, the values and sempids, ctime.
    fn apply_setall(&self, r: &Record<'_>, recovering: bool) {
        self.clear_adjs(None, recovering);
        self.put_values(r);
    }

    /// The values of a SETVAL or SETALL record, and its ctime.
    fn put_values(&self, r: &Record<'_>) {
        for (n, val, _) in r.each() {
            self.put_value(n as usize, val as i32, r.pid);
        }
        self.hdr
            .ctime
            .store(self.intent.time.load(Ordering::Relaxed), Ordering::Relaxed);
        sync::wrote();
    }

    /// REAP, a dead process's exit (the kernel's exit_sem): its undo as new
    /// values, its adjustments cleared, its queue slots freed, and its entry
    /// freed if it is still the dead process's.
    fn apply_reap(&self, r: &Record<'_>) -> Result<()> {
        let ih = self.intent;
        let p = r.proc_slot;
        let pe = self.procs.get(p as usize).ok_or(Error::Corrupt)?;
        let sg = ih.proc_sg.load(Ordering::Relaxed);
        for (n, val, _) in r.each() {
            self.put_value(n as usize, val as i32, r.pid);
        }
        for n in 0..self.nsems() {
            self.put_adj(p, n, 0);
        }
        for (i, q) in self.queue.iter().enumerate() {
            let st = SlotStatus::from_raw(q.status.load(Ordering::Relaxed));
            if q.proc_slot.load(Ordering::Relaxed) != p || !(st.is_queued() || st.is_done()) {
                continue;
            }
            self.free_conts(i as u32);
            // SYNC: Release as in SetView::collect (pairs with
            // Guard::alloc_slot's Acquire load).
            q.status.store(st.freed().raw(), Ordering::Release);
            sync::wrote();
        }
        // Only while the entry is still the dead process's: once freed, a
        // newcomer may already have claimed it.
        // SYNC: Acquire pairs with the Release store that made the entry
        // ACTIVE (`activate` in liveness/membership.rs, `HeapSet::register`).
        if pe.state_gen.load(Ordering::Acquire) == sg {
            // As exit_sem: an undo record sets otime (of semaphore 0) at
            // exit, whatever its adjustments were.
            if pe.undo_record.load(Ordering::Relaxed) != 0
                && self.hdr.removed.load(Ordering::Relaxed) == 0
            {
                self.set_otime(&self.sems[0]);
            }
            pe.undo_count.store(0, Ordering::Relaxed);
            pe.queued.store(0, Ordering::Relaxed);
            pe.undo_record.store(0, Ordering::Relaxed);
            sync::wrote();
            let free = ProcState::from_raw(sg).freed().raw();
            // SYNC: AcqRel: Release publishes the cleared entry to the next
            // claimer's AcqRel CAS from FREE (`claim_free` in liveness/membership.rs); Acquire
            // as the load above.
            let _ = pe
                .state_gen
                .compare_exchange(sg, free, Ordering::AcqRel, Ordering::Relaxed);
            sync::wrote();
        }
        Ok(())
    }

    /// RMID: the set in global mode for ever (the fast path never runs
    /// again), removed, and every queued operation completed with EIDRM.
    fn apply_rmid(&self) {
        self.hdr
            .global_mode
            .store(GlobalMode::FOREVER.raw(), Ordering::Relaxed);
        // SYNC: Release pairs with the Acquire loads of `removed` in
        // lookups (`Namespace::find`, `lookup_slow`): whoever sees it sees the set as it
        // was left.
        self.hdr.removed.store(1, Ordering::Release);
        sync::wrote();
        let eidrm = Error::Removed.errno() as u32;
        for q in self.queue {
            let st = SlotStatus::from_raw(q.status.load(Ordering::Relaxed));
            if st.is_queued() {
                // SYNC: the waker's completion store, as in
                // SetView::apply_ops (pairs with SetView::sleep_loop's
                // Acquire load).
                let _ = q.status.compare_exchange(
                    st.raw(),
                    st.done(eidrm).raw(),
                    Ordering::Release,
                    Ordering::Relaxed,
                );
                sync::wrote();
            }
        }
    }

    /// SETPERM (IPC_SET): owner, mode, ctime, and the permission count
    /// moved.
    fn apply_setperm(&self) {
        let ih = self.intent;
        let h = self.hdr;
        h.uid
            .store(ih.uid.load(Ordering::Relaxed), Ordering::Relaxed);
        sync::wrote();
        h.gid
            .store(ih.gid.load(Ordering::Relaxed), Ordering::Relaxed);
        sync::wrote();
        h.mode
            .store(ih.mode.load(Ordering::Relaxed) & 0o777, Ordering::Relaxed);
        sync::wrote();
        h.ctime
            .store(ih.time.load(Ordering::Relaxed), Ordering::Relaxed);
        sync::wrote();
        // SYNC: Release: a reader that sees the new count sees the new
        // owner and mode (pairs with the Acquire load in
        // Namespace::granted). Redone twice, it moves twice: no harm.
        h.perm_seq.store(
            h.perm_seq.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Release,
        );
        sync::wrote();
    }

    /// Makes the record's serial odd (a new odd value) before a committed
    /// record is applied: from here until
    /// [`Self::end_applying`], a lock-free reader of the committed state
    /// takes the record's values for the set's (`SetView::committed_read`).
    /// The record is committed before: a writer that dies in between leaves
    /// a record its recoverer redoes, while readers still took the values
    /// before it, which nothing had changed yet.
    #[inline]
    pub(super) fn begin_applying(&self) {
        let ser = &self.intent.serial;
        let s = SeqCount::from_raw(ser.load(Ordering::Relaxed));
        if !cfg!(shmsem_mutant = "no_applying_serial") {
            // (Odd already, left by a dead writer: it moves on to the next
            // odd value, and a reader that saw the old one reads again.)
            // SYNC: Release: the whole record happens before a reader that
            // acquire-loads the odd serial uses it (SetView::committed_read).
            ser.store(s.begin_write().raw(), Ordering::Release);
            sync::wrote();
        }
        // SYNC: orders the odd serial before the application's writes;
        // pairs with the reader's Acquire fence before its re-check: one
        // that saw a value written by the application sees the odd serial.
        sync::fence(Ordering::Release);
    }

    /// Makes the record's serial even again once the record is applied
    /// (and cleared), if it is odd.
    #[inline]
    pub(super) fn end_applying(&self) {
        let ser = &self.intent.serial;
        let s = SeqCount::from_raw(ser.load(Ordering::Relaxed));
        if s.is_writing() {
            // SYNC: Release: the application happens before a reader that
            // acquire-loads the even serial reads the words
            // (SetView::committed_read).
            ser.store(s.end_write().raw(), Ordering::Release);
            sync::wrote();
        }
    }

    /// Sets process `p`'s adjustment for semaphore `n`, keeping the counts.
    /// Idempotent.
    fn put_adj(&self, p: u32, n: usize, adj: i32) {
        let cell = self.undo_cell(p, n);
        let old = cell.load(Ordering::Relaxed) as i32;
        if old == adj {
            return;
        }
        cell.store(adj as i16, Ordering::Relaxed);
        sync::wrote();
        let pe = &self.procs[p as usize];
        let e = &self.sems[n];
        if old == 0 {
            inc(&pe.undo_count);
            inc(&e.nundo);
        } else if adj == 0 {
            super::dec(&pe.undo_count);
            super::dec(&e.nundo);
        }
        sync::wrote();
    }

    /// Writes value and sempid of semaphore `n` (a word the writer owns).
    fn put_value(&self, n: usize, value: i32, pid: i32) {
        let e = &self.sems[n].word;
        let w = SemWord::from_raw(e.load(Ordering::Relaxed));
        // SYNC: Release pairs with the lock-free readers' Acquire loads of
        // the word (SetView::read_word, SetView::snapshot).
        e.store(w.updated(value as u16, pid).raw(), Ordering::Release);
        sync::wrote();
    }

    /// Clears every process's adjustment for semaphore `only` (or all).
    /// `exhaustive` reads every row; otherwise rows whose count says they
    /// hold nothing are skipped (the counts are exact outside recovery).
    fn clear_adjs(&self, only: Option<usize>, exhaustive: bool) {
        let n = if exhaustive {
            self.proc_slots()
        } else {
            self.procs_in_use()
        };
        for p in 0..n {
            if !exhaustive && self.procs[p as usize].undo_count.load(Ordering::Relaxed) == 0 {
                continue;
            }
            match only {
                Some(n) => self.put_adj(p, n, 0),
                None => (0..self.nsems()).for_each(|n| self.put_adj(p, n, 0)),
            }
        }
    }

    /// Frees queue slot `i`'s continuation slots (only those still CONT).
    pub(super) fn free_conts(&self, i: u32) {
        let Some(q) = self.queue.get(i as usize) else {
            return;
        };
        let mut c = q.cont.load(Ordering::Relaxed);
        let mut hops = 0;
        while let Some(cq) = self.queue.get(c as usize) {
            let st = SlotStatus::from_raw(cq.status.load(Ordering::Relaxed));
            if !st.is_cont() || hops > self.queue.len() {
                break;
            }
            hops += 1;
            // SYNC: Release as in SetView::collect (pairs with
            // Guard::alloc_slot's Acquire load).
            cq.status.store(st.freed().raw(), Ordering::Release);
            sync::wrote();
            c = cq.cont.load(Ordering::Relaxed);
        }
    }
}

impl Guard<'_, '_> {
    /// Starts a new intent record of `kind`.
    pub(super) fn intent(&mut self, kind: u32) -> &mut Intent {
        let it = &mut self.b.intent;
        it.kind = kind;
        it.proc_slot = NIL;
        it.pid = 0;
        it.q = None;
        it.perm = (0, 0, 0);
        it.proc_sg = 0;
        it.time = 0;
        it.otime_sem = NIL;
        it.entries.clear();
        it
    }

    /// Writes the intent record to the segment, commits it, applies it and
    /// clears it: a process that dies anywhere in here leaves either no
    /// committed record (nothing applied yet) or one the next lock holder
    /// redoes.
    pub(super) fn commit(&mut self) -> Result<()> {
        self.begin_write();
        let v = self.v;
        let ih = v.intent;
        // SYNC: orders the end of the last record (its even serial) before
        // this record's fields; pairs with the Acquire fence of a
        // committed-state reader before its re-check of the serial
        // (SetView::committed_read): one that read a field of this record
        // sees that the last one is over.
        sync::fence(Ordering::Release);
        let it = &self.b.intent;
        if it.entries.len() > v.intent_entries.len() {
            return Err(Error::Corrupt);
        }
        let (q_slot, q_from, q_to) = it.q.unwrap_or((NIL, 0, 0));
        let put = |f: &AtomicU32, x: u32| {
            f.store(x, Ordering::Relaxed);
            sync::wrote();
        };
        put(&ih.kind, it.kind);
        put(&ih.count, it.entries.len() as u32);
        put(&ih.proc_slot, it.proc_slot);
        ih.pid.store(it.pid, Ordering::Relaxed);
        sync::wrote();
        if it.kind == INTENT_APPLY {
            // What redo reads of an APPLY record: no more.
            put(&ih.otime_sem, it.otime_sem);
            put(&ih.q_slot, q_slot);
            if q_slot != NIL {
                put(&ih.q_from, q_from);
                put(&ih.q_to, q_to);
            }
        } else {
            for (f, x) in [
                (&ih.q_slot, q_slot),
                (&ih.q_from, q_from),
                (&ih.q_to, q_to),
                (&ih.uid, it.perm.0),
                (&ih.gid, it.perm.1),
                (&ih.mode, it.perm.2),
                (&ih.proc_sg, it.proc_sg),
                (&ih.otime_sem, it.otime_sem),
            ] {
                put(f, x);
            }
            ih.time.store(it.time, Ordering::Relaxed);
            sync::wrote();
        }
        for (slot, &e) in v.intent_entries.iter().zip(&it.entries) {
            slot.store(e, Ordering::Relaxed);
            sync::wrote();
        }
        // SYNC: Release: the whole record happens before it counts as
        // committed; pairs with the Acquire load in SetView::repair.
        ih.commit.store(INTENT_COMMITTED, Ordering::Release);
        sync::wrote();
        v.begin_applying();
        let r = v.redo(false);
        // SYNC: Release: the record's application happens before it is
        // cleared, for a recoverer's Acquire load (SetView::repair).
        ih.commit.store(INTENT_NONE, Ordering::Release);
        sync::wrote();
        v.end_applying();
        r
    }

    /// Applies the evaluated call in the scratch, through an intent record:
    /// value and sempid of every named semaphore, process `p`'s
    /// adjustments, otime; and, with `q`, the completion of that queued
    /// operation (slot, its status now).
    pub(super) fn apply(
        &mut self,
        p: u32,
        pid: i32,
        first: u16,
        q: Option<(u32, u32)>,
    ) -> Result<()> {
        let touched = core::mem::take(&mut self.b.scratch.touched);
        let it = self.intent(INTENT_APPLY);
        it.proc_slot = p;
        it.pid = pid;
        it.otime_sem = first as u32;
        it.q = q.map(|(i, st)| (i, st, SlotStatus::from_raw(st).done(0).raw()));
        for t in &touched {
            let adj = (t.adj != t.old_adj).then_some(t.adj as i16);
            it.entries.push(pack_intent(t.num, t.value as u16, adj));
        }
        self.b.scratch.touched = touched;
        self.commit()
    }
}
