//! The pending queue: operations that must wait, in two FIFOs (the
//! wait-for-zero ones and the altering ones) linked through the queue slots
//! of the segment, as the kernel's pending_const and pending_alter lists.
//!
//! A blocked call is queued ([`Guard::enqueue`]); after every change the
//! queue is retried ([`Guard::update_queue`]), and a completed or failed
//! operation leaves its FIFO ([`Guard::finish`]), its sleeper woken when
//! the section ends (see [`super::sleep`]). Every walk of a FIFO is a
//! [`Fifo`].

use super::{dec, distinct, inc, Guard, Me, SetView};
use crate::engine::{self, Eval};
use crate::sync::{self, AtomicU32, Ordering};
use crate::sysv::Sembuf;
use crate::{Error, Result};
use shm_layout::*;

/// A walk of one FIFO from its head, in FIFO order, bounded (a cycle in
/// corrupt links ends it after as many hops as there are slots). Each step
/// yields a slot's index and the slot.
pub(super) struct Fifo<'a> {
    queue: &'a [QueueSlot],
    at: At<'a>,
    hops: usize,
}

/// Where a [`Fifo`] finds its next slot.
enum At<'a> {
    /// The `next` link of the slot yielded last, read *before* yielding it
    /// (at the start: the head as it was), so that the walker may complete
    /// and unlink the slot it is given.
    Link(u32),
    /// The list's head, read again at every step: a walk that takes every
    /// slot it is given out of the list.
    Head(&'a AtomicU32),
}

impl<'a> Iterator for Fifo<'a> {
    type Item = (u32, &'a QueueSlot);

    fn next(&mut self) -> Option<(u32, &'a QueueSlot)> {
        let i = match self.at {
            At::Link(i) => i,
            At::Head(h) => h.load(Ordering::Relaxed),
        };
        let q = self.queue.get(i as usize)?;
        self.hops += 1;
        if self.hops > self.queue.len() {
            return None; // a cycle: corrupt links; stop rather than spin
        }
        if let At::Link(next) = &mut self.at {
            *next = q.next.load(Ordering::Relaxed);
        }
        Some((i, q))
    }
}

impl<'a> SetView<'a> {
    /// Head and tail of the altering FIFO (`alter`) or the wait-for-zero one.
    fn ends(&self, alter: bool) -> (&'a AtomicU32, &'a AtomicU32) {
        if alter {
            (&self.hdr.alter_head, &self.hdr.alter_tail)
        } else {
            (&self.hdr.const_head, &self.hdr.const_tail)
        }
    }

    /// A walk of a FIFO along its links (see [`At::Link`]).
    pub(super) fn fifo(&self, alter: bool) -> Fifo<'a> {
        Fifo {
            queue: self.queue,
            at: At::Link(self.ends(alter).0.load(Ordering::Relaxed)),
            hops: 0,
        }
    }

    /// A walk of a FIFO by its head (see [`At::Head`]).
    pub(super) fn drain(&self, alter: bool) -> Fifo<'a> {
        Fifo {
            queue: self.queue,
            at: At::Head(self.ends(alter).0),
            hops: 0,
        }
    }

    /// The operations stored in queue slot `i` and its continuations,
    /// validated (every index and count is untrusted).
    pub(super) fn read_ops(&self, i: u32, out: &mut Vec<Sembuf>) -> Result<()> {
        out.clear();
        let head = self.slot(i)?;
        let n = head.nsops.load(Ordering::Relaxed) as usize;
        if n == 0 || n > SEMOPM_MAX as usize {
            return Err(Error::Corrupt);
        }
        let mut cur = head;
        let mut hops = 0;
        while out.len() < n {
            for w in &cur.ops {
                if out.len() == n {
                    break;
                }
                let (num, op, flg) = unpack_op(w.load(Ordering::Relaxed));
                if num as usize >= self.nsems() {
                    return Err(Error::Corrupt);
                }
                out.push(Sembuf::new(num, op, flg));
            }
            if out.len() < n {
                hops += 1;
                if hops > self.queue.len() {
                    return Err(Error::Corrupt);
                }
                cur = self.slot(cur.cont.load(Ordering::Relaxed))?;
            }
        }
        Ok(())
    }
}

