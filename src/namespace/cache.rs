//! The per-process set cache: the sets mapped into this process, by index,
//! found by id on every call (one load and two compares when cached).

use crate::liveness::{Membership, OsHost};
use crate::set::{Host, Me, Reader, SetView};
use crate::shm::{Mapping, Opened};
use crate::sync::{AtomicU64, Ordering};
use crate::sysv::SetId;
use crate::{Error, Result};
use shm_layout::RegistryEntry;

use super::reclaim::{self, Held, Pin};
use super::{live_seq, set_name, Namespace};

/// A set mapped into this process.
pub(super) struct SetHandle {
    /// Index and sequence number, from the registry (never from the
    /// segment, which anyone with write access may scribble on).
    pub(super) idx: u32,
    pub(super) seq: u32,
    /// The segment's name.
    pub(super) name: String,
    pub(super) map: Mapping,
    /// The set. Private to this file: the rest of the namespace reaches it
    /// through [`SetHandle::reader`] (loads only) or [`SetHandle::writer`]
    /// (everything, only for a writable mapping), so that no write path can
    /// be taken on a read-only (PROT_READ) mapping.
    view: SetView<'static>,
    /// This process's entry in the set's process table.
    pub(super) member: Membership,
    /// This process's access bits to the set, cached with the set's
    /// `perm_seq` when they were read and the pid that read them (see
    /// [`Namespace::granted`]).
    pub(super) granted: AtomicU64,
}

impl SetHandle {
    /// The set's id.
    pub(super) fn id(&self) -> i32 {
        SetId::new(self.idx, self.seq).raw()
    }

    /// The set, read-only: all a process gets whose mapping is PROT_READ
    /// (its class is given `r--`), and what every reader uses.
    #[inline]
    pub(super) fn reader(&self) -> Reader<'_, 'static> {
        self.view.reader()
    }

    /// The set with every write path (the fast path, the lock, the process
    /// table, the queue): EACCES for a read-only mapping, where any store
    /// would fault. The only way to the view from outside this file.
    #[inline]
    pub(super) fn writer(&self) -> Result<&SetView<'static>> {
        if self.map.writable() {
            Ok(&self.view)
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// Whether the mapping is writable (see [`SetHandle::writer`]).
    #[inline]
    pub(super) fn writable(&self) -> bool {
        self.map.writable()
    }

    /// Whether the set is removed.
    #[inline]
    pub(super) fn removed(&self) -> bool {
        self.reader().removed()
    }
}

/// What a lookup found: a live set, mapped here, or one this process may
/// not map.
pub(super) enum Found<'a> {
    /// The set, mapped into this process, and the call's pin that keeps it
    /// mapped until this is dropped (see [`reclaim`](super::reclaim)).
    Mapped(Held<'a, SetHandle>),
    /// A live set whose segment the OS will not open for this process (the
    /// set's mode grants its class nothing; README difference 8): only the
    /// registry's copy can answer for it (see [`Namespace::meta_locked`]).
    Unmappable,
}

impl Namespace {
    /// The set `id` names: EINVAL for an unknown or stale id. `pin` is
    /// the call's ([`reclaim::pin`](super::reclaim::pin)).
    #[inline]
    pub(super) fn find<'a>(&'a self, pin: Pin<'a>, id: i32) -> Result<Found<'a>> {
        if id < 0 {
            return Err(Error::Invalid);
        }
        let SetId { index: idx, seq } = SetId::from_raw(id);
        let cell = self.cache.get(idx as usize).ok_or(Error::Invalid)?;
        // SYNC: protect's Acquire load pairs with the Release CAS that
        // installed it (`Domain::install`, from `Namespace::lookup_slow`).
        let p = pin.protect(cell);
        if !p.is_null() {
            // SAFETY: `pin` protects it (see `reclaim`).
            let h = unsafe { &*p };
            if h.seq == seq && !h.removed() {
                // SAFETY: as above.
                return Ok(Found::Mapped(unsafe { Held::new(pin, h) }));
            }
        }
        self.lookup_slow(pin, idx, Some(seq))
    }

