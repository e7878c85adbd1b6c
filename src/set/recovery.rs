//! Recovery after a dead lock holder: [`SetView::repair`] finishes the dead
//! holder's update from its intent record (see [`super::intent`]) and
//! recomputes everything derived from the set's primary state: counts
//! ([`SetView::recount`]) and FIFO links ([`SetView::relink`]).

use super::{distinct, SetView};
use crate::sync::{self, Ordering};
use shm_layout::*;

impl SetView<'_> {
    /// After taking the lock from a dead holder: finish its update (redo a
    /// committed intent record, drop an uncommitted one), close the
    /// sequence counter, and recompute everything derived: marks and
    /// global mode, waiter and undo counts, the FIFO links (from the
    /// tickets), continuation slots nobody owns; then wake every sleeper
    /// whose operation was completed (its waker may have died before
    /// waking it). Every step is idempotent: a recoverer that dies here is
    /// recovered in turn.
    pub(super) fn repair(&self) {
        for e in self.sems {
            // SYNC: AcqRel as in Guard::enter_global: every word ours.
            e.word.fetch_or(SEM_GLOBAL, Ordering::AcqRel);
        }
        let m = GlobalMode::from_raw(self.hdr.global_mode.load(Ordering::Relaxed));
        if let Some(m) = m.repaired() {
            self.hdr.global_mode.store(m.raw(), Ordering::Relaxed);
        }
        // SYNC: Acquire pairs with the Release store of INTENT_COMMITTED
        // (Guard::commit): a committed record is complete.
        if !cfg!(shmsem_mutant = "no_redo")
            && self.intent.commit.load(Ordering::Acquire) == INTENT_COMMITTED
        {
            self.begin_applying();
            // A corrupt record cannot be applied; nothing better to do.
            let _ = self.redo(true);
        }
        // SYNC: Release as Guard::commit's clearing store: for the next
        // recoverer's Acquire load above.
        self.intent.commit.store(INTENT_NONE, Ordering::Release);
        // An odd serial left by a writer that died applying (or by us).
        self.end_applying();
        let s = SeqCount::from_raw(self.hdr.seq.load(Ordering::Relaxed));
        if s.is_writing() {
            // SYNC: Release as in Guard::close_seq (pairs with
            // SetView::seq_read's Acquire load).
            self.hdr.seq.store(s.end_write().raw(), Ordering::Release);
        }
        self.recount();
        self.relink();
        for q in self.queue {
            if SlotStatus::from_raw(q.status.load(Ordering::Relaxed)).is_done() {
                sync::futex_wake(&q.status, 1);
            }
        }
    }

    /// Recomputes the undo and waiter counts from the undo rows and queue.
    fn recount(&self) {
        for e in self.sems {
            e.nwait.store(0, Ordering::Relaxed);
            e.nundo.store(0, Ordering::Relaxed);
        }
        for p in 0..self.proc_slots() {
            let mut n = 0;
            for s in 0..self.nsems() {
                if self.undo_cell(p, s).load(Ordering::Relaxed) != 0 {
                    n += 1;
                    self.sems[s].nundo.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.procs[p as usize]
                .undo_count
                .store(n, Ordering::Relaxed);
            self.procs[p as usize].queued.store(0, Ordering::Relaxed);
        }
        let mut ops = Vec::new();
        for (i, q) in self.queue.iter().enumerate() {
            let st = SlotStatus::from_raw(q.status.load(Ordering::Relaxed));
            if st.is_queued() || st.is_done() {
                if let Some(p) = self.proc(q.proc_slot.load(Ordering::Relaxed)) {
                    p.queued.fetch_add(1, Ordering::Relaxed);
                }
            }
            if st.is_queued() && self.read_ops(i as u32, &mut ops).is_ok() {
                for s in distinct(&ops) {
                    self.sems[s as usize].nwait.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Rebuilds both FIFOs from the queued slots in ticket order, and frees
    /// withdrawn slots and the continuation slots that no queued operation
    /// reaches.
    fn relink(&self) {
        let mut reached = vec![false; self.queue.len()];
        let mut lists: [Vec<(u64, u32)>; 2] = [Vec::new(), Vec::new()];
        for (i, q) in self.queue.iter().enumerate() {
            if !SlotStatus::from_raw(q.status.load(Ordering::Relaxed)).is_queued() {
                continue;
            }
            let alter = SlotFlags::from_raw(q.flags.load(Ordering::Relaxed)).alter();
            lists[alter as usize].push((q.ticket.load(Ordering::Relaxed), i as u32));
            let mut c = q.cont.load(Ordering::Relaxed);
            let mut hops = 0;
            while let Some(cq) = self.queue.get(c as usize) {
                if hops > self.queue.len() || reached[c as usize] {
                    break;
                }
                hops += 1;
                reached[c as usize] = true;
                c = cq.cont.load(Ordering::Relaxed);
            }
        }
        for (i, q) in self.queue.iter().enumerate() {
            let st = SlotStatus::from_raw(q.status.load(Ordering::Relaxed));
            // A withdrawn slot is left out of the FIFOs and the counts: its
            // sleeper gave up (and already counted it out of `queued`).
            if (st.is_cont() && !reached[i]) || st.is_withdrawn() {
                // SYNC: Release as in SetView::collect (pairs with
                // Guard::alloc_slot's Acquire load).
                q.status.store(st.freed().raw(), Ordering::Release);
            }
        }
        let heads = [
            (&self.hdr.const_head, &self.hdr.const_tail),
            (&self.hdr.alter_head, &self.hdr.alter_tail),
        ];
        for (list, (head, tail)) in lists.iter_mut().zip(heads) {
            list.sort_unstable();
            let mut prev = NIL;
            for &(_, i) in list.iter() {
                let q = &self.queue[i as usize];
                q.prev.store(prev, Ordering::Relaxed);
                q.next.store(NIL, Ordering::Relaxed);
                match self.queue.get(prev as usize) {
                    Some(p) => p.next.store(i, Ordering::Relaxed),
                    None => head.store(i, Ordering::Relaxed),
                }
                prev = i;
            }
            if prev == NIL {
                head.store(NIL, Ordering::Relaxed);
            }
            tail.store(prev, Ordering::Relaxed);
        }
    }
}
