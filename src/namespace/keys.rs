//! Keys and ids: semget, creating and removing sets, what a process the
//! set's mode shuts out is told, and gc, which finishes what processes that
//! died left half done. The names and the rules they follow are the
//! namespace's DESIGN notes (`super`); here is how each call walks them.
//!
//! Nothing here takes a lock that another process could hold for ever:
//! creation races are decided by symlink(2), a set's creation lock is only
//! ever tried (never waited for), and a set's own lock is taken only by
//! IPC_RMID, as any call on the set takes it.
//!
//! Every unlink is of a name this process checked just before (`lstat`,
//! same inode) and only ever succeeds for a name this process's uid owns,
//! or for root (/dev/shm is sticky): another user's names are at most
//! nobody's claims, never removed because of what they say. Two processes
//! of the same uid finishing the same half-done removal may race on a name
//! between the check and the unlink; that is the uid's own processes, not
//! another user.

use std::os::fd::OwnedFd;

use crate::set::{SetView, Sweep};
use crate::shm::{self, Access, Dir, Expect, Mapping, Open};
use crate::sync::{self, Ordering};
use crate::sysv::SetId;
use crate::{Error, Result};
use shm_layout::*;

use super::cache::{in_transition, Claim, Found, SetHandle, Target, TRANSITION_MODE};
use super::perm::{creds, file_mode, Perm};
use super::{
    euid, index_name, key_name, parse_index_name, parse_key_name, parse_set_name, reclaim,
    set_name, Namespace,
};

/// What [`Namespace::gc`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Live sets looked at.
    pub sets: usize,
    /// Sets left half made or half removed by a process that died, whose
    /// removal was finished (their names unlinked), and claims naming sets
    /// that are gone.
    pub stale_entries: usize,
    /// Set files that no index claim named, unlinked.
    pub orphan_segments: usize,
    /// Dead processes reaped from sets' process tables.
    pub dead_processes: usize,
}

/// What `lstat` and `readlinkat` tell of a set, for a process that may not
/// open it (README difference 8): enough for semget, SEM_STAT_ANY and the
/// errors the kernel gives such a process. Nothing of it comes from a copy
/// anyone could forge.
pub(super) struct Meta {
    pub(super) id: i32,
    pub(super) key: i32,
    pub(super) nsems: u32,
    pub(super) seq: u32,
    pub(super) perm: Perm,
    pub(super) otime: i64,
    pub(super) ctime: i64,
}

/// What the key claim of a key says.
enum KeyState {
    /// Nobody's: the key may be created.
    Free,
    /// A valid claim: the set it names.
    Set(Box<Target>),
    /// A name this process may not remove holds it (another user's garbage
    /// or dangling link, or a set removed by a process that died, not ours
    /// to finish): the key cannot be had now.
    Taken,
}

/// What one attempt to make a set at an index did.
enum Made {
    /// The set, with this id.
    Id(i32),
    /// The index (or its set file's name) was taken: try the next.
    Busy,
    /// Another process claimed the key first: look it up again.
    KeyTaken,
}

/// May this process remove names of `owner` (its own, or root)?
fn may_clean(owner: u32) -> bool {
    let me = euid();
    me == 0 || me == owner
}

