//! semctl, dispatched as the kernel's ksys_semctl dispatches it:
//! [`Namespace::semctl_info`] (IPC_INFO, SEM_INFO), [`Namespace::semctl_stat`]
//! (IPC_STAT, SEM_STAT, SEM_STAT_ANY), [`Namespace::semctl_main`] (GETALL,
//! GETVAL, GETPID, GETNCNT, GETZCNT, SETALL), [`Namespace::semctl_setval`]
//! and [`Namespace::semctl_down`] (IPC_SET, IPC_RMID); GETVAL first tries
//! [`Namespace::getval_fast`], the hot read.

use crate::set::{Guard, HeaderFields, Host, Me, Sweep};
use crate::sync::Ordering;
use crate::sysv::{is_known_cmd, IpcPerm, SemctlArg, SemidDs, Seminfo, SetId};
use crate::{Error, Result};
use shm_layout::*;

use super::cache::{Found, SetHandle};
use super::perm::{allows, file_mode, ALTER, READ};
use super::{reclaim, Namespace};

impl Namespace {
    /// `semctl(2)`. Returns what the kernel's call returns on success.
    pub fn semctl(&self, semid: i32, semnum: i32, cmd: i32, arg: SemctlArg<'_>) -> Result<i32> {
        if cmd == GETVAL {
            if let Some(val) = self.getval_fast(semid, semnum) {
                return Ok(val);
            }
        }
        self.semctl_dispatch(semid, semnum, cmd, arg)
    }

    /// Every semctl but the lock-free GETVAL, by command. Not inlined: the
    /// hot GETVAL in [`Namespace::semctl`] does not pay for its frame.
    #[inline(never)]
    fn semctl_dispatch(
        &self,
        semid: i32,
        semnum: i32,
        cmd: i32,
        arg: SemctlArg<'_>,
    ) -> Result<i32> {
        Namespace::check_semctl(semid, cmd)?;
        match cmd {
            IPC_INFO | SEM_INFO => self.semctl_info(cmd, arg),
            IPC_STAT | SEM_STAT | SEM_STAT_ANY => self.semctl_stat(semid, semnum, cmd, arg),
            GETALL | GETVAL | GETPID | GETNCNT | GETZCNT | SETALL => {
                self.semctl_main(semid, semnum, cmd, arg)
            }
            SETVAL => self.semctl_setval(semid, semnum, arg),
            IPC_SET | IPC_RMID => self.semctl_down(semid, semnum, cmd, arg),
            _ => Err(Error::Invalid),
        }
    }

    /// The checks semctl makes before anything else: EINVAL for a negative
    /// id or an unknown command (as glibc's wrapper and the kernel's
    /// semctl). For the preload library, which must make them before it
    /// copies IPC_SET's buffer in.
    #[doc(hidden)]
    pub fn check_semctl(semid: i32, cmd: i32) -> Result<()> {
        if semid < 0 || !is_known_cmd(cmd) {
            return Err(Error::Invalid);
        }
        Ok(())
    }

    /// GETVAL when every check passes and the value can be read lock-free:
    /// the hot read, without the dispatch. `None`: take the general path,
    /// which checks again and gives the kernel's error.
    #[inline]
    fn getval_fast(&self, semid: i32, semnum: i32) -> Option<i32> {
        let Found::Mapped(h) = self.find(reclaim::pin(), semid).ok()? else {
            return None;
        };
        let v = h.reader();
        if semnum < 0 || semnum as usize >= v.nsems() {
            return None;
        }
        if !allows(self.granted(&h).ok()?, READ) {
            return None;
        }
        v.read_sem(semnum as usize).map(|(val, _)| val)
    }

    /// semnum as an index into `h`'s semaphores (EINVAL out of range).
    fn semnum(&self, h: &SetHandle, semnum: i32) -> Result<usize> {
        if semnum < 0 || semnum as usize >= h.reader().nsems() {
            return Err(Error::Invalid);
        }
        Ok(semnum as usize)
    }