impl Guard<'_, '_> {
    /// A free queue slot, searched from the allocation hint.
    fn alloc_slot(&mut self) -> Option<u32> {
        let n = self.v.queue.len() as u32;
        let start = self.v.hdr.alloc_hint.load(Ordering::Relaxed) % n;
        for k in 0..n {
            let i = (start + k) % n;
            // SYNC: Acquire pairs with the Release store of FREE by the
            // slot's last user (SetView::collect and SetView::cancel, which
            // run without the lock): its accesses to the slot are over.
            let st = SlotStatus::from_raw(self.v.queue[i as usize].status.load(Ordering::Acquire));
            if st.is_free() {
                self.v.hdr.alloc_hint.store((i + 1) % n, Ordering::Relaxed);
                return Some(i);
            }
        }
        None
    }

    /// Queues the caller's operation. No intent record: the slots are
    /// reserved (CONT, which recovery frees unless a queued operation
    /// reaches them), filled, linked (links are derived), and the head's
    /// QUEUED status, written last, is the one write that makes it real.
    pub(super) fn enqueue(
        &mut self,
        me: &Me,
        sops: &[Sembuf],
        blocked_at: usize,
    ) -> Result<(u32, u32)> {
        let slots = self.reserve(sops.len().div_ceil(SLOT_OPS))?;
        self.begin_write();
        let alter = engine::alters(sops);
        let head = self.fill(&slots, me, sops, blocked_at, alter);
        self.link(head, alter);
        let q = &self.v.queue[head as usize];
        let st = SlotStatus::from_raw(q.status.load(Ordering::Relaxed))
            .queued()
            .raw();
        // SYNC: Release: the slot's contents happen before its QUEUED
        // status for any Acquire reader of the status (Guard::alloc_slot);
        // the lock holders that read queued slots are ordered by the lock
        // as well.
        q.status.store(st, Ordering::Release);
        sync::wrote();
        Ok((head, st))
    }

    /// Reserves `need` free slots (CONT, a new generation), or none.
    fn reserve(&mut self, need: usize) -> Result<Vec<u32>> {
        let v = self.v;
        let mut slots: Vec<u32> = Vec::with_capacity(need);
        for _ in 0..need {
            let found = match self.alloc_slot() {
                Some(i) => Some(i),
                None => {
                    // Full: perhaps of slots withdrawn and not discarded.
                    self.tidy(true);
                    self.alloc_slot()
                }
            };
            let Some(i) = found else {
                for &i in &slots {
                    let q = &v.queue[i as usize];
                    let st = SlotStatus::from_raw(q.status.load(Ordering::Relaxed));
                    q.status.store(st.freed().raw(), Ordering::Relaxed);
                    sync::wrote();
                }
                return Err(Error::NoMemory);
            };
            // Reserve it at once so the next search skips it.
            let q = &v.queue[i as usize];
            let st = SlotStatus::from_raw(q.status.load(Ordering::Relaxed));
            q.status.store(st.reserved().raw(), Ordering::Relaxed);
            sync::wrote();
            slots.push(i);
        }
        Ok(slots)
    }