impl Namespace {
    /// `semget(2)`.
    pub fn semget(&self, key: i32, nsems: i32, semflg: i32) -> Result<i32> {
        if nsems < 0 || nsems as u32 > self.limits.semmsl {
            return Err(Error::Invalid);
        }
        self.check_named()?;
        // Unmap what other processes removed (a semget is how a process
        // that only creates and uses sets notices).
        self.notice_removed();
        let mode = (semflg & 0o777) as u32;
        let dir = Dir::open()?;
        if key == IPC_PRIVATE {
            return match self.create(&dir, key, nsems as u32, mode)? {
                Some(id) => Ok(id),
                None => Err(Error::Corrupt),
            };
        }
        // Each round either answers, or removed a name that was in the way
        // (a half-removed set, a dangling claim), or found the key's set in
        // transition (being made or removed by another process: looked at
        // again 1 ms later, for 2 s at most); a creator that loses the key
        // to another looks again. Bounded: never waits long for anyone.
        let until = sync::monotonic_ns() + 2_000_000_000;
        for _round in 0..4096 {
            match self.resolve_key(&dir, key)? {
                KeyState::Set(t) => {
                    match self.semget_existing(&dir, &t, key, nsems as u32, semflg)? {
                        Some(r) => return r,
                        None if in_transition(&t.file) && sync::monotonic_ns() < until => {
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                        None => {}
                    }
                }
                KeyState::Free => {
                    if semflg & IPC_CREAT == 0 {
                        return Err(Error::NotFound);
                    }
                    if let Some(id) = self.create(&dir, key, nsems as u32, mode)? {
                        return Ok(id);
                    }
                }
                // Another user holds the key's name with something that is
                // no set: there is no set of that key to find (ENOENT), and
                // none may be made (EACCES, as the kernel answers for a key
                // held by a set whose mode grants us nothing; README
                // difference 16).
                KeyState::Taken => {
                    if semflg & IPC_CREAT == 0 {
                        return Err(Error::NotFound);
                    }
                    return Err(Error::PermissionDenied);
                }
            }
        }
        Err(Error::WouldBlock)
    }

    /// semget of key `key` whose claim names set `t`: its id, or the
    /// kernel's error; `None` if the set turned out to be gone (a removal
    /// finished on the way) or in transition (being made or removed by
    /// another process): look the key up again.
    fn semget_existing(
        &self,
        dir: &Dir,
        t: &Target,
        key: i32,
        nsems: u32,
        semflg: i32,
    ) -> Result<Option<Result<i32>>> {
        let (set_nsems, perm) = match self.lookup_slow(reclaim::pin(), t.idx, Some(t.seq)) {
            Ok(Found::Mapped(h)) => {
                if Namespace::key_of(&h) != key {
                    // The owner's own claim names a set of another key.
                    return Err(Error::Corrupt);
                }
                (h.reader().nsems() as u32, self.perm(&h)?)
            }
            // Not ours to open: `lstat` decides, as the kernel lets any
            // class through with no flags.
            Ok(Found::Unmappable) => {
                let m = self.meta_of(dir, t)?;
                (m.nsems, m.perm)
            }
            Err(Error::Invalid) => {
                // Removed (its remover died before its names went), or
                // being made or removed, or its index claim is not this
                // one: finish it if it is ours and nobody is at work on it.
                if self.finish_removed(dir, t)? || in_transition(&t.file) {
                    return Ok(None);
                }
                return Ok(Some(if semflg & IPC_CREAT == 0 {
                    Err(Error::NotFound)
                } else {
                    Err(Error::NoSpace)
                }));
            }
            Err(e) => return Err(e),
        };
        if semflg & IPC_CREAT != 0 && semflg & IPC_EXCL != 0 {
            return Ok(Some(Err(Error::Exists)));
        }
        if nsems > set_nsems {
            return Ok(Some(Err(Error::Invalid)));
        }
        if !perm.permits((semflg & 0o777) as u32) {
            return Ok(Some(Err(Error::PermissionDenied)));
        }
        Ok(Some(Ok(SetId::new(t.idx, t.seq).raw())))
    }

    /// The key claim of `key`: a dangling or bogus one that is ours (or
    /// any, for root) is removed on the way.
    fn resolve_key(&self, dir: &Dir, key: i32) -> Result<KeyState> {
        let name = key_name(&self.name, key);
        for _ in 0..4 {
            match self.read_claim(dir, &name, None)? {
                Claim::Absent => return Ok(KeyState::Free),
                Claim::Valid(t) => return Ok(KeyState::Set(Box::new(t))),
                Claim::Dangling { owner, link } => {
                    if !may_clean(owner) {
                        return Ok(KeyState::Taken);
                    }
                    dir.unlink_if_same(&name, &link)?;
                }
                // Only its owner's (not even root's: root's IPC_SET makes
                // a claim bogus for a moment while it gives the names away).
                Claim::Bogus { owner, link } => {
                    if owner != euid() {
                        return Ok(KeyState::Taken);
                    }
                    dir.unlink_if_same(&name, &link)?;
                }
            }
        }
        Ok(KeyState::Taken)
    }

    /// Finishes the set claim `t` names if it was left half made or half
    /// removed and this process may ([`Namespace::finish`]), or unlinks the
    /// claim if its index claim does not name the set (a key claim left
    /// behind). Returns whether its names went.
    fn finish_removed(&self, dir: &Dir, t: &Target) -> Result<bool> {
        if !may_clean(t.link.st_uid) {
            return Ok(false);
        }
        let indexed = matches!(
            self.read_claim(dir, &index_name(&self.name, t.idx), Some(t.idx))?,
            Claim::Valid(ref i) if i.seq == t.seq
        );
        if indexed {
            return self.finish(dir, t);
        }
        self.unlink_claims(dir, t, None, false)?;
        Ok(true)
    }

    /// Finishes the set claim `t` names if a process that died left it half
    /// made or half removed, and this process may (it is of its file's
    /// owner's uid, or root). Only what the file's owner alone can have
    /// done counts, never what a writer of the set may have scribbled in
    /// it (a removal mark: README difference 8): its file is in
    /// transition (write-only for its owner: a creator not yet done, or a
    /// remover under way, which puts the file in transition before it
    /// commits the removal) and its creation lock is free (no creator or
    /// remover at work). The lock is held while the set is finished: its
    /// removal committed if it was not yet (a remover that died in
    /// between: processes that have the set mapped may still use it), then
    /// its key, index and file unlinked. Returns whether it did.
    fn finish(&self, dir: &Dir, t: &Target) -> Result<bool> {
        if !may_clean(t.file.st_uid) || !in_transition(&t.file) {
            return Ok(false);
        }
        let Some(lock) = self.take_creation_lock(dir, &t.name, &t.file)? else {
            return Ok(false);
        };
        // Still that file, still in transition, now that nobody else is at
        // work on it.
        match dir.lstat(&t.name)? {
            Some(st) if shm::file_id_of(&st) == shm::file_id_of(&t.file) && in_transition(&st) => {}
            _ => return Ok(false),
        }
        self.commit_left_removal(dir, t, &lock)?;
        self.unlink_claims(dir, t, None, true)?;
        drop(lock);
        Ok(true)
    }

    /// The set file `name` (`was`, of its owner), opened write-only with
    /// its creation lock taken; `None` if the lock is held (a creator or
    /// remover at work) or the name is no longer that file.
    fn take_creation_lock(
        &self,
        dir: &Dir,
        name: &str,
        was: &shm::Stat,
    ) -> Result<Option<OwnedFd>> {
        let expect = Expect {
            owner: Some(was.st_uid),
            ..Expect::ANY
        };
        let c = match dir.open_file(name, Access::WriteOnly, None, &expect) {
            Ok(Open::File(c)) => c,
            Ok(_) | Err(Error::Corrupt) => return Ok(None),
            Err(e) => return Err(e),
        };
        if shm::file_id_of(&c.st) != shm::file_id_of(was) {
            return Ok(None);
        }
        Ok(shm::ofd_try_lock(&c.fd, CREATION_LOCK_BYTE)?.then_some(c.fd))
    }

    /// Commits the removal of the set in transition `t` names, if it is a
    /// published set of that id not yet removed, as IPC_RMID does (under
    /// the set's lock: its sleepers get EIDRM). `lock` holds the file's
    /// creation lock. A file that is no published set of the id (its
    /// creator died before it published the header) needs nothing: nobody
    /// can have mapped it.
    fn commit_left_removal(&self, dir: &Dir, t: &Target, lock: &OwnedFd) -> Result<()> {
        // This process may have the set mapped from before.
        if let Ok(Found::Mapped(h)) = self.lookup_slow(reclaim::pin(), t.idx, Some(t.seq)) {
            return self.commit_removal_of(&h);
        }
        let size = t.file.st_size as u64;
        if self.nsems_for_size(t.file.st_size).is_none() {
            return Ok(());
        }
        let expect = Expect {
            owner: Some(t.file.st_uid),
            min_size: size,
            max_size: size,
        };
        let open = || match dir.open_file(&t.name, Access::ReadWrite, None, &expect) {
            Ok(Open::File(c)) if shm::file_id_of(&c.st) == shm::file_id_of(&t.file) => Ok(Some(c)),
            Ok(Open::Denied) => Err(Error::PermissionDenied),
            Ok(_) | Err(Error::Corrupt) => Ok(None),
            Err(e) => Err(e),
        };
        let c = match open() {
            Err(Error::PermissionDenied) if euid() != 0 => {
                // A mapping needs a readable descriptor, and the file is
                // write-only for its owner: it is given read for the open
                // only (to its owner only; a process of the owner's uid
                // that maps it meanwhile sees a set about to be removed, as
                // one just before an IPC_RMID).
                shm::fchmod(lock, 0o600)?;
                let c = open();
                shm::fchmod(lock, TRANSITION_MODE)?;
                c?
            }
            c => c?,
        };
        let Some(c) = c else {
            return Ok(());
        };
        match self.handle_to_finish(t, &c.fd)? {
            Some(h) => self.commit_removal_of(&h),
            None => Ok(()),
        }
    }

    /// Commits the removal of set `h` under its lock, unless it is removed
    /// already.
    fn commit_removal_of(&self, h: &SetHandle) -> Result<()> {
        if h.removed() {
            return Ok(());
        }
        let me = self.me(h)?;
        let host = self.host(h);
        let mut g = h.writer()?.lock(&me, &host);
        if h.removed() {
            return Ok(());
        }
        g.remove()
    }

    /// Whether set file `name` (of `owner`) has no creator at work: its
    /// creation lock can be taken (and is let go at once).
    fn creation_lock_free(&self, dir: &Dir, name: &str, owner: u32) -> Result<bool> {
        let expect = Expect {
            owner: Some(owner),
            ..Expect::ANY
        };
        match dir.open_file(name, Access::WriteOnly, None, &expect) {
            Ok(Open::File(c)) => shm::ofd_try_lock(&c.fd, CREATION_LOCK_BYTE),
            Ok(_) => Ok(false),
            Err(Error::Corrupt) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Unlinks the names of the set `t` names: its key claim (that of
    /// `key`, the key its header says, if it names the set; with `None`,
    /// whichever does), its index claim (if it names it), and with `file`
    /// its file, each only if it is still what was checked. (A header
    /// someone scribbled a wrong key on leaves the key claim dangling once
    /// the file is gone: the next semget of the key or gc removes it.)
    fn unlink_claims(&self, dir: &Dir, t: &Target, key: Option<i32>, file: bool) -> Result<()> {
        let key = self.key_claim_of(dir, t, key);
        if let Some((name, link)) = key {
            dir.unlink_if_same(&name, &link)?;
        }
        let iname = index_name(&self.name, t.idx);
        if let Claim::Valid(i) = self.read_claim(dir, &iname, Some(t.idx))? {
            if i.seq == t.seq {
                dir.unlink_if_same(&iname, &i.link)?;
            }
        }
        if file {
            dir.unlink_if_same(&t.name, &t.file)?;
        }
        Ok(())
    }

    /// The key claim (name and `lstat`) that names the set file `t` names,
    /// if any: with `hint` (the key the set's header says), that key's
    /// claim only; else a scan of the key claims.
    fn key_claim_of(
        &self,
        dir: &Dir,
        t: &Target,
        hint: Option<i32>,
    ) -> Option<(String, shm::Stat)> {
        let names = match hint {
            Some(IPC_PRIVATE) => return None,
            Some(k) => vec![key_name(&self.name, k)],
            None => dir.list(&format!("shmsem.{}.k.", self.name)),
        };
        for name in names {
            if parse_key_name(&self.name, &name).is_none() {
                continue;
            }
            if let Ok(Claim::Valid(k)) = self.read_claim(dir, &name, None) {
                if k.name == t.name && k.file.st_ino == t.file.st_ino {
                    return Some((name, k.link));
                }
            }
        }
        None
    }

    /// What `lstat` says of the set claim `t` names (see [`Meta`]).
    fn meta_of(&self, dir: &Dir, t: &Target) -> Result<Meta> {
        let nsems = self.nsems_for_size(t.file.st_size).ok_or(Error::Corrupt)?;
        let key = self
            .key_claim_of(dir, t, None)
            .and_then(|(name, _)| parse_key_name(&self.name, &name))
            .unwrap_or(IPC_PRIVATE);
        let (uid, gid) = (t.file.st_uid, t.file.st_gid);
        Ok(Meta {
            id: SetId::new(t.idx, t.seq).raw(),
            key,
            nsems,
            seq: t.seq,
            perm: Perm {
                uid,
                gid,
                cuid: uid,
                cgid: gid,
                mode: t.file.st_mode & 0o777,
            },
            otime: 0,
            ctime: t.file.st_ctime,
        })
    }

    /// What `lstat` says of set `idx` (whose sequence must be `seq` if
    /// given), for a process that may not open it. EINVAL as `find`.
    pub(super) fn meta(&self, idx: u32, seq: Option<u32>) -> Result<Meta> {
        let dir = Dir::open()?;
        let Claim::Valid(t) = self.read_claim(&dir, &index_name(&self.name, idx), Some(idx))?
        else {
            return Err(Error::Invalid);
        };
        if seq.is_some_and(|s| s != t.seq) {
            return Err(Error::Invalid);
        }
        self.meta_of(&dir, &t)
    }

    /// The indices some name claims (valid or not), from a scan: every
    /// index up to SEMMNI_MAX, whatever this namespace's SEMMNI (which
    /// bounds only the indices new sets take), so that no set is taken for
    /// an orphan because of the limits.
    pub(super) fn claimed_indices(&self, dir: &Dir) -> Vec<u32> {
        let prefix = format!("shmsem.{}.i.", self.name);
        let mut v: Vec<u32> = dir
            .list(&prefix)
            .iter()
            .filter_map(|n| parse_index_name(&self.name, n))
            .collect();
        v.sort_unstable();
        v
    }

    /// The valid index claims: (the sets they name), from a scan.
    pub(super) fn valid_claims(&self, dir: &Dir) -> Vec<Target> {
        self.claimed_indices(dir)
            .into_iter()
            .filter_map(
                |idx| match self.read_claim(dir, &index_name(&self.name, idx), Some(idx)) {
                    Ok(Claim::Valid(t)) => Some(t),
                    _ => None,
                },
            )
            .collect()
    }

    /// (sets, semaphores) the valid index claims name, and the highest
    /// index among them: IPC_INFO and SEM_INFO, from a scan (the sizes of
    /// the files give their nsems).
    pub(super) fn usage(&self) -> (u32, u64, Option<u32>) {
        let Ok(dir) = Dir::open() else {
            return (0, 0, None);
        };
        let claims = self.valid_claims(&dir);
        let sems = claims
            .iter()
            .map(|t| self.nsems_for_size(t.file.st_size).unwrap_or(0) as u64)
            .sum();
        let max = claims.iter().map(|t| t.idx).max();
        (claims.len() as u32, sems, max)
    }

    /// Creates a set of key `key` (IPC_PRIVATE: none): an index, its file,
    /// its claims. `None` if another process claimed the key first.
    fn create(&self, dir: &Dir, key: i32, nsems: u32, mode: u32) -> Result<Option<i32>> {
        if nsems == 0 {
            return Err(Error::Invalid);
        }
        let l = self.limits;
        // SEMMNS can only be reached when SEMMNI sets of SEMMSL could pass
        // it (never with the default limits): then a scan counts.
        if l.semmni as u64 * l.semmsl as u64 > l.semmns as u64 {
            let (_, used, _) = self.usage();
            if used + nsems as u64 > l.semmns as u64 {
                return Err(Error::NoSpace);
            }
        }
        let n = l.semmni;
        let (next, seq0) = self.hints();
        let small = IPC_MIN_CYCLE.min(n);
        // The kernel's ipc_idr_alloc: cyclically from `next` within the
        // first max(in use × 3/2, 64) indices (at most SEMMNI), the
        // sequence advancing when the allocation wraps. The window needs a
        // scan, made only when an index at or past 64 is considered.
        let mut window: Option<u32> = None;
        for idx in (next..n).chain(0..next) {
            if idx >= small {
                let w = *window.get_or_insert_with(|| {
                    let in_use = self.claimed_indices(dir).len() as u32;
                    (in_use.saturating_mul(3) / 2).max(IPC_MIN_CYCLE).min(n)
                });
                if idx >= w {
                    continue;
                }
            }
            if dir.lstat(&index_name(&self.name, idx))?.is_some() {
                continue;
            }
            let seq = if idx < next {
                (seq0 + 1) % (IPC_SEQ_MAX + 1)
            } else {
                seq0
            };
            match self.create_at(dir, idx, seq, key, nsems, mode)? {
                Made::Id(id) => return Ok(Some(id)),
                Made::Busy => continue,
                Made::KeyTaken => return Ok(None),
            }
        }
        Err(Error::NoSpace)
    }

    /// Makes set (`idx`, `seq`): its file created exclusively, in
    /// transition ([`TRANSITION_MODE`]), and held by its creation lock
    /// while it is sized, initialised and published; then the index claim,
    /// then the key claim; then the file gets its mode (a set is live from
    /// then on) and the lock is let go.
    fn create_at(
        &self,
        dir: &Dir,
        idx: u32,
        seq: u32,
        key: i32,
        nsems: u32,
        mode: u32,
    ) -> Result<Made> {
        let name = set_name(&self.name, idx, seq);
        let (uid, gid) = creds();
        let expect = Expect {
            owner: Some(uid),
            min_size: 0,
            max_size: 0,
        };
        let c = match dir.open_file(&name, Access::ReadWrite, Some(TRANSITION_MODE), &expect) {
            Ok(Open::File(c)) => c,
            // Anyone's name, whatever it is (a leftover, a link, a FIFO):
            // never opened, never ours; the next index.
            Err(Error::Exists) => return Ok(Made::Busy),
            Ok(_) => return Err(Error::Corrupt),
            Err(e) => return Err(e),
        };
        // Between the create and the lock, a cleaner of our uid may have
        // taken the file for a dead creator's: then its lock is not to be
        // had, or the name is gone or another file's.
        if !shm::ofd_try_lock(&c.fd, CREATION_LOCK_BYTE)? {
            return Ok(Made::Busy);
        }
        match dir.lstat(&name)? {
            Some(st) if shm::file_id_of(&st) == shm::file_id_of(&c.st) => {}
            _ => return Ok(Made::Busy),
        }
        let unlink_file = || {
            let _ = dir.unlink_if_same(&name, &c.st);
        };
        let geo = SetGeometry::new(nsems, self.limits.proc_slots, self.limits.queue_slots);
        let made = (|| {
            shm::size_and_reserve(&c.fd, geo.size as u64)?;
            let map = Mapping::map_fd(&c.fd, geo.size as u64, true)?;
            // SAFETY: the fresh mapping is zeroed, page-aligned and
            // geo.size bytes long; it starts with a SetHeader.
            let hdr: &SetHeader = unsafe { crate::mapped::at(map.base(), 0) };
            let id = SetId::new(idx, seq).raw();
            SetView::init(hdr, &geo, key, id, uid, gid, mode, sync::realtime_secs());
            // The mode given at the create was masked by the umask.
            shm::fchmod(&c.fd, TRANSITION_MODE)?;
            Ok::<_, Error>((map, id))
        })();
        let (map, id) = match made {
            Ok(x) => x,
            Err(e) => {
                unlink_file();
                return Err(e);
            }
        };
        let iname = index_name(&self.name, idx);
        if !dir.symlink(&name, &iname)? {
            unlink_file();
            return Ok(Made::Busy);
        }
        if key != IPC_PRIVATE && !dir.symlink(&name, &key_name(&self.name, key))? {
            // Another process claimed the key first. The set was visible
            // by index for a moment: it dies as a removed one would.
            // SAFETY: as above.
            let hdr: &SetHeader = unsafe { crate::mapped::at(map.base(), 0) };
            // SYNC: Release pairs with the Acquire loads of `removed` by
            // lookups (`Namespace::find`, `map_set`).
            hdr.removed.store(1, Ordering::Release);
            if let Some(st) = dir.lstat(&iname)? {
                dir.unlink_if_same(&iname, &st)?;
            }
            unlink_file();
            return Ok(Made::KeyTaken);
        }
        if let Err(e) = shm::fchmod(&c.fd, file_mode(mode)) {
            // Never live: its claims and file go, as a failed creation's.
            let _ = dir.unlink(&key_name(&self.name, key));
            if let Some(st) = dir.lstat(&iname)? {
                dir.unlink_if_same(&iname, &st)?;
            }
            unlink_file();
            return Err(e);
        }
        shm::ofd_unlock(&c.fd, CREATION_LOCK_BYTE);
        self.set_hints(idx, seq);
        Ok(Made::Id(id))
    }

    /// IPC_RMID: waiters get EIDRM, the id becomes stale, the set's names
    /// go (mappings of it stay valid until unmapped).
    pub(super) fn remove(&self, h: &SetHandle) -> Result<()> {
        self.check_named()?;
        let me = self.me(h)?;
        let host = self.host(h);
        let g = h.writer()?.lock(&me, &host);
        self.remove_locked(h, g)
    }

    /// [`Namespace::remove`], the caller holding the set's lock (`g`).
    pub(super) fn remove_locked(
        &self,
        h: &SetHandle,
        mut g: crate::set::Guard<'_, '_>,
    ) -> Result<()> {
        if h.removed() {
            return Err(Error::Invalid);
        }
        // First the mark only the file's owner (or root) can make: its file
        // in transition, under its creation lock (so that no finisher takes
        // this remover at work for a dead one). A remover that dies from
        // here on leaves a set in transition with its creation lock free,
        // which the next semget of its key by the file owner's uid (or gc)
        // finishes: commits the removal if it was not yet, unlinks the
        // names. Then the set dies, in one committed step (its sleepers get
        // EIDRM; a woken sleeper that uses the old id gets EINVAL, as in
        // the kernel, because lookups check `removed`), and its section
        // ends; then its names go: key, index, file. A remover that is not
        // the file's owner cannot chmod it: the set dies, its names stay
        // (README difference 8).
        let dir = Dir::open()?;
        let file = match dir.lstat(&h.name)? {
            Some(st) if shm::file_id_of(&st) == h.map.file_id() => Some(st),
            _ => None,
        };
        let lock = match &file {
            // Not to be had: the remover goes on without it.
            Some(st) => self.take_creation_lock(&dir, &h.name, st).ok().flatten(),
            None => None,
        };
        let marked = file.is_some() && h.map.set_mode(&h.name, TRANSITION_MODE).is_ok();
        if let Err(e) = g.remove() {
            if let (true, Some(st)) = (marked, &file) {
                let _ = h.map.set_mode(&h.name, st.st_mode & 0o777);
            }
            return Err(e);
        }
        drop(g);
        if let Some(st) = file {
            let t = Target {
                idx: h.idx,
                seq: h.seq,
                name: h.name.clone(),
                link: st,
                file: st,
            };
            // Best effort: a name this process may not remove (the set's
            // owner not being its creator) stays.
            let _ = self.unlink_claims(&dir, &t, Some(Namespace::key_of(h)), true);
        }
        drop(lock);
        Ok(())
    }

    /// Gives set `h`'s names to `uid` (root's IPC_SET): its index and key
    /// claims, then its file, each only if it is still the set's.
    pub(super) fn chown_names(&self, h: &SetHandle, uid: u32, gid: u32) {
        let Ok(dir) = Dir::open() else {
            return;
        };
        let Ok(Some(file)) = dir.lstat(&h.name) else {
            return;
        };
        if shm::file_id_of(&file) != h.map.file_id() || file.st_uid == uid {
            let _ = h.map.set_owner(&h.name, uid, gid);
            return;
        }
        let t = Target {
            idx: h.idx,
            seq: h.seq,
            name: h.name.clone(),
            link: file,
            file,
        };
        let iname = index_name(&self.name, h.idx);
        if let Ok(Claim::Valid(i)) = self.read_claim(&dir, &iname, Some(h.idx)) {
            if i.seq == h.seq {
                let _ = dir.lchown_if_same(&iname, &i.link, uid, gid);
            }
        }
        if let Some((kname, link)) = self.key_claim_of(&dir, &t, Some(Namespace::key_of(h))) {
            let _ = dir.lchown_if_same(&kname, &link, uid, gid);
        }
        let _ = h.map.set_owner(&h.name, uid, gid);
    }

    /// Cleans the namespace up after crashes, printing nothing and
    /// removing no live set (a set lives until IPC_RMID, used or not):
    /// sets left half made or half removed by a process that died are
    /// finished, claims naming nothing are removed, set files nothing
    /// names are unlinked (each only if it is this process's uid's, or for
    /// root), and every set is swept of its dead processes (undo applied,
    /// queue slots and process entries freed).
    pub fn gc(&self) -> Result<GcReport> {
        self.check_named()?;
        let mut r = GcReport::default();
        let (stale, orphans) = self.clean_up()?;
        r.stale_entries = stale;
        r.orphan_segments = orphans;
        let dir = Dir::open()?;
        for t in self.valid_claims(&dir) {
            // A set this process cannot map is left to those who can.
            let Ok(Found::Mapped(h)) = self.lookup_slow(reclaim::pin(), t.idx, Some(t.seq)) else {
                continue;
            };
            r.dead_processes += self.reap_dead(&h);
            r.sets += 1;
        }
        Ok(r)
    }

    /// Crash leftovers this process may remove (its uid's, or any for
    /// root): sets left half made or half removed ([`Namespace::finish`]),
    /// claims naming nothing, set files nothing claims.
    /// Returns (sets finished and stale claims removed, files unlinked).
    pub(super) fn clean_up(&self) -> Result<(usize, usize)> {
        let dir = Dir::open()?;
        let mut stale = 0;
        // Index claims.
        for idx in self.claimed_indices(&dir) {
            let iname = index_name(&self.name, idx);
            match self.read_claim(&dir, &iname, Some(idx))? {
                Claim::Valid(t) if self.finish(&dir, &t)? => {
                    stale += 1;
                }
                Claim::Dangling { owner, link } if may_clean(owner) => {
                    dir.unlink_if_same(&iname, &link)?;
                    stale += 1;
                }
                _ => {}
            }
        }
        // Key claims whose set is gone or not claimed by its index.
        for name in dir.list(&format!("shmsem.{}.k.", self.name)) {
            if parse_key_name(&self.name, &name).is_none() {
                continue;
            }
            match self.read_claim(&dir, &name, None)? {
                Claim::Valid(t) if may_clean(t.link.st_uid) => {
                    let iname = index_name(&self.name, t.idx);
                    let indexed = matches!(
                        self.read_claim(&dir, &iname, Some(t.idx))?,
                        Claim::Valid(ref i) if i.seq == t.seq
                    );
                    if !indexed {
                        dir.unlink_if_same(&name, &t.link)?;
                        stale += 1;
                    }
                }
                Claim::Dangling { owner, link } if may_clean(owner) => {
                    dir.unlink_if_same(&name, &link)?;
                    stale += 1;
                }
                _ => {}
            }
        }
        Ok((stale, self.unlink_orphans(&dir)?))
    }

    /// Unlinks this namespace's set files that no valid index claim names,
    /// that this process may remove, and whose creation lock is free (no
    /// creator at work); returns how many.
    fn unlink_orphans(&self, dir: &Dir) -> Result<usize> {
        let named: std::collections::HashSet<String> =
            self.valid_claims(dir).into_iter().map(|t| t.name).collect();
        let prefix = format!("shmsem.{}.s.", self.name);
        let mut n = 0;
        for name in dir.list(&prefix) {
            if named.contains(&name) {
                continue;
            }
            let Some(st) = dir.lstat(&name)? else {
                continue;
            };
            if !may_clean(st.st_uid) {
                continue;
            }
            // A set file in transition may have a creator at work on it
            // (its creation lock held, not yet claimed); anything else of
            // ours under a set name that no claim names is a leftover (a
            // creator's files are in transition until claimed) or garbage.
            if parse_set_name(&self.name, &name).is_some()
                && shm::is_regular(&st)
                && in_transition(&st)
                && !self.creation_lock_free(dir, &name, st.st_uid)?
            {
                continue;
            }
            // Claimed meanwhile (a creator that finished just now): leave it.
            if self.valid_claims(dir).iter().any(|t| t.name == name) {
                continue;
            }
            dir.unlink_if_same(&name, &st)?;
            n += 1;
        }
        Ok(n)
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
