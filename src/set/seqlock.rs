//! Consistent lock-free reads: GETVAL / GETPID ([`SetView::read_sem`]),
//! GETALL ([`SetView::snapshot`]) and IPC_STAT's header fields
//! ([`SetView::read_consistent`]), all through one seqlock read loop
//! ([`SetView::seq_read`]).
//!
//! A lock holder that writes makes the header's `seq` odd before its first
//! data write (`Guard::begin_write`) and even again when its section ends
//! (`Guard::close_seq`). A read that starts with `seq` even and finds the
//! same `seq` after its loads saw no writing section.
//!
//! A reader that finds a section in the way for long (its holder stopped,
//! or dead and not yet recovered) does not wait for it: it reads the state
//! the section's last committed step left ([`SetView::committed_read`]:
//! the words, overlaid with the intent record being applied), checked by
//! the record's own sequence counter (`IntentHeader::serial`).

use super::{Host, SetView};
use crate::sync::{self, AtomicU64, Ordering};
use shm_layout::*;

/// Lock-free snapshot attempts before GETALL tries the lock, or reads the
/// committed state ([`SetView::committed_read`]).
const SNAPSHOT_TRIES: u32 = 16;
/// Attempts of a lock-free consistent read before the reader tries the
/// lock, or reads the committed state (a writer that is slow, stopped, or
/// died, mid-update).
const SEQ_TRIES: u32 = 1000;

/// How a seqlock read checks that no writer overlapped it. Only the loom
/// mutants turn `fence` or `seq` off.
#[derive(Clone, Copy)]
struct Recheck {
    /// An Acquire fence orders the read's loads before the re-check.
    fence: bool,
    /// The re-check compares with `seq` as the read began (off: with `seq`
    /// loaded again after the fence, which checks nothing).
    seq: bool,
    /// A spin hint after an overlapped attempt, as after an odd `seq`
    /// (GETALL retries at once instead: its two collections take longer
    /// than a hint).
    pause: bool,
}

impl Recheck {
    const FULL: Recheck = Recheck {
        fence: true,
        seq: true,
        pause: true,
    };
}

impl<'a> SetView<'a> {
    /// The seqlock read loop: `read` runs while `seq` is even, and its
    /// result counts only if `seq` has not moved by the end of it. `read`
    /// may refuse an attempt (`None`, e.g. two collections that differ):
    /// it is retried like an overlapped one. `None` after `tries` attempts
    /// (a writer slow, stopped or dead mid-update): the caller tries the
    /// lock, or reads the committed state ([`SetView::committed_read`]).
    #[inline]
    fn seq_read<T>(
        &self,
        tries: u32,
        check: Recheck,
        mut read: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        for _ in 0..tries {
            // SYNC: Acquire pairs with the Release store that makes `seq`
            // even again at the end of a writing section (Guard::close_seq):
            // what that section wrote is visible to `read`.
            let s1 = self.hdr.seq.load(Ordering::Acquire);
            if SeqCount::from_raw(s1).is_writing() {
                sync::spin_hint();
                continue;
            }
            let v = read();
            if check.fence {
                // SYNC: orders `read`'s loads before the re-check of `seq`;
                // pairs with the writer's Release fence after it makes
                // `seq` odd (Guard::begin_write): a load that saw a write of
                // that section is followed by a re-check that sees the odd
                // `seq` (or later).
                sync::fence(Ordering::Acquire);
            }
            let s1 = if check.seq {
                s1
            } else {
                self.hdr.seq.load(Ordering::Relaxed)
            };
            if let Some(v) = v {
                if self.hdr.seq.load(Ordering::Relaxed) == s1 {
                    return Some(v);
                }
            }
            if check.pause {
                sync::spin_hint();
            }
        }
        None
    }

    /// Reads one word consistently with multi-word updates: retried while a
    /// lock holder is in the middle of writing several words. `None` after
    /// [`SEQ_TRIES`] (a holder slow, stopped or dead mid-update).
    #[inline]
    fn read_word(&self, n: usize) -> Option<u64> {
        self.seq_read(SEQ_TRIES, Recheck::FULL, || {
            // SYNC: Acquire pairs with the Release stores of the word by a
            // lock holder (SetView::put_value, Guard::unmark) and with the
            // fast path's AcqRel CAS (SetView::fast_op).
            Some(self.sems[n].word.load(Ordering::Acquire))
        })
    }