    /// IPC_INFO and SEM_INFO: the limits (and, for SEM_INFO, the usage);
    /// returns the highest index in use. The usage and the index come from
    /// a scan of the index claims.
    fn semctl_info(&self, cmd: i32, arg: SemctlArg<'_>) -> Result<i32> {
        let SemctlArg::Info(out) = arg else {
            return Err(Error::BadAddress);
        };
        let l = self.limits;
        let (sets, sems, max) = self.usage();
        let c = |x: u32| x.min(i32::MAX as u32) as i32;
        *out = Seminfo {
            semmap: c(l.semmns),
            semmni: c(l.semmni),
            semmns: c(l.semmns),
            semmnu: c(l.semmns),
            semmsl: c(l.semmsl),
            semopm: c(l.semopm),
            semume: c(l.semopm),
            semusz: if cmd == SEM_INFO { c(sets) } else { 20 },
            semvmx: SEMVMX,
            semaem: if cmd == SEM_INFO {
                c(sems.min(u32::MAX as u64) as u32)
            } else {
                SEMAEM
            },
        };
        Ok(max.unwrap_or(0) as i32)
    }

    /// IPC_STAT (by id; returns 0), SEM_STAT and SEM_STAT_ANY (by index;
    /// return the id). SEM_STAT_ANY needs no permission.
    fn semctl_stat(&self, semid: i32, semnum: i32, cmd: i32, arg: SemctlArg<'_>) -> Result<i32> {
        let h = if cmd == IPC_STAT {
            match self.find(reclaim::pin(), semid)? {
                Found::Mapped(h) => h,
                Found::Unmappable => return self.semctl_denied_id(semid, semnum, cmd, arg),
            }
        } else {
            let idx = SetId::from_raw(semid).index;
            match self.lookup_slow(reclaim::pin(), idx, None)? {
                Found::Mapped(h) => h,
                Found::Unmappable => return self.semctl_denied(idx, None, semnum, cmd, arg),
            }
        };
        if cmd != SEM_STAT_ANY {
            self.require(&h, READ)?;
        }
        let SemctlArg::StatOut(out) = arg else {
            return Err(Error::BadAddress);
        };
        *out = self.stat(&h)?;
        Ok(if cmd == IPC_STAT { 0 } else { h.id() })
    }

    /// A read that never waits for the set's lock holder: `locked` (which
    /// may sweep dead processes first) if the lock is free now, else
    /// `unlocked` (given our process-table entry, if we have one, and the
    /// liveness host), which reads the committed state
    /// ([`SetView::committed_read`]) and gives `None` only while a running
    /// holder keeps writing: then the lock is tried again. A process that
    /// cannot take part in the set (its mapping is read-only, or the
    /// process table is full) only reads without the lock: it gets no
    /// process-table entry and writes nothing.
    pub(super) fn read_set<T>(
        &self,
        h: &SetHandle,
        mut locked: impl FnMut(&mut Guard<'_, 'static>, &Me, &dyn Host) -> T,
        mut unlocked: impl FnMut(Option<u32>, &dyn Host) -> Option<T>,
    ) -> T {
        // `me` fails for a read-only mapping (no writer).
        let me = self.me(h).ok();
        let v = h.writer().ok();
        let host = self.host(h);
        loop {
            if let (Some(me), Some(v)) = (&me, v) {
                if let Some(mut g) = v.try_lock(me, &host) {
                    return locked(&mut g, me, &host);
                }
            }
            if let Some(r) = unlocked(me.map(|m| m.slot), &host) {
                return r;
            }
        }
    }

