//! semop and semtimedop: the checks of the call, then the operation (fast
//! path, or the set's lock and perhaps a sleep), on a set found in the
//! cache; and the kernel's answers for a set this process may not map.

use crate::engine;
use crate::liveness::{self, OsHost};
use crate::set::Me;
use crate::sysv::{Sembuf, SetId, Timespec};
use crate::{Error, Result};

use super::cache::{Found, SetHandle};
use super::perm::{allows, ALTER, READ};
use super::{reclaim, Namespace};

/// What the operation ([`crate::set::op::semtimedop`]) needs of this
/// layer, for one call on `h`.
struct OpCaller<'n> {
    ns: &'n Namespace,
    h: &'n SetHandle,
}

impl<'n> crate::set::op::Caller for OpCaller<'n> {
    type Host = OsHost<'n>;
    #[inline]
    fn me(&self) -> Result<Me> {
        self.ns.me(self.h)
    }
    #[inline]
    fn host(&self) -> OsHost<'n> {
        self.ns.host(self.h)
    }
    #[inline]
    fn may(&self, alter: bool) -> Result<bool> {
        Ok(allows(
            self.ns.granted(self.h)?,
            if alter { 0o222 } else { 0o444 },
        ))
    }
    #[inline]
    fn pid(&self) -> i32 {
        liveness::pid()
    }
}

impl Namespace {
    /// `semop(2)`.
    pub fn semop(&self, semid: i32, sops: &[Sembuf]) -> Result<()> {
        self.semtimedop(semid, sops, None)
    }

    /// `semtimedop(2)`; `None` waits for ever.
    pub fn semtimedop(
        &self,
        semid: i32,
        sops: &[Sembuf],
        timeout: Option<&Timespec>,
    ) -> Result<()> {
        self.check_nsops(sops.len())?;
        if semid < 0 {
            return Err(Error::Invalid);
        }
        if let Some(t) = timeout {
            if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
                return Err(Error::Invalid);
            }
        }
        let mut h = match self.find(reclaim::pin(), semid)? {
            Found::Mapped(h) => h,
            Found::Unmappable => return self.semop_denied(semid, sops),
        };
        if !h.writable() {
            if !engine::alters(sops) || !allows(self.granted(&h)?, ALTER) {
                return self.semop_reader(&h, sops, timeout);
            }
            // The mode has given us write access since we mapped the set.
            h = self.for_writing(h)?;
        }
        crate::set::op::semtimedop(h.writer()?, sops, timeout, &OpCaller { ns: self, h: &h })
    }

    /// semtimedop on a set this process has mapped read-only (the OS gives
    /// its class `r--`): the kernel's order of checks, then, for a call
    /// that only waits for zero, the reader's wait
    /// ([`Reader::wait_for_zero`](crate::set::Reader::wait_for_zero));
    /// EACCES for an alter. Writes nothing to the set: a reader's SEM_UNDO
    /// makes no undo record, its completed wait sets neither sempid nor
    /// otime, and it is not queued (README differences).
    #[cold]
    fn semop_reader(
        &self,
        h: &SetHandle,
        sops: &[Sembuf],
        timeout: Option<&Timespec>,
    ) -> Result<()> {
        let v = h.reader();
        if sops.iter().any(|s| s.sem_num as usize >= v.nsems()) {
            return Err(Error::SemNumOutOfRange);
        }
        if !allows(
            self.granted(h)?,
            if engine::alters(sops) { ALTER } else { READ },
        ) {
            return Err(Error::PermissionDenied);
        }
        if engine::alters(sops) {
            // Granted by the set's mode, refused by the file's (a class
            // the two see differently, README): the OS decides.
            return Err(Error::PermissionDenied);
        }
        v.wait_for_zero(sops, timeout, &self.host(h))
    }

    /// The checks semtimedop makes on the number of operations before it
    /// reads them (the kernel's do_semtimedop, before its copy-in): E2BIG
    /// above SEMOPM, EINVAL for none. For the preload library, which must
    /// make them before it copies the operations in; `semtimedop` makes
    /// the same two checks first.
    #[doc(hidden)]
    #[inline]
    pub fn check_nsops(&self, nsops: usize) -> Result<()> {
        if nsops > self.limits.semopm as usize {
            return Err(Error::TooManyOps);
        }
        if nsops == 0 {
            return Err(Error::Invalid);
        }
        Ok(())
    }

    /// semop on a set whose segment the OS will not open for us: the
    /// kernel's answers from `lstat` of its names (EFBIG before EACCES:
    /// the file's size names nsems).
    #[cold]
    fn semop_denied(&self, semid: i32, sops: &[Sembuf]) -> Result<()> {
        let SetId { index, seq } = SetId::from_raw(semid);
        let m = self.meta(index, Some(seq))?;
        if sops.iter().any(|s| s.sem_num as u32 >= m.nsems) {
            return Err(Error::SemNumOutOfRange);
        }
        Err(Error::PermissionDenied)
    }
}
