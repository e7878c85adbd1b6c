//! A set as a process that may only read it sees it: [`Reader`], the one
//! face of a [`SetView`] that a read-only mapping is handed out as.
//!
//! A class that the set's mode gives `r--` finds the segment's file mode
//! `r--` too (`namespace::perm::file_mode`): it opens it O_RDONLY and maps
//! it PROT_READ, and any store into that mapping would be a SIGSEGV. So
//! such a process never gets the [`SetView`] itself (whose methods include
//! every write: the fast path's CAS, the lock, the process table, the
//! queue, sweeps): the set cache gives a read-only handle out only as a
//! `Reader`, and a `Reader` has no way back to the view. Every method here
//! only loads from the mapping (the liveness host it is given asks the OS,
//! and loads too): that is the audit, and it is this file's rule.
//!
//! What a reader can do, it does without the lock and without a
//! process-table entry: the lock-free committed-state reads of
//! [`super::seqlock`] (GETVAL, GETPID, GETALL, GETNCNT, GETZCNT, IPC_STAT,
//! SEM_STAT), and wait-for-zero ([`Reader::wait_for_zero`]) as a timed
//! futex wait on the semaphore's own word (a FUTEX_WAIT only reads),
//! re-reading the committed value after each slice. Nothing wakes it (a
//! writer cannot know it waits: it is not queued), so it notices a zero at
//! the end of its current slice, at most [`READER_SLICE_MAX_NS`] late; it is
//! not counted in GETZCNT and not ordered with the queued waiters (README
//! differences).

use super::seqlock::Committed;
use super::sleep::deadline_after;
use super::{Host, SetView};
use crate::signal::HandlerMark;
use crate::sync::{self, Ordering, Wake};
use crate::sysv::{Sembuf, Timespec};
use crate::{Error, Result};
use shm_layout::IPC_NOWAIT;

/// A reader's first sleep in a wait for zero; each next one is twice as
/// long, up to [`READER_SLICE_MAX_NS`].
pub const READER_SLICE_MIN_NS: u64 = 50_000;
/// A reader's longest sleep between two looks at the values: how late it
/// notices a zero, at most, once it has waited a while.
pub const READER_SLICE_MAX_NS: u64 = 10_000_000;

/// A set's header fields that IPC_STAT and the permission check read.
#[derive(Clone, Copy, Debug)]
pub struct HeaderFields {
    /// The set's key.
    pub key: i32,
    /// Owner uid and gid, creator uid and gid, mode (9 bits).
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
    /// See `uid`.
    pub cuid: u32,
    /// See `uid`.
    pub cgid: u32,
    /// See `uid`.
    pub mode: u32,
    /// The last change time.
    pub ctime: i64,
    /// The last operation time (the latest over the semaphores).
    pub otime: i64,
}

impl HeaderFields {
    /// The fields as they are (consistent under the lock, or in a seqlock
    /// read). Loads only.
    pub fn of(v: &SetView<'_>) -> HeaderFields {
        let h = v.hdr;
        HeaderFields {
            key: h.key.load(Ordering::Relaxed),
            uid: h.uid.load(Ordering::Relaxed),
            gid: h.gid.load(Ordering::Relaxed),
            cuid: h.cuid.load(Ordering::Relaxed),
            cgid: h.cgid.load(Ordering::Relaxed),
            mode: h.mode.load(Ordering::Relaxed),
            ctime: h.ctime.load(Ordering::Relaxed),
            otime: v.otime(),
        }
    }
}

/// The read-only face of a set: loads only (see the module's text).
#[derive(Clone, Copy)]
pub struct Reader<'v, 'a> {
    v: &'v SetView<'a>,
}

impl<'a> SetView<'a> {
    /// The set's read-only face.
    #[inline]
    pub fn reader(&self) -> Reader<'_, 'a> {
        Reader { v: self }
    }
}