    /// IPC_STAT's data, after a sweep of dead processes (an exit with an
    /// undo record sets otime): under the lock if it is free, else from
    /// the committed state, the sweep's effect on otime included.
    fn stat(&self, h: &SetHandle) -> Result<SemidDs> {
        let v = h.reader();
        let read = |x: HeaderFields| SemidDs {
            perm: IpcPerm {
                key: x.key,
                uid: x.uid,
                gid: x.gid,
                cuid: x.cuid,
                cgid: x.cgid,
                mode: x.mode,
                seq: h.seq,
            },
            otime: x.otime,
            ctime: x.ctime,
            nsems: v.nsems() as u64,
        };
        self.read_set(
            h,
            |g, me, host| {
                g.sweep_dead(me, host, Sweep::Holding);
                Ok(read(HeaderFields::of(g.view())))
            },
            |me, host| {
                let swept = v.dead_undo_record(me, host);
                v.committed_read(|c| {
                    if c.removed() {
                        return Some(Err(Error::Invalid));
                    }
                    let (uid, gid, mode) = c.owner_mode();
                    let mut ds = read(v.header());
                    ds.perm.uid = uid;
                    ds.perm.gid = gid;
                    ds.perm.mode = mode;
                    ds.ctime = c.ctime();
                    ds.otime = c.otime();
                    if swept {
                        ds.otime = ds.otime.max(crate::sync::realtime_secs());
                    }
                    Some(Ok(ds))
                })
            },
        )
    }

    /// GETALL, GETVAL, GETPID, GETNCNT, GETZCNT and SETALL: the lookup,
    /// then read permission (write for SETALL), then the command.
    fn semctl_main(&self, semid: i32, semnum: i32, cmd: i32, arg: SemctlArg<'_>) -> Result<i32> {
        let h = match self.find(reclaim::pin(), semid)? {
            Found::Mapped(h) => h,
            Found::Unmappable => return self.semctl_denied_id(semid, semnum, cmd, arg),
        };
        self.require(&h, if cmd == SETALL { ALTER } else { READ })?;
        match cmd {
            GETALL => self.getall(&h, arg),
            SETALL => {
                let h = self.for_writing(h)?;
                self.setall(&h, arg)
            }
            _ => self.getone(&h, semnum, cmd),
        }
    }

    /// GETALL (after the permission check).
    fn getall(&self, h: &SetHandle, arg: SemctlArg<'_>) -> Result<i32> {
        let v = h.reader();
        let SemctlArg::GetAll(out) = arg else {
            return Err(Error::BadAddress);
        };
        if out.len() < v.nsems() {
            return Err(Error::BadAddress);
        }
        if v.snapshot(&mut out[..v.nsems()]).is_none() {
            self.getall_slow(h, &mut out[..v.nsems()])?;
        }
        Ok(0)
    }

    /// GETALL when the lock-free snapshot failed: a writer in the way, or a
    /// dead process's undo may be pending. Out of line: the snapshot is
    /// the hot read.
    #[cold]
    #[inline(never)]
    fn getall_slow(&self, h: &SetHandle, out: &mut [u16]) -> Result<()> {
        let v = h.reader();
        let n = out.len();
        // Sized from the mapping's validated nsems (at most SEMMSL), and
        // allocated fallibly all the same: ENOMEM, never an abort.
        let zeros = || -> Result<Vec<u16>> {
            let mut vals = Vec::new();
            vals.try_reserve_exact(n).map_err(|_| Error::NoMemory)?;
            vals.resize(n, 0);
            Ok(vals)
        };
        let scratch = std::cell::RefCell::new(zeros()?);
        let ok = self.read_set(
            h,
            |g, me, host| {
                g.sweep_dead(me, host, Sweep::Undo);
                g.read_all(&mut scratch.borrow_mut());
                Some(())
            },
            |me, host| {
                let dead = v.dead_undo_holders(me, None, host);
                let live = v.committed_values(&mut scratch.borrow_mut(), &dead)?;
                Some(live.then_some(()))
            },
        );
        ok.ok_or(Error::Invalid)?;
        out.copy_from_slice(&scratch.borrow());
        Ok(())
    }

