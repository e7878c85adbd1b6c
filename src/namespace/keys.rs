//! Keys and ids: semget, creating and removing sets, and the registry that
//! holds them (one entry per index: its state and sequence number, the
//! key, and a copy of the set's ownership, mode and times), changed under
//! the registry's lock; and gc, which cleans the registry and the sets up
//! after crashes.
//!
//! The registry lock is taken only through the namespace's presence
//! descriptor, which is checked to be of the very file this process mapped
//! (see [`crate::liveness::Presence`]), and after it is taken the file must
//! still have its name (a link count above 0): a namespace removed by `shmsem ns rm`
//! (its registry unlinked under the lock) is EIDRM for every process that
//! still has it mapped, at its next call that needs the lock. Such a
//! process can therefore never create a set in a registry nobody else can
//! find; `Namespace::open` of the name afterwards gives a fresh namespace.

use crate::set::{Guard, SetView, Sweep};
use crate::shm::{self, Mapping};
use crate::sync::{self, AtomicU64, Ordering};
use crate::sysv::SetId;
use crate::{liveness, Error, Result};
use shm_layout::*;

use super::cache::{Found, SetHandle};
use super::perm::{creds, file_mode, Perm};
use super::{live_seq, reclaim, set_name, Namespace};

/// What [`Namespace::gc`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Live sets looked at.
    pub sets: usize,
    /// Registry entries of sets that were gone (a remover died half-way).
    pub stale_entries: usize,
    /// Segment files no registry entry named, unlinked.
    pub orphan_segments: usize,
    /// Dead processes reaped from sets' process tables.
    pub dead_processes: usize,
}

/// What the registry knows of a set, for a process that may not open its
/// segment (README difference 8): enough for semget, SEM_STAT_ANY and the
/// errors the kernel gives such a process.
pub(super) struct Meta {
    pub(super) id: i32,
    pub(super) key: i32,
    pub(super) nsems: u32,
    pub(super) seq: u32,
    pub(super) perm: Perm,
    pub(super) otime: i64,
    pub(super) ctime: i64,
}

/// Registry lock guard: releases the OFD lock, then the process mutex.
pub(super) struct RegLock<'a> {
    ns: &'a Namespace,
    _g: std::sync::MutexGuard<'a, ()>,
}

impl RegLock<'_> {
    /// Runs `f` with this process's descriptor of the registry, the one
    /// the lock is held through (see [`crate::liveness::Presence`]).
    pub(super) fn with_fd<T>(
        &self,
        f: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> Result<T>,
    ) -> Result<T> {
        self.ns.presence.checked(f)
    }
}

impl Drop for RegLock<'_> {
    fn drop(&mut self) {
        // Through the descriptor the lock was taken with (if the program
        // closed that one, the lock went with it).
        let _ = self.ns.presence.checked(|fd| {
            shm::ofd_unlock(fd, REGISTRY_LOCK_BYTE);
            Ok(())
        });
        // The registry's descriptor is held only while its lock is.
        self.ns.presence.release_registry();
    }
}