    /// GETVAL / GETPID without the lock. `None` if a dead process's undo may
    /// be pending on the semaphore (UNDO_HELD), or a writer is in the way:
    /// the caller takes the lock if it is free (and sweeps), else reads the
    /// committed state (`Namespace::read_set`). Inlined into GETVAL's short
    /// path (`Namespace::getval_fast`), in another codegen unit.
    #[inline]
    pub fn read_sem(&self, n: usize) -> Option<(i32, i32)> {
        let w = SemWord::from_raw(self.read_word(n)?);
        if w.undo_held() && !w.global() {
            return None;
        }
        if w.global() && self.sems[n].nundo.load(Ordering::Relaxed) != 0 {
            return None;
        }
        Some((w.value() as i32, w.pid()))
    }

    /// A consistent snapshot of every value, lock-free: two identical
    /// collections of the (versioned) words with no writing section in
    /// between. `None` after repeated interference, or when some semaphore
    /// may have undo pending.
    pub fn snapshot(&self, out: &mut [u16]) -> Option<()> {
        let mut first: Vec<u64> = vec![0; self.sems.len()];
        let check = Recheck {
            seq: !cfg!(shmsem_mutant = "snapshot_no_seq_recheck"),
            pause: false,
            ..Recheck::FULL
        };
        self.seq_read(SNAPSHOT_TRIES, check, || {
            for (f, e) in first.iter_mut().zip(self.sems) {
                // SYNC: Acquire as in SetView::read_word.
                *f = e.word.load(Ordering::Acquire);
            }
            if !cfg!(shmsem_mutant = "snapshot_single_read") {
                for (f, e) in first.iter().zip(self.sems) {
                    // SYNC: Acquire as in SetView::read_word.
                    if e.word.load(Ordering::Acquire) != *f {
                        return None;
                    }
                }
            }
            Some(())
        })?;
        if first.iter().any(|&w| SemWord::from_raw(w).undo_held())
            || (first.iter().any(|&w| SemWord::from_raw(w).global())
                && self
                    .sems
                    .iter()
                    .any(|e| e.nundo.load(Ordering::Relaxed) != 0))
        {
            return None;
        }
        for (o, w) in out.iter_mut().zip(&first) {
            *o = SemWord::from_raw(*w).value();
        }
        Some(())
    }

    /// Reads header fields consistently (IPC_STAT): `f` is retried until no
    /// writing section overlapped it. `None` after [`SEQ_TRIES`]: read
    /// under the lock if it is free, else the committed state.
    pub fn read_consistent<T>(&self, f: impl Fn(&SetView<'a>) -> T) -> Option<T> {
        let check = Recheck {
            fence: !cfg!(shmsem_mutant = "stat_no_fence"),
            ..Recheck::FULL
        };
        self.seq_read(SEQ_TRIES, check, || Some(f(self)))
    }
}

/// Attempts of a committed-state read ([`SetView::committed_read`]) before
/// it gives up for a round (the caller tries the lock, then reads again).
const COMMITTED_TRIES: u32 = 64;

/// The set's state as a reader that does not wait for the lock takes it:
/// the words, overlaid with the committed intent record while one is
/// being applied (see [`SetView::committed_read`]).
pub struct Committed<'v, 'a> {
    v: &'v SetView<'a>,
    rec: Option<Rec<'a>>,
}

/// A committed record that takes effect (validated as `SetView::redo`
/// validates it: a record it would refuse changes nothing).
#[derive(Clone, Copy)]
struct Rec<'a> {
    kind: u32,
    entries: &'a [AtomicU64],
    pid: i32,
    proc_slot: u32,
    /// An APPLY record that completes a queued operation: its slot and the
    /// status the completion store expects (the record takes effect only
    /// once that store has won, `SetView::complete`).
    q: Option<(&'a QueueSlot, u32)>,
}

impl<'a> Rec<'a> {
    /// Each entry: (semaphore, value, adjustment).
    fn each(&self) -> impl Iterator<Item = (u16, u16, Option<i16>)> + 'a {
        self.entries
            .iter()
            .map(|w| unpack_intent(w.load(Ordering::Relaxed)))
    }