    /// Writes the operation into the reserved `slots` (ops, continuation
    /// links, the head's fields and ticket), and counts it in the waiter
    /// counts. Returns the head slot.
    fn fill(
        &mut self,
        slots: &[u32],
        me: &Me,
        sops: &[Sembuf],
        blocked_at: usize,
        alter: bool,
    ) -> u32 {
        let v = self.v;
        for (k, &i) in slots.iter().enumerate() {
            let q = &v.queue[i as usize];
            let chunk = &sops[k * SLOT_OPS..((k + 1) * SLOT_OPS).min(sops.len())];
            for (w, s) in q.ops.iter().zip(chunk) {
                w.store(pack_op(s.sem_num, s.sem_op, s.sem_flg), Ordering::Relaxed);
            }
            q.cont
                .store(slots.get(k + 1).copied().unwrap_or(NIL), Ordering::Relaxed);
            sync::wrote();
        }
        let head = slots[0];
        let q = &v.queue[head as usize];
        q.proc_slot.store(me.slot, Ordering::Relaxed);
        q.pid.store(me.pid, Ordering::Relaxed);
        q.nsops.store(sops.len() as u32, Ordering::Relaxed);
        let flags = SlotFlags::new(engine::has_undo(sops), alter);
        q.flags.store(flags.raw(), Ordering::Relaxed);
        q.since.store(sync::monotonic_ns(), Ordering::Relaxed);
        let ticket = v.hdr.next_ticket.load(Ordering::Relaxed);
        v.hdr
            .next_ticket
            .store(ticket.wrapping_add(1), Ordering::Relaxed);
        q.ticket.store(ticket, Ordering::Relaxed);
        sync::wrote();
        self.set_blocked(head, &sops[blocked_at]);
        for n in distinct(sops) {
            inc(&v.sems[n as usize].nwait);
        }
        if let Some(p) = v.proc(me.slot) {
            p.queued.fetch_add(1, Ordering::Relaxed);
        }
        sync::wrote();
        head
    }

    /// Links slot `head` at the tail of its FIFO.
    fn link(&mut self, head: u32, alter: bool) {
        let v = self.v;
        let q = &v.queue[head as usize];
        let (head_f, tail_f) = v.ends(alter);
        let tail = tail_f.load(Ordering::Relaxed);
        q.prev.store(tail, Ordering::Relaxed);
        q.next.store(NIL, Ordering::Relaxed);
        match v.queue.get(tail as usize) {
            Some(t) => t.next.store(head, Ordering::Relaxed),
            None => head_f.store(head, Ordering::Relaxed),
        }
        tail_f.store(head, Ordering::Relaxed);
        sync::wrote();
    }

    /// Records the op slot `slot` blocks on (GETNCNT / GETZCNT count it).
    fn set_blocked(&mut self, slot: u32, op: &Sembuf) {
        let b = Blocked::new(op.sem_num as u32, op.sem_op == 0);
        self.v.queue[slot as usize]
            .blocked
            .store(b.raw(), Ordering::Relaxed);
    }

    /// Unlinks slot `i` from its FIFO and drops its waiter counts (derived
    /// state: no intent record). Its status and continuations are left to
    /// the caller.
    pub(super) fn unlink(&mut self, i: u32) {
        let v = self.v;
        self.begin_write();
        let q = &v.queue[i as usize];
        let alter = SlotFlags::from_raw(q.flags.load(Ordering::Relaxed)).alter();
        let (head_f, tail_f) = v.ends(alter);
        let (prev, next) = (
            q.prev.load(Ordering::Relaxed),
            q.next.load(Ordering::Relaxed),
        );
        match v.queue.get(prev as usize) {
            Some(p) => p.next.store(next, Ordering::Relaxed),
            None => head_f.store(next, Ordering::Relaxed),
        }
        match v.queue.get(next as usize) {
            Some(n) => n.prev.store(prev, Ordering::Relaxed),
            None => tail_f.store(prev, Ordering::Relaxed),
        }
        q.prev.store(NIL, Ordering::Relaxed);
        q.next.store(NIL, Ordering::Relaxed);
        sync::wrote();
        let mut ops = core::mem::take(&mut self.b.ops);
        if v.read_ops(i, &mut ops).is_ok() {
            for n in distinct(&ops) {
                dec(&v.sems[n as usize].nwait);
                // The count changed: the word's WAITERS bit must follow when
                // the section ends.
                self.own(n as usize);
            }
        }
        sync::wrote();
        self.b.ops = ops;
    }