    /// GETVAL, GETPID, GETNCNT and GETZCNT (after the permission check).
    #[inline(never)]
    fn getone(&self, h: &SetHandle, semnum: i32, cmd: i32) -> Result<i32> {
        let v = h.reader();
        let n = self.semnum(h, semnum)?;
        if cmd == GETVAL || cmd == GETPID {
            let (val, pid) = match v.read_sem(n) {
                Some(x) => x,
                // A writer in the way, or a dead process's undo may be
                // pending on the semaphore.
                None => self.read_set(
                    h,
                    |g, me, host| {
                        g.sweep_dead(me, host, Sweep::Undo);
                        Ok(g.read_one(n))
                    },
                    |me, host| {
                        let dead = v.dead_undo_holders(me, Some(n), host);
                        v.committed_read(|c| {
                            Some(if c.removed() {
                                Err(Error::Invalid)
                            } else {
                                Ok(c.sem_after_undo(n, &dead))
                            })
                        })
                    },
                )?,
            };
            return Ok(if cmd == GETVAL { val } else { pid });
        }
        let zero = cmd == GETZCNT;
        Ok(self.read_set(
            h,
            |g, me, host| {
                // A killed sleeper stops counting.
                g.sweep_dead(me, host, Sweep::Holding);
                g.count_waiters(n, zero)
            },
            // Without the lock, a killed sleeper is not counted.
            |_, host| v.committed_waiters(n, zero, host),
        ) as i32)
    }

    /// SETALL (after the permission check): EFAULT for too few values,
    /// ERANGE for one above SEMVMX.
    fn setall(&self, h: &SetHandle, arg: SemctlArg<'_>) -> Result<i32> {
        let v = h.reader();
        let SemctlArg::SetAll(vals) = arg else {
            return Err(Error::BadAddress);
        };
        if vals.len() < v.nsems() {
            return Err(Error::BadAddress);
        }
        let vals = &vals[..v.nsems()];
        if vals.iter().any(|&x| x as i32 > SEMVMX) {
            return Err(Error::OutOfRange);
        }
        self.locked(h, |g, me, _| {
            if g.view().hdr.removed.load(Ordering::Relaxed) != 0 {
                return Err(Error::Removed);
            }
            g.setall(vals, me.pid)?;
            Ok(0)
        })?
    }

    /// SETVAL: the value (ERANGE outside 0..=SEMVMX) before the lookup,
    /// then semnum, then write permission.
    fn semctl_setval(&self, semid: i32, semnum: i32, arg: SemctlArg<'_>) -> Result<i32> {
        let SemctlArg::Val(val) = arg else {
            return Err(Error::Invalid);
        };
        if !(0..=SEMVMX).contains(&val) {
            return Err(Error::OutOfRange);
        }
        let h = match self.find(reclaim::pin(), semid)? {
            Found::Mapped(h) => h,
            Found::Unmappable => return self.semctl_denied_id(semid, semnum, SETVAL, arg),
        };
        let n = self.semnum(&h, semnum)?;
        self.require(&h, ALTER)?;
        let h = self.for_writing(h)?;
        self.locked(&h, |g, me, _| {
            if g.view().hdr.removed.load(Ordering::Relaxed) != 0 {
                return Err(Error::Removed);
            }
            g.setval(n, val, me.pid)?;
            Ok(0)
        })?
    }

    /// IPC_SET and IPC_RMID (the kernel's semctl_down): only the owner or
    /// the creator (EPERM).
    fn semctl_down(&self, semid: i32, semnum: i32, cmd: i32, arg: SemctlArg<'_>) -> Result<i32> {
        // The kernel copies IPC_SET's buffer in before the lookup.
        if cmd == IPC_SET && !matches!(arg, SemctlArg::Set(_)) {
            return Err(Error::BadAddress);
        }
        let h = match self.find(reclaim::pin(), semid)? {
            Found::Mapped(h) => h,
            Found::Unmappable => return self.semctl_denied_id(semid, semnum, cmd, arg),
        };
        if !self.perm(&h)?.owner_or_creator() {
            return Err(Error::NotPermitted);
        }
        let h = self.for_writing(h)?;
        if cmd == IPC_RMID {
            self.remove(&h)?;
            // The remover unmaps it at once if no other thread uses it,
            // and with it what other processes removed.
            h.end();
            self.notice_removed();
            return Ok(0);
        }
        let SemctlArg::Set(ds) = arg else {
            return Err(Error::BadAddress);
        };
        self.ipc_set(&h, ds)
    }