impl<'a> Reader<'_, 'a> {
    /// Number of semaphores.
    #[inline]
    pub fn nsems(&self) -> usize {
        self.v.nsems()
    }

    /// Whether the set is removed.
    #[inline]
    pub fn removed(&self) -> bool {
        // SYNC: Acquire pairs with the Release store of `removed` by
        // IPC_RMID (INTENT_RMID in `SetView::redo`).
        self.v.hdr.removed.load(Ordering::Acquire) != 0
    }

    /// The permission sequence (moves at each owner or mode change).
    #[inline]
    pub fn perm_seq(&self) -> u32 {
        // SYNC: Acquire pairs with the Release store that moves `perm_seq`
        // after an owner or mode change (INTENT_SETPERM in `SetView::redo`).
        self.v.hdr.perm_seq.load(Ordering::Acquire)
    }

    /// The id the segment claims (untrusted: checked against the name).
    pub fn id(&self) -> i32 {
        self.v.hdr.id.load(Ordering::Relaxed)
    }

    /// The header fields, read consistently without the lock; `None` when
    /// a writer stays in the way (then [`Reader::committed_read`]).
    pub fn read_header(&self) -> Option<HeaderFields> {
        self.v.read_consistent(HeaderFields::of)
    }

    /// The header fields as they are (consistent only if nothing writes).
    pub fn header(&self) -> HeaderFields {
        HeaderFields::of(self.v)
    }

    /// [`SetView::read_sem`].
    #[inline]
    pub fn read_sem(&self, n: usize) -> Option<(i32, i32)> {
        self.v.read_sem(n)
    }

    /// [`SetView::snapshot`].
    pub fn snapshot(&self, out: &mut [u16]) -> Option<()> {
        self.v.snapshot(out)
    }

    /// [`SetView::committed_read`] (a [`Committed`] only loads).
    pub fn committed_read<T>(
        &self,
        read: impl FnMut(&Committed<'_, 'a>) -> Option<T>,
    ) -> Option<T> {
        self.v.committed_read(read)
    }

    /// [`SetView::committed_values`].
    pub fn committed_values(&self, out: &mut [u16], dead: &[u32]) -> Option<bool> {
        self.v.committed_values(out, dead)
    }

    /// [`SetView::committed_waiters`].
    pub fn committed_waiters(&self, n: usize, zero: bool, host: &dyn Host) -> Option<u32> {
        self.v.committed_waiters(n, zero, host)
    }

    /// [`SetView::dead_undo_holders`].
    pub fn dead_undo_holders(
        &self,
        me: Option<u32>,
        sems: Option<usize>,
        host: &dyn Host,
    ) -> Vec<u32> {
        self.v.dead_undo_holders(me, sems, host)
    }

    /// [`SetView::dead_undo_record`].
    pub fn dead_undo_record(&self, me: Option<u32>, host: &dyn Host) -> bool {
        self.v.dead_undo_record(me, host)
    }

    /// The low half of semaphore `n`'s word (value, slow bits, version):
    /// what a reader's futex wait compares.
    fn word_low(&self, n: usize) -> u32 {
        // SYNC: Acquire as in SetView::read_word.
        self.v.sems[n].word.load(Ordering::Acquire) as u32
    }

    /// A semop whose every operation waits for zero, by a process that may
    /// only read the set (the caller checked sem_num and read permission):
    /// `Ok` once the committed values of every semaphore named are zero
    /// together (with the undo of dead processes applied, as GETVAL shows
    /// them); EAGAIN at once if the first operation that would block has
    /// IPC_NOWAIT, or once `timeout` has passed (`None`: never); EINTR
    /// when a signal handler runs on this thread meanwhile;
    /// EIDRM when the set is removed. Changes nothing: no sempid, no otime,
    /// no queue slot, no count (README differences).
    pub fn wait_for_zero(
        &self,
        sops: &[Sembuf],
        timeout: Option<&Timespec>,
        host: &dyn Host,
    ) -> Result<()> {
        let mark = HandlerMark::now();
        let deadline = deadline_after(timeout);
        let mut vals: Vec<u16> = Vec::new();
        vals.try_reserve_exact(self.nsems())
            .map_err(|_| Error::NoMemory)?;
        vals.resize(self.nsems(), 0);
        let mut before: Vec<u32> = Vec::new();
        before
            .try_reserve_exact(sops.len())
            .map_err(|_| Error::NoMemory)?;
        let mut slice = READER_SLICE_MIN_NS;
        let mut interrupted = false;
        loop {
            // The words before the values are read: a change after the
            // read makes the futex wait below return at once.
            before.clear();
            before.extend(sops.iter().map(|s| self.word_low(s.sem_num as usize)));
            if self.removed() {
                return Err(Error::Removed);
            }
            let dead = self.dead_undo_holders(None, None, host);
            // `None`: a running writer kept writing; wait a slice on the
            // first semaphore named.
            let blocking = match self.committed_values(&mut vals, &dead) {
                Some(false) => return Err(Error::Removed),
                Some(true) => match sops.iter().position(|s| vals[s.sem_num as usize] != 0) {
                    None => return Ok(()),
                    Some(i) if sops[i].sem_flg as i32 & IPC_NOWAIT != 0 => {
                        return Err(Error::WouldBlock)
                    }
                    Some(i) => i,
                },
                None => 0,
            };
            if interrupted || mark.ran_since() {
                return Err(Error::Interrupted);
            }
            let now = sync::monotonic_ns();
            if now >= deadline {
                return Err(Error::WouldBlock);
            }
            let n = sops[blocking].sem_num as usize;
            let until = deadline.min(now.saturating_add(slice));
            match sync::futex_wait_low(&self.v.sems[n].word, before[blocking], until) {
                Wake::Interrupted => interrupted = true,
                Wake::TimedOut => slice = (slice * 2).min(READER_SLICE_MAX_NS),
                Wake::Woken => {}
            }
        }
    }
}