    /// After slot `i`'s completion was applied: out of its FIFO, its
    /// continuations freed, its sleeper woken when the section ends.
    pub(super) fn finish(&mut self, i: u32) {
        self.unlink(i);
        self.v.free_conts(i);
        self.b.wakes.push(i);
    }

    /// Whether the sleeper of slot `i`, QUEUED as `st` when the section
    /// looked, has withdrawn since (its status is now WITHDRAWN of that
    /// generation: it stays so until a lock holder discards the slot).
    fn withdrew(&self, i: u32, st: u32) -> bool {
        self.v.queue[i as usize].status.load(Ordering::Relaxed)
            == SlotStatus::from_raw(st).withdrawn().raw()
    }

    /// Discards slot `i`, whose sleeper withdrew (its status is WITHDRAWN):
    /// out of its FIFO and its waiter counts, the slot freed, then its
    /// continuations (recovery frees them too if we die in between). No
    /// intent record: the withdrawal was the one write that cancelled the
    /// operation; this is derived state.
    pub(super) fn discard(&mut self, i: u32) {
        if !cfg!(shmsem_mutant = "cancel_no_dequeue") {
            self.unlink(i);
        }
        let q = &self.v.queue[i as usize];
        let st = SlotStatus::from_raw(q.status.load(Ordering::Relaxed));
        // SYNC: Release as in SetView::collect (pairs with
        // Guard::alloc_slot's Acquire load).
        q.status.store(st.freed().raw(), Ordering::Release);
        sync::wrote();
        self.v.free_conts(i);
    }

    /// Discards the withdrawn slots that their sleepers could not discard
    /// themselves (see [`SetHeader::withdrawn`]): only when the count says
    /// there are some, or with `force` (the arena is full).
    pub(super) fn tidy(&mut self, force: bool) {
        let h = self.v.hdr;
        if !force && h.withdrawn.load(Ordering::Relaxed) == 0 {
            return;
        }
        // SYNC: Acquire pairs with the Release increment by a sleeper that
        // left its slot WITHDRAWN (SetView::cancel): the statuses it
        // counted are visible to the walk below.
        h.withdrawn.swap(0, Ordering::Acquire);
        for i in 0..self.v.queue.len() as u32 {
            let st = SlotStatus::from_raw(self.v.queue[i as usize].status.load(Ordering::Relaxed));
            if st.is_withdrawn() {
                self.discard(i);
            }
        }
    }

    /// Fails the queued operation in slot `i` with `err` (an intent record
    /// of its completion alone).
    fn fail(&mut self, i: u32, err: Error) {
        let st = self.v.queue[i as usize].status.load(Ordering::Relaxed);
        let it = self.intent(INTENT_APPLY);
        it.q = Some((
            i,
            st,
            SlotStatus::from_raw(st).done(err.errno() as u32).raw(),
        ));
        if self.commit().is_ok() {
            if self.withdrew(i, st) {
                self.discard(i);
            } else {
                self.finish(i);
            }
        }
    }

    /// Tries the queued operations after a change, as the kernel's
    /// update_queue: wait-for-zero operations first, then the altering ones
    /// in FIFO order, skipping those that still block; after every
    /// completion start again from the head.
    pub(super) fn update_queue(&mut self) {
        let h = self.v.hdr;
        if h.alter_head.load(Ordering::Relaxed) == NIL
            && h.const_head.load(Ordering::Relaxed) == NIL
        {
            return;
        }
        loop {
            let reaped = self.try_list(false);
            if !self.try_list(true) && !reaped {
                break;
            }
        }
    }