    /// IPC_SET (after the owner check): the set's owner and mode, then
    /// the file's mode follows, and, when the caller is root (only root may
    /// chown), its owner: the set's claims first, then the file (a claim is
    /// valid only if its owner owns the file; in between, lookups find no
    /// set).
    fn ipc_set(&self, h: &SetHandle, ds: &SemidDs) -> Result<i32> {
        let (uid, gid, mode) = (ds.perm.uid, ds.perm.gid, ds.perm.mode & 0o777);
        // As ipc_update_perm: (uid_t)-1 and (gid_t)-1 are no ids.
        if uid == u32::MAX || gid == u32::MAX {
            return Err(Error::Invalid);
        }
        self.check_named()?;
        if super::euid() != 0 {
            // Only root may chown: the file stays its owner's, who must
            // stay the set's owner or creator (a lookup believes no header
            // that names neither). Giving the set to a third user from an
            // owner who is not its creator is refused (README
            // "Differences").
            let file_owner = crate::shm::Dir::open()?.lstat(&h.name)?.map(|st| st.st_uid);
            let cuid = h.writer()?.hdr.cuid.load(Ordering::Relaxed);
            if file_owner.is_some_and(|o| uid != o && cuid != o) {
                return Err(Error::NotPermitted);
            }
        }
        self.locked(h, |g, _, _| {
            if g.view().hdr.removed.load(Ordering::Relaxed) != 0 {
                return Err(Error::Invalid);
            }
            g.set_perm(uid, gid, mode)
        })??;
        // Let the OS follow (best effort: the file may be gone already).
        if super::euid() == 0 {
            self.chown_names(h, uid, gid);
        }
        let _ = h.map.set_mode(&h.name, file_mode(mode));
        Ok(0)
    }

    #[cold]
    fn semctl_denied_id(
        &self,
        semid: i32,
        semnum: i32,
        cmd: i32,
        arg: SemctlArg<'_>,
    ) -> Result<i32> {
        let SetId { index, seq } = SetId::from_raw(semid);
        self.semctl_denied(index, Some(seq), semnum, cmd, arg)
    }

    /// semctl on a set whose segment the OS will not open for us: what
    /// needs no access (SEM_STAT_ANY, EPERM of IPC_SET/IPC_RMID, EINVAL of
    /// SETVAL's semnum) comes from `lstat` of its names; the rest is EACCES.
    #[cold]
    fn semctl_denied(
        &self,
        idx: u32,
        seq: Option<u32>,
        semnum: i32,
        cmd: i32,
        arg: SemctlArg<'_>,
    ) -> Result<i32> {
        let m = self.meta(idx, seq)?;
        match cmd {
            SEM_STAT_ANY => {
                let SemctlArg::StatOut(out) = arg else {
                    return Err(Error::BadAddress);
                };
                *out = SemidDs {
                    perm: IpcPerm {
                        key: m.key,
                        uid: m.perm.uid,
                        gid: m.perm.gid,
                        cuid: m.perm.cuid,
                        cgid: m.perm.cgid,
                        mode: m.perm.mode,
                        seq: m.seq,
                    },
                    otime: m.otime,
                    ctime: m.ctime,
                    nsems: m.nsems as u64,
                };
                Ok(m.id)
            }
            IPC_SET | IPC_RMID if !m.perm.owner_or_creator() => Err(Error::NotPermitted),
            SETVAL if semnum < 0 || semnum as u32 >= m.nsems => Err(Error::Invalid),
            _ => Err(Error::PermissionDenied),
        }
    }
}
