//! The per-process set cache: the sets mapped into this process, by index,
//! found by id on every call (one load and two compares when cached); and
//! the claims (`i` and `k` names, see the namespace's DESIGN notes) a set
//! is found through when it is not.

use crate::liveness::{Membership, OsHost};
use crate::set::{Host, Me, Reader, SetView};
use crate::shm::{self, Access, Dir, Expect, Mapping, Open, Stat};
use crate::sync::{AtomicU64, Ordering};
use crate::sysv::SetId;
use crate::{Error, Result};
use shm_layout::SetGeometry;

use super::reclaim::{self, Held, Pin};
use super::{index_name, parse_set_name, Namespace};

/// What a claim name (`shmsem.NS.i.IDX` or `shmsem.NS.k.KEY`) says, read
/// with `lstat` and `readlinkat` only (never followed).
pub(super) enum Claim {
    /// No such name.
    Absent,
    /// A valid claim: a symbolic link naming a set file of this namespace
    /// (of the index, for an index claim) that is a regular file owned by
    /// the link's owner.
    Valid(Target),
    /// A link of `owner` naming a set file that is gone (a removal was
    /// cut short after the set's file, or root removed it).
    Dangling { owner: u32, link: Stat },
    /// Anything else (not a link, a target that is no set name of ours,
    /// not a regular file, another owner's file): nobody's claim. Only its
    /// owner (or root) can remove it; until then the index or key it holds
    /// is not to be had (a denial of service the name's owner can cause
    /// anyway).
    Bogus { owner: u32, link: Stat },
}

/// The set a valid claim names.
pub(super) struct Target {
    pub(super) idx: u32,
    pub(super) seq: u32,
    /// The set file's name.
    pub(super) name: String,
    /// The link's `lstat`.
    pub(super) link: Stat,
    /// The set file's `lstat`: owner (the creator), group, mode, size.
    pub(super) file: Stat,
}

impl Namespace {
    /// Reads the claim `link` (an index claim of `want_idx`, or a key
    /// claim if `None`).
    pub(super) fn read_claim(&self, dir: &Dir, link: &str, want_idx: Option<u32>) -> Result<Claim> {
        let Some(l) = dir.lstat(link)? else {
            return Ok(Claim::Absent);
        };
        let bogus = |l: Stat| Claim::Bogus {
            owner: l.st_uid,
            link: l,
        };
        if !shm::is_symlink(&l) {
            return Ok(bogus(l));
        }
        let target = match dir.readlink(link) {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(Claim::Absent),
            Err(Error::Corrupt) => return Ok(bogus(l)),
            Err(e) => return Err(e),
        };
        // The link read is the one stat'ed (not replaced in between).
        match dir.lstat(link)? {
            Some(again) if again.st_ino == l.st_ino && again.st_dev == l.st_dev => {}
            _ => return Ok(Claim::Absent),
        }
        let Some((idx, seq)) = parse_set_name(&self.name, &target) else {
            return Ok(bogus(l));
        };
        // Judged against SEMMNI_MAX only (`parse_set_name`), never against
        // this namespace's SEMMNI: the limits file's owner may rewrite it,
        // and what it says must not make anyone's claim look bogus (README
        // difference 16).
        if want_idx.is_some_and(|w| w != idx) {
            return Ok(bogus(l));
        }
        let Some(f) = dir.lstat(&target)? else {
            return Ok(Claim::Dangling {
                owner: l.st_uid,
                link: l,
            });
        };
        if !shm::is_regular(&f) || f.st_uid != l.st_uid {
            return Ok(bogus(l));
        }
        Ok(Claim::Valid(Target {
            idx,
            seq,
            name: target,
            link: l,
            file: f,
        }))
    }

    /// The nsems a set file of `size` bytes has in this namespace (its
    /// tables are the namespace's sizes), if any nsems up to SEMMSL gives
    /// exactly that size.
    pub(super) fn nsems_for_size(&self, size: i64) -> Option<u32> {
        let size = u64::try_from(size).ok()?;
        SetGeometry::nsems_for_size(
            size,
            self.limits.proc_slots,
            self.limits.queue_slots,
            self.limits.semmsl,
        )
    }
}