    /// The live set at index `idx` (whose sequence must be `seq` if
    /// given), mapping it on first use or after the index was reused; a
    /// cached handle of a removed set leaves the cache on the way.
    #[cold]
    pub(super) fn lookup_slow<'a>(
        &'a self,
        pin: Pin<'a>,
        idx: u32,
        seq: Option<u32>,
    ) -> Result<Found<'a>> {
        let e = self.entries().get(idx as usize).ok_or(Error::Invalid)?;
        let cell = &self.cache[idx as usize];
        // SYNC: as in `Namespace::find`.
        let mut cur = pin.protect(cell);
        // SAFETY: as in find.
        if !cur.is_null() && unsafe { &*cur }.removed() {
            pin.release();
            self.forget_removed(idx);
            cur = pin.protect(cell);
        }
        let eseq = live_seq(e).ok_or(Error::Invalid)?;
        if seq.is_some_and(|s| s != eseq) {
            return Err(Error::Invalid);
        }
        if !cur.is_null() {
            // SAFETY: as in find.
            let h = unsafe { &*cur };
            if h.seq == eseq && !h.removed() {
                // SAFETY: as in find.
                return Ok(Found::Mapped(unsafe { Held::new(pin, h) }));
            }
        }
        // About to map one: first unmap what other processes removed.
        self.notice_removed();
        let h = match self.map_set(e, idx, eseq)? {
            Some(h) => Box::new(h),
            None => return Ok(Found::Unmappable),
        };
        match self.sets.install(&pin, cell, cur, h) {
            // SAFETY: just installed in the cell `pin` announces.
            Ok(h) => Ok(Found::Mapped(unsafe { Held::new(pin, h) })),
            // Another thread installed one first: use it.
            Err(h) => {
                drop(h);
                self.lookup_slow(pin, idx, seq)
            }
        }
    }

    /// `h` if its mapping is writable. Else the set mapped again, in `h`'s
    /// place in the cache, if the OS now lets this process write it (an
    /// IPC_SET gave its class write access after it mapped the set
    /// read-only); EACCES if the OS still lets it only read (a class that
    /// the set's mode and the file's mode see differently: README).
    /// For a call that must write and was allowed to.
    #[cold]
    pub(super) fn for_writing<'a>(&'a self, h: Held<'a, SetHandle>) -> Result<Held<'a, SetHandle>> {
        if h.writable() {
            return Ok(h);
        }
        let (idx, seq) = (h.idx, h.seq);
        drop(h);
        loop {
            let pin = reclaim::pin();
            let cell = &self.cache[idx as usize];
            // SYNC: as in `Namespace::find`.
            let cur = pin.protect(cell);
            if !cur.is_null() {
                // SAFETY: as in find.
                let c = unsafe { &*cur };
                if c.seq == seq && !c.removed() && c.writable() {
                    // SAFETY: as in find.
                    return Ok(unsafe { Held::new(pin, c) });
                }
            }
            let e = self.entries().get(idx as usize).ok_or(Error::Invalid)?;
            if live_seq(e) != Some(seq) {
                return Err(Error::Invalid);
            }
            let h = match self.map_set(e, idx, seq)? {
                Some(h) if h.writable() => Box::new(h),
                _ => return Err(Error::PermissionDenied),
            };
            match self.sets.install(&pin, cell, cur, h) {
                // SAFETY: just installed in the cell `pin` announces.
                Ok(h) => return Ok(unsafe { Held::new(pin, h) }),
                // Another thread installed one first: look again.
                Err(h) => drop(h),
            }
        }
    }

    /// Maps the segment of set `idx` in its `seq`-th use (registry entry
    /// `e`) and checks it. `None`: the OS will not open it for us.
    fn map_set(&self, e: &RegistryEntry, idx: u32, seq: u32) -> Result<Option<SetHandle>> {
        let name = set_name(&self.name, idx, seq);
        let map = match Mapping::open(&name)? {
            Opened::Mapped(map) => map,
            Opened::Missing => return Err(Error::Invalid),
            Opened::Denied => return Ok(None),
        };
        // SAFETY: the mapping is page-aligned, `len` bytes long, and lives
        // in the handle as long as the view; all access is atomic.
        let mut view: SetView<'static> = unsafe { SetView::from_raw(map.base(), map.len())? };
        // SAFETY: the registry mapping outlives every handle: Namespace's
        // Drop frees the handles before its fields (the mapping) drop.
        let mirror: &'static AtomicU64 = unsafe { &*(&e.otime_tagged as *const AtomicU64) };
        view.set_otime_mirror(mirror, seq);
        if SetId::from_raw(view.hdr.id.load(Ordering::Relaxed)).index != idx {
            return Err(Error::Corrupt);
        }
        // SYNC: as in `Namespace::find`.
        if view.hdr.removed.load(Ordering::Acquire) != 0 {
            return Err(Error::Invalid);
        }
        Ok(Some(SetHandle {
            idx,
            seq,
            name,
            map,
            view,
            member: Membership::new(),
            granted: AtomicU64::new(0),
        }))
    }

    /// This process's identity in the set, registering on first use (and
    /// again in a forked child).
    #[inline]
    pub(super) fn me(&self, h: &SetHandle) -> Result<Me> {
        h.member.me(h.writer()?, &self.presence, h.idx)
    }

    /// The host for this process's calls on `h`.
    #[inline]
    pub(super) fn host<'n>(&'n self, h: &SetHandle) -> OsHost<'n> {
        OsHost::new(&self.presence, h.idx)
    }

    /// Runs `f` with the set's global lock held.
    pub(super) fn locked<T>(
        &self,
        h: &SetHandle,
        f: impl FnOnce(&mut crate::set::Guard<'_, 'static>, &Me, &dyn Host) -> T,
    ) -> Result<T> {
        let me = self.me(h)?;
        let host = self.host(h);
        let mut g = h.writer()?.lock(&me, &host);
        let r = f(&mut g, &me, &host);
        drop(g);
        Ok(r)
    }
}