    /// One pass over a FIFO. For the altering list it stops at the first
    /// completion (returns true); the wait-for-zero list completes nothing
    /// that could enable another, so it runs to the end. Either stops when
    /// it reaps a dead waiter (returns true): the reaped undo may enable
    /// anything.
    fn try_list(&mut self, alter: bool) -> bool {
        let v = self.v;
        let mut ops = core::mem::take(&mut self.b.ops);
        let mut restarted = false;
        // The walk has read each slot's `next` before it gives us the slot:
        // completing the slot unlinks it.
        for (i, q) in v.fifo(alter) {
            let st = q.status.load(Ordering::Relaxed);
            if SlotStatus::from_raw(st).is_withdrawn() {
                // Its sleeper gave up while the lock was held.
                self.discard(i);
                continue;
            }
            if !SlotStatus::from_raw(st).is_queued() {
                break; // corrupt links; stop rather than complete a stranger
            }
            let p = q.proc_slot.load(Ordering::Relaxed);
            if v.read_ops(i, &mut ops).is_err() || p >= v.proc_slots() {
                self.b.ops = ops;
                self.fail(i, Error::Corrupt);
                ops = core::mem::take(&mut self.b.ops);
                continue;
            }
            for n in distinct(&ops) {
                self.own(n as usize);
            }
            match self.evaluate(&ops, p) {
                Eval::Done if self.dead_waiter(p) => {
                    // A dead process's operation never completes, however
                    // recently it died (the kernel's sleeper dequeued
                    // itself on its way out): it is reaped instead, its
                    // undo applied, and the walk starts again.
                    self.b.ops = ops;
                    self.reap_waiter(i, p);
                    return true;
                }
                Eval::Done => {
                    let pid = q.pid.load(Ordering::Relaxed);
                    self.b.ops = ops;
                    let applied = self.apply(p, pid, self.b.ops[0].sem_num, Some((i, st)));
                    ops = core::mem::take(&mut self.b.ops);
                    if applied.is_err() {
                        // Only a record scribbled on mid-write fails: stop
                        // here rather than retry it for ever.
                        break;
                    }
                    if self.withdrew(i, st) {
                        // The sleeper gave up before our completion store:
                        // nothing was applied, nothing changed.
                        self.discard(i);
                        continue;
                    }
                    self.finish(i);
                    if alter {
                        restarted = true;
                        break;
                    }
                }
                Eval::Fail(e) => {
                    self.b.ops = ops;
                    self.fail(i, e);
                    ops = core::mem::take(&mut self.b.ops);
                }
                Eval::Block(k) => {
                    let op = ops[k];
                    self.set_blocked(i, &op);
                }
            }
        }
        self.b.ops = ops;
        restarted
    }

    /// Whether the owner of a queued operation, process-table entry `p`,
    /// is dead. One liveness check per completion handed to another
    /// process (a system call: see `OsHost::is_dead`); the holder's own
    /// process is alive.
    fn dead_waiter(&self, p: u32) -> bool {
        p != self.me.slot
            && !cfg!(shmsem_mutant = "complete_dead_waiter")
            && self.host.is_dead(self.v, p)
    }

    /// Reaps the dead owner `p` of queued slot `i`: its queued operations
    /// leave, its undo is applied. An entry that is not ACTIVE cannot own
    /// a queued operation: the slot alone is failed.
    fn reap_waiter(&mut self, i: u32, p: u32) {
        let sg = self.v.procs[p as usize].state_gen.load(Ordering::Relaxed);
        if ProcState::from_raw(sg).is_active() {
            self.reap(p, sg);
        } else {
            self.fail(i, Error::Corrupt);
        }
    }

    /// GETNCNT / GETZCNT: sleepers whose first blocking op is on `n`.
    pub fn count_waiters(&self, n: usize, zero: bool) -> u32 {
        let v = self.v;
        let want = Blocked::new(n as u32, zero).raw();
        let mut count = 0;
        for alter in [true, false] {
            for (_, q) in v.fifo(alter) {
                // A withdrawn slot, still linked, waits for nothing.
                if q.blocked.load(Ordering::Relaxed) == want
                    && SlotStatus::from_raw(q.status.load(Ordering::Relaxed)).is_queued()
                {
                    count += 1;
                }
            }
        }
        count
    }
}