/// A set mapped into this process.
pub(super) struct SetHandle {
    /// Index and sequence number, from the index claim (never from the
    /// segment, which anyone with write access may scribble on).
    pub(super) idx: u32,
    pub(super) seq: u32,
    /// The set file's name.
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
    /// file metadata can answer for it (see `Namespace::meta_of`).
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
        let cell = self.cache.get(idx as usize).ok_or(Error::Invalid)?;
        // SYNC: as in `Namespace::find`.
        let mut cur = pin.protect(cell);
        // SAFETY: as in find.
        if !cur.is_null() && unsafe { &*cur }.removed() {
            pin.release();
            self.forget_removed(idx);
            cur = pin.protect(cell);
        }
        let dir = Dir::open()?;
        let Claim::Valid(t) = self.read_claim(&dir, &index_name(&self.name, idx), Some(idx))?
        else {
            return Err(Error::Invalid);
        };
        if seq.is_some_and(|s| s != t.seq) {
            return Err(Error::Invalid);
        }
        if !cur.is_null() {
            // SAFETY: as in find.
            let h = unsafe { &*cur };
            if h.seq == t.seq && !h.removed() {
                // SAFETY: as in find.
                return Ok(Found::Mapped(unsafe { Held::new(pin, h) }));
            }
        }
        // About to map one: first unmap what other processes removed.
        self.notice_removed();
        let h = match self.map_set(&dir, &t)? {
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
            let dir = Dir::open()?;
            let Claim::Valid(t) = self.read_claim(&dir, &index_name(&self.name, idx), Some(idx))?
            else {
                return Err(Error::Invalid);
            };
            if t.seq != seq {
                return Err(Error::Invalid);
            }
            let h = match self.map_set(&dir, &t)? {
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

    /// Maps the set a valid index claim names and checks it: opened
    /// through the one open ([`Dir::open_file`]: a regular file of the
    /// claim's owner whose size some nsems up to SEMMSL gives), then the
    /// header must say the id the claim gives and an owner or creator that
    /// is the file's owner, and not be removed. It is mapped read-write if
    /// the OS lets this process write it, else read-only (a class the mode
    /// gives `r--`: see [`SetHandle::writer`]). `None`: the OS will not
    /// open it for us at all. A set not yet published (its creator still at it) is
    /// `Invalid`, as a set that is not there yet, and so is one whose file
    /// is in transition (being made or being removed: [`in_transition`]).
    fn map_set(&self, dir: &Dir, t: &Target) -> Result<Option<SetHandle>> {
        if in_transition(&t.file) {
            return Err(Error::Invalid);
        }
        let size = u64::try_from(t.file.st_size).map_err(|_| Error::Corrupt)?;
        if self.nsems_for_size(t.file.st_size).is_none() {
            return Err(Error::Corrupt);
        }
        let expect = Expect {
            owner: Some(t.file.st_uid),
            min_size: size,
            max_size: size,
        };
        let (c, writable) = match dir.open_file(&t.name, Access::ReadWrite, None, &expect)? {
            Open::File(c) => (c, true),
            Open::Missing => return Err(Error::Invalid),
            Open::Denied => match dir.open_file(&t.name, Access::Read, None, &expect)? {
                Open::File(c) => (c, false),
                Open::Missing => return Err(Error::Invalid),
                Open::Denied => return Ok(None),
            },
        };
        let map = Mapping::map_fd(&c.fd, size, writable)?;
        drop(c);
        // SAFETY: the mapping is page-aligned, `len` bytes long, and lives
        // in the handle as long as the view; all access is atomic.
        let view: SetView<'static> = match unsafe { SetView::from_raw(map.base(), map.len()) } {
            Ok(v) => v,
            // Not yet published: its creator is still at it.
            Err(Error::Corrupt) if view_unpublished(&map) => return Err(Error::Invalid),
            Err(e) => return Err(e),
        };
        let hdr = view.hdr;
        // The file's owner is the set's owner or its creator: a header
        // that names neither (another user's file claiming to be a
        // victim's set) is not believed.
        let owner = t.file.st_uid;
        if hdr.id.load(Ordering::Relaxed) != SetId::new(t.idx, t.seq).raw()
            || (hdr.cuid.load(Ordering::Relaxed) != owner
                && hdr.uid.load(Ordering::Relaxed) != owner)
            || view.nsems() > self.limits.semmsl as usize
        {
            return Err(Error::Corrupt);
        }
        // SYNC: as in `Namespace::find`.
        if hdr.removed.load(Ordering::Acquire) != 0 {
            return Err(Error::Invalid);
        }
        Ok(Some(SetHandle {
            idx: t.idx,
            seq: t.seq,
            name: t.name.clone(),
            map,
            view,
            member: Membership::new(),
            granted: AtomicU64::new(0),
        }))
    }

    /// A handle on the set in transition claim `t` names, for the process
    /// finishing its removal (`Namespace::finish`, holding its creation
    /// lock): `fd` is the file, opened read-write; checked as
    /// [`Namespace::map_set`] checks it, but neither its mode nor its
    /// removal mark bars it. `None` if it is no published set of that id
    /// (nobody can have mapped it).
    pub(super) fn handle_to_finish(
        &self,
        t: &Target,
        fd: &std::os::fd::OwnedFd,
    ) -> Result<Option<SetHandle>> {
        let size = u64::try_from(t.file.st_size).map_err(|_| Error::Corrupt)?;
        let map = Mapping::map_fd(fd, size, true)?;
        if map.file_id() != shm::file_id_of(&t.file) {
            return Ok(None);
        }
        // SAFETY: as in `map_set`.
        let view: SetView<'static> = match unsafe { SetView::from_raw(map.base(), map.len()) } {
            Ok(v) => v,
            Err(_) => return Ok(None),
        };
        let hdr = view.hdr;
        let owner = t.file.st_uid;
        if hdr.id.load(Ordering::Relaxed) != SetId::new(t.idx, t.seq).raw()
            || (hdr.cuid.load(Ordering::Relaxed) != owner
                && hdr.uid.load(Ordering::Relaxed) != owner)
            || view.nsems() > self.limits.semmsl as usize
        {
            return Ok(None);
        }
        Ok(Some(SetHandle {
            idx: t.idx,
            seq: t.seq,
            name: t.name.clone(),
            map,
            view,
            member: Membership::new(),
            granted: AtomicU64::new(0),
        }))
    }