    /// Whether the record's completion store has won (or it has none): a
    /// record whose completion is still undecided has written nothing yet
    /// (the completion comes first), and one whose sleeper withdrew never
    /// writes anything.
    fn decided(&self) -> bool {
        match self.q {
            None => true,
            Some((q, from)) => {
                let cur = q.status.load(Ordering::Relaxed);
                cur != from && cur != SlotStatus::from_raw(from).withdrawn().raw()
            }
        }
    }
}

impl<'v, 'a> Committed<'v, 'a> {
    /// Semaphore `n`'s value and sempid.
    pub fn sem(&self, n: usize) -> (u16, i32) {
        if let Some(r) = &self.rec {
            if matches!(
                r.kind,
                INTENT_APPLY | INTENT_SETVAL | INTENT_SETALL | INTENT_REAP
            ) {
                if let Some((_, val, _)) = r.each().find(|&(m, _, _)| m as usize == n) {
                    return (val, r.pid);
                }
            }
        }
        // SYNC: Acquire as in SetView::read_word.
        let w = SemWord::from_raw(self.v.sems[n].word.load(Ordering::Acquire));
        (w.value(), w.pid())
    }

    /// Whether the set is removed (or being removed).
    pub fn removed(&self) -> bool {
        self.rec.is_some_and(|r| r.kind == INTENT_RMID)
            || self.v.hdr.removed.load(Ordering::Relaxed) != 0
    }

    /// Owner uid and gid, and mode.
    pub fn owner_mode(&self) -> (u32, u32, u32) {
        let (h, ih) = (self.v.hdr, self.v.intent);
        if self.rec.is_some_and(|r| r.kind == INTENT_SETPERM) {
            return (
                ih.uid.load(Ordering::Relaxed),
                ih.gid.load(Ordering::Relaxed),
                ih.mode.load(Ordering::Relaxed) & 0o777,
            );
        }
        (
            h.uid.load(Ordering::Relaxed),
            h.gid.load(Ordering::Relaxed),
            h.mode.load(Ordering::Relaxed),
        )
    }

    /// The last change time.
    pub fn ctime(&self) -> i64 {
        match self.rec {
            Some(r) if matches!(r.kind, INTENT_SETVAL | INTENT_SETALL | INTENT_SETPERM) => {
                self.v.intent.time.load(Ordering::Relaxed)
            }
            _ => self.v.hdr.ctime.load(Ordering::Relaxed),
        }
    }

    /// The last operation time (IPC_STAT's): the record being applied
    /// sets it to the time it is applied, which is now at the earliest.
    pub fn otime(&self) -> i64 {
        let t = self.v.otime();
        let sets = self.rec.is_some_and(|r| match r.kind {
            INTENT_APPLY => {
                (self.v.intent.otime_sem.load(Ordering::Relaxed) as usize) < self.v.nsems()
            }
            INTENT_REAP => self
                .v
                .proc(r.proc_slot)
                .is_some_and(|p| p.undo_record.load(Ordering::Relaxed) != 0),
            _ => false,
        });
        if sets {
            t.max(sync::realtime_secs())
        } else {
            t
        }
    }

    /// Process `p`'s adjustment for semaphore `n` (0 for a process the
    /// record reaps, or whose adjustments it clears).
    fn adj(&self, p: u32, n: usize) -> i32 {
        if let Some(r) = &self.rec {
            match r.kind {
                INTENT_SETALL => return 0,
                INTENT_REAP if r.proc_slot == p => return 0,
                INTENT_SETVAL if r.each().any(|(m, _, _)| m as usize == n) => return 0,
                INTENT_APPLY if r.proc_slot == p => {
                    if let Some((_, _, Some(a))) = r.each().find(|&(m, _, _)| m as usize == n) {
                        return a as i32;
                    }
                }
                _ => {}
            }
        }
        self.v.undo_cell(p, n).load(Ordering::Relaxed) as i32
    }

    /// Semaphore `n`'s value and sempid once the undo of the dead
    /// processes `dead` (process-table entries, ascending) is applied, as a
    /// sweep would apply it: in table order, each clamped to [0, SEMVMX],
    /// sempid the dead process's.
    pub fn sem_after_undo(&self, n: usize, dead: &[u32]) -> (i32, i32) {
        let (val, mut pid) = self.sem(n);
        let mut val = val as i32;
        for &p in dead {
            let a = self.adj(p, n);
            if a != 0 {
                val = (val + a).clamp(0, SEMVMX);
                pid = self.v.procs[p as usize].pid.load(Ordering::Relaxed);
            }
        }
        (val, pid)
    }
}