impl Namespace {
    /// Takes the registry's lock: this process's mutex, then the OFD lock
    /// on the registry's lock byte (which the kernel frees if we die),
    /// through this process's own descriptor of the registry (a forked
    /// child gets its own at once: OFD locks of one open file description
    /// do not exclude each other). `Removed` (EIDRM) if the namespace was
    /// removed: the registry this process mapped has lost its name (see
    /// the module's notes).
    pub(super) fn lock_registry(&self) -> Result<RegLock<'_>> {
        // SYNC: Relaxed: our own flag, set by this process's `mark_removed`.
        if self.removed.load(Ordering::Relaxed) {
            return Err(Error::Removed);
        }
        let g = self.reg_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Whether `checked` got as far as a descriptor of the mapped
        // registry: an error before that is its name gone (`Removed`) or
        // naming another file (`Corrupt`), both the namespace removed.
        let mut reached = false;
        let linked = self.presence.checked(|fd| {
            reached = true;
            shm::ofd_lock_wait(fd, REGISTRY_LOCK_BYTE)?;
            // Removed while we waited, or since we last held it: the
            // remover unlinks the name while it holds the lock, so a link
            // count read under the lock is the truth.
            match rustix::fs::fstat(fd) {
                Ok(st) if st.st_nlink > 0 => Ok(true),
                Ok(_) => {
                    shm::ofd_unlock(fd, REGISTRY_LOCK_BYTE);
                    Ok(false)
                }
                Err(e) => {
                    shm::ofd_unlock(fd, REGISTRY_LOCK_BYTE);
                    Err(e.into())
                }
            }
        });
        match linked {
            Ok(true) => Ok(RegLock { ns: self, _g: g }),
            Ok(false) => Err(self.removed_now()),
            Err(Error::Removed | Error::Corrupt) if !reached => Err(self.removed_now()),
            // EMFILE, ENFILE, ...: as themselves.
            Err(e) => Err(e),
        }
    }

    /// Records that the namespace was removed; the error to return.
    fn removed_now(&self) -> Error {
        self.mark_removed();
        Error::Removed
    }

    /// `semget(2)`.
    pub fn semget(&self, key: i32, nsems: i32, semflg: i32) -> Result<i32> {
        if nsems < 0 || nsems as u32 > self.limits.semmsl {
            return Err(Error::Invalid);
        }
        let l = self.lock_registry()?;
        self.clean_creating();
        // Unmap what other processes removed (a semget is how a process
        // that only creates and uses sets notices).
        self.notice_removed();
        if key != IPC_PRIVATE {
            let found = self.find_key(key).filter(|&idx| !self.free_if_zombie(idx));
            if let Some(idx) = found {
                if semflg & IPC_CREAT != 0 && semflg & IPC_EXCL != 0 {
                    return Err(Error::Exists);
                }
                let e = self.entries().get(idx as usize).ok_or(Error::Invalid)?;
                if nsems as u32 > e.nsems.load(Ordering::Relaxed) {
                    return Err(Error::Invalid);
                }
                let perm = match self.lookup_slow(reclaim::pin(), idx, None)? {
                    Found::Mapped(h) => self.perm(&h)?,
                    // Not ours to open: the registry's copy decides, as
                    // the kernel lets any class through with no flags.
                    Found::Unmappable => self.meta_locked(idx, None)?.perm,
                };
                if !perm.permits((semflg & 0o777) as u32) {
                    return Err(Error::PermissionDenied);
                }
                return Ok(self.meta_locked(idx, None)?.id);
            }
            if semflg & IPC_CREAT == 0 {
                return Err(Error::NotFound);
            }
        }
        self.create(&l, key, nsems as u32, (semflg & 0o777) as u32)
    }

    /// The index of the live set with key `key`.
    fn find_key(&self, key: i32) -> Option<u32> {
        self.entries()
            .iter()
            .position(|e| live_seq(e).is_some() && e.key.load(Ordering::Relaxed) == key)
            .map(|i| i as u32)
    }

    /// Frees entry `idx` if it is LIVE but its set is gone: removed by a
    /// remover that died before freeing the entry, or its segment missing.
    /// The caller holds the registry lock. Returns whether it was freed.
    fn free_if_zombie(&self, idx: u32) -> bool {
        // Invalid from a LIVE entry means exactly that (a corrupt segment
        // gives another error, an inaccessible one Unmappable: both are
        // left alone).
        if !matches!(
            self.lookup_slow(reclaim::pin(), idx, None),
            Err(Error::Invalid)
        ) {
            return false;
        }
        let Some(e) = self.entries().get(idx as usize) else {
            return false;
        };
        let Some(seq) = live_seq(e) else {
            return false;
        };
        self.free_entry(SetId::new(idx, seq).raw(), e.nsems.load(Ordering::Relaxed));
        let _ = shm::unlink(&set_name(&self.name, idx, seq));
        true
    }

    /// Entries left CREATING by a creator that died holding the registry
    /// lock (we hold it now, so nobody else is creating).
    fn clean_creating(&self) {
        for (i, e) in self.entries().iter().enumerate() {
            // SYNC: Acquire pairs with the Release store of CREATING in
            // `Namespace::create`.
            let ss = EntryState::from_raw(e.state_seq.load(Ordering::Acquire));
            if ss.is_creating() {
                let _ = shm::unlink(&set_name(&self.name, i as u32, ss.seq()));
                // SYNC: Release pairs with the Acquire loads of the entry's
                // state (`live_seq`, `Namespace::free_index`).
                e.state_seq.store(ss.freed().raw(), Ordering::Release);
            }
        }
    }

    /// Creates a set: an index, its segment, then its entry goes LIVE.
    fn create(&self, l: &RegLock<'_>, key: i32, nsems: u32, mode: u32) -> Result<i32> {
        if nsems == 0 {
            return Err(Error::Invalid);
        }
        let h = self.header();
        if h.used_sems.load(Ordering::Relaxed) as u64 + nsems as u64 > self.limits.semmns as u64 {
            return Err(Error::NoSpace);
        }
        if h.used_sets.load(Ordering::Relaxed) >= self.limits.semmni {
            return Err(Error::NoSpace);
        }
        let id = self.free_index(l)?;
        let e = self
            .entries()
            .get(id.index as usize)
            .ok_or(Error::Corrupt)?;
        // SYNC: Release pairs with the Acquire load in `clean_creating`.
        e.state_seq.store(
            EntryState::new(id.seq, ENTRY_CREATING).raw(),
            Ordering::Release,
        );
        let (uid, gid) = creds();
        let ctime = match self.create_segment(id, key, nsems, mode, (uid, gid)) {
            Ok(t) => t,
            Err(err) => {
                // SYNC: Release as in `clean_creating`.
                e.state_seq
                    .store(EntryState::new(id.seq, ENTRY_FREE).raw(), Ordering::Release);
                return Err(err);
            }
        };
        publish_entry(e, id.seq, key, nsems, (uid, gid, mode), ctime);
        h.next_idx.store(id.index + 1, Ordering::Relaxed);
        h.seq.store(id.seq, Ordering::Relaxed);
        h.used_sets.fetch_add(1, Ordering::Relaxed);
        h.used_sems.fetch_add(nsems, Ordering::Relaxed);
        Ok(id.raw())
    }

    /// The next free index and its sequence number, as the kernel's
    /// `ipc_idr_alloc`: cyclically from `next_idx` within the first
    /// `max(in use × 3/2, 64)` indices (at most SEMMNI), the sequence
    /// advancing when the allocation wraps (an index below `next_idx`).
    /// The caller holds the registry lock, `l`; the window's pages are
    /// reserved first (ENOSPC on a full /dev/shm).
    fn free_index(&self, l: &RegLock<'_>) -> Result<SetId> {
        let h = self.header();
        let n = self.limits.semmni;
        // SYNC: Acquire pairs with the Release stores that free an entry
        // (`free_entry`, `clean_creating`).
        let is_free =
            |e: &RegistryEntry| EntryState::from_raw(e.state_seq.load(Ordering::Acquire)).is_free();
        // Counted, not `used_sets` (a counter anyone may scribble on): a
        // window too small for the sets in it would be a false ENOSPC.
        let in_use = self.entries().iter().filter(|e| !is_free(e)).count() as u32;
        let window = (in_use.saturating_mul(3) / 2).max(IPC_MIN_CYCLE).min(n);
        self.reserve_entries(l, window)?;
        let entries = self.entries();
        let window = window.min(entries.len() as u32);
        let next = h.next_idx.load(Ordering::Relaxed) % n;
        let seq = h.seq.load(Ordering::Relaxed) % (IPC_SEQ_MAX + 1);
        for idx in (next..window).chain(0..next.min(window)) {
            if is_free(&entries[idx as usize]) {
                let seq = if idx < next {
                    (seq + 1) % (IPC_SEQ_MAX + 1)
                } else {
                    seq
                };
                return Ok(SetId::new(idx, seq));
            }
        }
        Err(Error::NoSpace)
    }

    /// Creates and initialises set `id`'s segment for owner `(uid, gid)`;
    /// returns its ctime.
    fn create_segment(
        &self,
        id: SetId,
        key: i32,
        nsems: u32,
        mode: u32,
        (uid, gid): (u32, u32),
    ) -> Result<i64> {
        let name = set_name(&self.name, id.index, id.seq);
        let geo = SetGeometry::new(nsems, self.limits.proc_slots, self.limits.queue_slots);
        let map = match Mapping::create_exclusive(&name, geo.size) {
            Err(Error::Exists) => {
                // A leftover of a crashed creator or remover: the registry
                // says the index is free, so nobody uses it.
                shm::unlink(&name)?;
                Mapping::create_exclusive(&name, geo.size)?
            }
            r => r?,
        };
        // SAFETY: the fresh mapping is zeroed, page-aligned and geo.size
        // bytes long; it starts with a SetHeader.
        let hdr: &SetHeader = unsafe { crate::mapped::at(map.base(), 0) };
        let ctime = sync::realtime_secs();
        SetView::init(hdr, &geo, key, id.raw(), uid, gid, mode, ctime);
        map.set_mode(&name, file_mode(mode))?;
        Ok(ctime)
    }

    /// IPC_RMID: waiters get EIDRM, the id becomes stale, the segment's name
    /// goes (mappings of it stay valid until unmapped).
    pub(super) fn remove(&self, h: &SetHandle) -> Result<()> {
        // The set's lock first, then the registry's (as IPC_SET): a remover
        // that waits for the set's holder (stopped, say) holds nothing that
        // semget and the other registry users need. Nobody waits for a set's
        // lock holding the registry's: semget's reads of a set never wait.
        let me = self.me(h)?;
        let host = self.host(h);
        let g = h.writer()?.lock(&me, &host);
        let _l = self.lock_registry()?;
        self.remove_locked(h, g)
    }

    /// [`Namespace::remove`], the caller holding the set's lock (`g`) and
    /// then the registry's.
    pub(super) fn remove_locked(&self, h: &SetHandle, mut g: Guard<'_, '_>) -> Result<()> {
        if h.removed() {
            return Err(Error::Invalid);
        }
        // The set dies first, in one committed step (its sleepers get
        // EIDRM; a woken sleeper that uses the old id gets EINVAL, as in
        // the kernel, because lookups check `removed`), and its section
        // ends; then, under the registry's lock still, its id and name go.
        // A remover that dies in between leaves a LIVE entry for a removed
        // set, which the next semget of its key (or gc) clears.
        g.remove()?;
        drop(g);
        self.free_entry(h.id(), h.reader().nsems() as u32);
        shm::unlink(&h.name)
    }

    /// Frees set `id`'s entry (if LIVE) and gives its count back.
    fn free_entry(&self, id: i32, nsems: u32) {
        let idx = SetId::from_raw(id).index;
        if let Some(e) = self.entries().get(idx as usize) {
            // SYNC: Acquire as in `live_seq`.
            let ss = EntryState::from_raw(e.state_seq.load(Ordering::Acquire));
            if ss.is_live() {
                // SYNC: Release pairs with the Acquire load in
                // `Namespace::free_index` of the next creator.
                e.state_seq.store(ss.freed().raw(), Ordering::Release);
                let h = self.header();
                h.used_sets.fetch_sub(1, Ordering::Relaxed);
                h.used_sems.fetch_sub(
                    nsems.min(h.used_sems.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// The registry entry of a mapped set.
    pub(super) fn entry_of(&self, h: &SetHandle) -> &RegistryEntry {
        // A mapped set's index was found reserved, and stays so.
        &self.slots()[h.idx as usize]
    }

    /// Copies the set's ctime to the registry (call under the set's lock).
    pub(super) fn mirror_ctime(&self, h: &SetHandle, v: &SetView<'_>) {
        let ctime = v.hdr.ctime.load(Ordering::Relaxed);
        crate::set::store_tagged_time(&self.entry_of(h).ctime_tagged, h.seq, ctime);
    }

    /// The registry's copy of set `idx` (whose sequence must be `seq` if
    /// given); the caller holds the registry lock. EINVAL as `find`.
    pub(super) fn meta_locked(&self, idx: u32, seq: Option<u32>) -> Result<Meta> {
        let e = self.entries().get(idx as usize).ok_or(Error::Invalid)?;
        let eseq = live_seq(e).ok_or(Error::Invalid)?;
        if seq.is_some_and(|s| s != eseq) {
            return Err(Error::Invalid);
        }
        let time = |w: &AtomicU64| {
            let w = TaggedTime::from_raw(w.load(Ordering::Relaxed));
            if w.has_tag(eseq) {
                w.secs()
            } else {
                0
            }
        };
        Ok(Meta {
            id: SetId::new(idx, eseq).raw(),
            key: e.key.load(Ordering::Relaxed),
            nsems: e.nsems.load(Ordering::Relaxed),
            seq: eseq,
            perm: Perm {
                uid: e.uid.load(Ordering::Relaxed),
                gid: e.gid.load(Ordering::Relaxed),
                cuid: e.cuid.load(Ordering::Relaxed),
                cgid: e.cgid.load(Ordering::Relaxed),
                mode: e.mode.load(Ordering::Relaxed),
            },
            otime: time(&e.otime_tagged),
            ctime: time(&e.ctime_tagged),
        })
    }

    /// Cleans the namespace up after crashes, printing nothing and
    /// removing no live set (a set lives until IPC_RMID, used or not):
    /// entries left by a creator or remover that died half-way are freed,
    /// segment files that no entry names (leftovers of such deaths) are
    /// unlinked, and every set is swept of its dead processes (undo
    /// applied, queue slots and process entries freed).
    pub fn gc(&self) -> Result<GcReport> {
        let mut r = GcReport::default();
        let live: Vec<u32> = {
            let _l = self.lock_registry()?;
            let (stale, orphans) = self.clean_up_locked();
            r.stale_entries = stale;
            r.orphan_segments = orphans;
            self.live_indices()
        };
        for idx in live {
            // A set this process cannot map is left to those who can.
            let Ok(Found::Mapped(h)) = self.lookup_slow(reclaim::pin(), idx, None) else {
                continue;
            };
            r.dead_processes += self.reap_dead(&h);
            r.sets += 1;
        }
        Ok(r)
    }

    /// Crash leftovers, the caller holding the registry lock: entries left
    /// CREATING, LIVE entries of sets that are gone, segment files no entry
    /// names. Returns (stale entries freed, orphan segments unlinked).
    pub(super) fn clean_up_locked(&self) -> (usize, usize) {
        self.clean_creating();
        let stale = self
            .live_indices()
            .into_iter()
            .filter(|&idx| self.free_if_zombie(idx))
            .count();
        (stale, self.unlink_orphans())
    }

    /// The indices of the LIVE entries.
    pub(super) fn live_indices(&self) -> Vec<u32> {
        self.entries()
            .iter()
            .enumerate()
            .filter(|(_, e)| live_seq(e).is_some())
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Unlinks this namespace's set segments that no LIVE entry names (the
    /// caller holds the registry lock); returns how many.
    fn unlink_orphans(&self) -> usize {
        let named: std::collections::HashSet<String> = self
            .entries()
            .iter()
            .enumerate()
            .filter_map(|(idx, e)| live_seq(e).map(|seq| set_name(&self.name, idx as u32, seq)))
            .collect();
        let prefix = format!("/shmsem.{}.", self.name);
        let mut n = 0;
        for name in shm::list(&prefix[1..]) {
            // Only this namespace's set files: NS.INDEX.SEQ, digits.
            let rest = &name[prefix.len()..];
            let ours = rest.split('.').count() == 2
                && rest
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if ours && !named.contains(&name) && shm::unlink(&name).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Sweeps set `h` of every dead process; returns how many it reaped.
    fn reap_dead(&self, h: &SetHandle) -> usize {
        let dead = |h: &SetHandle| -> usize {
            self.locked(h, |g, me, host| {
                g.report(me, host)
                    .processes
                    .iter()
                    .filter(|p| !p.alive)
                    .count()
            })
            .unwrap_or(0)
        };
        let before = dead(h);
        if before > 0
            && self
                .locked(h, |g, me, host| g.sweep_dead(me, host, Sweep::All))
                .is_ok()
        {
            return before.saturating_sub(dead(h));
        }
        0
    }
}

/// Fills LIVE-to-be entry `e` (sequence `seq`) for a new set and makes it
/// LIVE: key, size, creator, owner and mode, times.
fn publish_entry(
    e: &RegistryEntry,
    seq: u32,
    key: i32,
    nsems: u32,
    (uid, gid, mode): (u32, u32, u32),
    ctime: i64,
) {
    e.key.store(key, Ordering::Relaxed);
    e.nsems.store(nsems, Ordering::Relaxed);
    e.creator.store(liveness::pid(), Ordering::Relaxed);
    for (f, x) in [
        (&e.uid, uid),
        (&e.gid, gid),
        (&e.cuid, uid),
        (&e.cgid, gid),
        (&e.mode, mode),
    ] {
        f.store(x, Ordering::Relaxed);
    }
    e.otime_tagged
        .store(TaggedTime::never(seq).raw(), Ordering::Relaxed);
    e.ctime_tagged
        .store(TaggedTime::new(ctime, seq).raw(), Ordering::Relaxed);
    // SYNC: Release publishes key/nsems before the entry is LIVE (to the
    // Acquire load in `live_seq`).
    e.state_seq
        .store(EntryState::new(seq, ENTRY_LIVE).raw(), Ordering::Release);
}