    /// The key set `h` was made with, as its header says (`IPC_PRIVATE`
    /// for none).
    pub(super) fn key_of(h: &SetHandle) -> i32 {
        h.view.hdr.key.load(Ordering::Relaxed)
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

/// The permission bits a set file has while it is made (until its claims
/// stand) and once its removal is under way: write-only for its owner,
/// nothing for anyone else. A published set's file always gives its owner
/// read and write ([`super::perm::file_mode`]), and only the file's owner
/// (or root) can chmod it, so nothing another user writes can make a live
/// set look like this.
pub(super) const TRANSITION_MODE: u32 = 0o200;

/// Whether a set file is in transition: being made, or being removed (or
/// left so by a process that died).
pub(super) fn in_transition(st: &Stat) -> bool {
    st.st_mode & 0o777 == TRANSITION_MODE
}

/// Whether a mapped set file's header is not yet published (version 0):
/// its creator has not finished initialising it.
fn view_unpublished(map: &Mapping) -> bool {
    if map.len() < core::mem::size_of::<shm_layout::SetHeader>() {
        return false;
    }
    // SAFETY: the mapping holds at least a header, page-aligned, accessed
    // through atomics only.
    let hdr: &shm_layout::SetHeader = unsafe { crate::mapped::at(map.base(), 0) };
    // SYNC: Relaxed: only says "not yet"; the view built later reads the
    // version with Acquire (`SetView::from_raw`).
    hdr.version.load(Ordering::Relaxed) == 0
}