impl<'a> SetView<'a> {
    /// The committed record, if one is being applied (`serial` odd) and
    /// takes effect.
    fn committed_record(&self, serial: u32) -> Option<Rec<'a>> {
        if !SeqCount::from_raw(serial).is_writing() {
            return None;
        }
        let ih = self.intent;
        let kind = ih.kind.load(Ordering::Relaxed);
        let count = ih.count.load(Ordering::Relaxed) as usize;
        let entries = self.intent_entries.get(..count)?;
        let mut adjs = false;
        for w in entries {
            let (n, val, adj) = unpack_intent(w.load(Ordering::Relaxed));
            if n as usize >= self.nsems() || val as i32 > SEMVMX {
                return None;
            }
            adjs |= adj.is_some();
        }
        let proc_slot = ih.proc_slot.load(Ordering::Relaxed);
        let q = match kind {
            INTENT_APPLY => {
                if adjs && proc_slot >= self.proc_slots() {
                    return None;
                }
                self.queue
                    .get(ih.q_slot.load(Ordering::Relaxed) as usize)
                    .map(|q| (q, ih.q_from.load(Ordering::Relaxed)))
            }
            INTENT_REAP if proc_slot >= self.proc_slots() => return None,
            INTENT_SETVAL | INTENT_SETALL | INTENT_REAP | INTENT_RMID | INTENT_SETPERM => None,
            _ => return None,
        };
        Some(Rec {
            kind,
            entries,
            pid: ih.pid.load(Ordering::Relaxed),
            proc_slot,
            q,
        })
    }

    /// Reads the set's state without the lock and without waiting for its
    /// holder, however long it holds it (stopped, or dead before anyone
    /// noticed): `read` gets the words, overlaid with the committed intent
    /// record while one is being applied, and its result counts only if
    /// nothing moved meanwhile. `None` after [`COMMITTED_TRIES`] attempts
    /// (a holder that is running and writing: the caller tries the lock).
    ///
    /// Why it is one state: a lock holder changes values, adjustments,
    /// owner and mode only by applying a committed record of absolute new
    /// values (`Guard::commit`), and makes `serial` odd before it applies
    /// one and even after. With `serial` even, the words hold every record
    /// applied so far and none of the next, which is not applied before
    /// `serial` changes. With it odd, the words hold the record in part and
    /// the record holds every word it changes: words overlaid with the
    /// record are its whole result. A record that completes a queued
    /// operation writes nothing before its completion store wins, and
    /// nothing if the sleeper withdrew: it counts only once that store is
    /// seen to have won, and a change of that decision during the read
    /// fails it too. Words that no lock holder owns change only by
    /// fast-path CASes, each linearizable alone (readers of several words
    /// collect them twice). A record whose commit comes before our read
    /// but whose `serial` is still even has written nothing yet: its
    /// effect comes after our read, at the latest when a recoverer redoes
    /// it.
    pub fn committed_read<T>(
        &self,
        mut read: impl FnMut(&Committed<'_, 'a>) -> Option<T>,
    ) -> Option<T> {
        let ser = &self.intent.serial;
        for _ in 0..COMMITTED_TRIES {
            // SYNC: Acquire pairs with the Release stores of `serial`
            // (SetView::begin_applying: the record is visible;
            // SetView::end_applying: its application is).
            let s1 = ser.load(Ordering::Acquire);
            let rec = self.committed_record(s1);
            let decided = rec.map(|r| r.decided());
            let c = Committed {
                v: self,
                rec: rec.filter(|_| {
                    decided == Some(true) && !cfg!(shmsem_mutant = "committed_no_overlay")
                }),
            };
            let v = read(&c);
            // SYNC: orders the reads above before the re-checks; pairs with
            // the writer's Release fences after it makes `serial` odd
            // (begin_applying) and before it writes the next record
            // (Guard::commit), and with the completion store's Release
            // (SetView::complete): a read that saw a write made after one
            // of them sees it below.
            sync::fence(Ordering::Acquire);
            if let Some(v) = v {
                if ser.load(Ordering::Relaxed) == s1 && rec.map(|r| r.decided()) == decided {
                    return Some(v);
                }
            }
            sync::spin_hint();
        }
        None
    }

    /// Every value, without the lock: two identical collections of the
    /// (versioned) words, overlaid with the committed record, with the
    /// undo of the dead processes `dead` applied. `Some(false)`: the set is
    /// removed.
    pub fn committed_values(&self, out: &mut [u16], dead: &[u32]) -> Option<bool> {
        let mut first: Vec<u64> = vec![0; self.sems.len()];
        self.committed_read(|c| {
            if c.removed() {
                return Some(false);
            }
            for (f, e) in first.iter_mut().zip(self.sems) {
                // SYNC: Acquire as in SetView::read_word.
                *f = e.word.load(Ordering::Acquire);
            }
            for (f, e) in first.iter().zip(self.sems) {
                // SYNC: Acquire as in SetView::read_word.
                if e.word.load(Ordering::Acquire) != *f {
                    return None;
                }
            }
            for (n, o) in out.iter_mut().enumerate() {
                *o = c.sem_after_undo(n, dead).0 as u16;
            }
            Some(true)
        })
    }

    /// Whether a process other than `me` that made a SEM_UNDO call on the
    /// set is dead and not yet swept: its sweep would set otime.
    pub fn dead_undo_record(&self, me: Option<u32>, host: &dyn Host) -> bool {
        (0..self.procs_in_use()).any(|p| {
            let pe = &self.procs[p as usize];
            // SYNC: Acquire as in SetView::dead_undo_holders.
            Some(p) != me
                && ProcState::from_raw(pe.state_gen.load(Ordering::Acquire)).is_active()
                && pe.undo_record.load(Ordering::Relaxed) != 0
                && host.is_dead(self, p)
        })
    }

    /// The process-table entries (ascending) of the processes, other than
    /// `me`, that hold an adjustment on one of `sems` (or on any, with
    /// `None`), or that the record being applied is about, and that `host`
    /// finds dead: those whose undo a sweep would apply before a read.
    pub fn dead_undo_holders(
        &self,
        me: Option<u32>,
        sems: Option<usize>,
        host: &dyn Host,
    ) -> Vec<u32> {
        let rec_slot = self.intent.proc_slot.load(Ordering::Relaxed);
        (0..self.procs_in_use())
            .filter(|&p| {
                if Some(p) == me {
                    return false;
                }
                let pe = &self.procs[p as usize];
                // SYNC: Acquire pairs with the Release store that makes an
                // entry ACTIVE (`activate` in liveness/membership.rs).
                if !ProcState::from_raw(pe.state_gen.load(Ordering::Acquire)).is_active() {
                    return false;
                }
                let holds = match sems {
                    Some(n) => self.undo_cell(p, n).load(Ordering::Relaxed) != 0,
                    None => {
                        (0..self.nsems()).any(|n| self.undo_cell(p, n).load(Ordering::Relaxed) != 0)
                    }
                };
                (holds || p == rec_slot) && host.is_dead(self, p)
            })
            .collect()
    }

    /// GETNCNT / GETZCNT without the lock: queued operations whose first
    /// blocking op is on `n`, but for those of processes `host` finds dead
    /// (a sweep would free them).
    pub fn committed_waiters(&self, n: usize, zero: bool, host: &dyn Host) -> Option<u32> {
        let want = Blocked::new(n as u32, zero).raw();
        let mut dead: Vec<(u32, bool)> = Vec::new();
        self.committed_read(|_| {
            let mut count = 0;
            for q in self.queue {
                if !SlotStatus::from_raw(q.status.load(Ordering::Relaxed)).is_queued()
                    || q.blocked.load(Ordering::Relaxed) != want
                {
                    continue;
                }
                let p = q.proc_slot.load(Ordering::Relaxed);
                let is_dead = match dead.iter().find(|(d, _)| *d == p) {
                    Some(&(_, x)) => x,
                    None => {
                        let x = host.is_dead(self, p);
                        dead.push((p, x));
                        x
                    }
                };
                if !is_dead {
                    count += 1;
                }
            }
            Some(count)
        })
    }
}
