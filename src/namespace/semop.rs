//! semop and semtimedop: the checks of the call, then the operation (fast
//! path, or the set's lock and perhaps a sleep), on a set found in the
//! cache; and the kernel's answers for a set this process may not map.

use crate::set::SlowOutcome;
use crate::sync;
use crate::sysv::{Sembuf, SetId, Timespec};
use crate::{engine, liveness, Error, Result};

use super::perm::allows;
use super::Namespace;

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
        if sops.len() > self.limits.semopm as usize {
            return Err(Error::TooManyOps);
        }
        if sops.is_empty() || semid < 0 {
            return Err(Error::Invalid);
        }
        if let Some(t) = timeout {
            if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
                return Err(Error::Invalid);
            }
        }
        let h = match self.lookup(semid) {
            Err(Error::PermissionDenied) => return self.semop_denied(semid, sops),
            r => r?,
        };
        let v = &h.view;
        // (Short-circuiting scans: one fused loop gets vectorized, and its
        // set-up costs the one-op call more than the scans.)
        let undo = engine::has_undo(sops);
        let mut me = None;
        if undo {
            // The kernel makes the undo record before the EFBIG and EACCES
            // checks, and its existence alone sets otime at exit.
            let m = self.me(h)?;
            v.note_undo_record(m.slot);
            me = Some(m);
        }
        if sops.iter().any(|s| s.sem_num as usize >= v.nsems()) {
            return Err(Error::SemNumOutOfRange);
        }
        let alter = engine::alters(sops);
        if !allows(self.granted(h)?, if alter { 0o222 } else { 0o444 }) {
            return Err(Error::PermissionDenied);
        }
        if sops.len() == 1 && !undo {
            if let Some(r) = v.fast_op(sops[0], liveness::pid()) {
                return r;
            }
        }
        let deadline = match timeout {
            None => u64::MAX,
            Some(t) => sync::monotonic_ns().saturating_add(
                (t.tv_sec as u64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(t.tv_nsec as u64),
            ),
        };
        let me = match me {
            Some(m) => m,
            None => self.me(h)?,
        };
        let host = Namespace::host(h);
        let mut g = v.lock(&me, &host);
        let out = g.semop(&me, sops, &host);
        drop(g);
        match out {
            SlowOutcome::Now(r) => r,
            SlowOutcome::Queued(slot, st) => v.wait(&me, slot, st, deadline, &host),
        }
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
    /// kernel's answers from the registry's copy (EFBIG before EACCES).
    #[cold]
    fn semop_denied(&self, semid: i32, sops: &[Sembuf]) -> Result<()> {
        let SetId { index, seq } = SetId::from_raw(semid);
        let m = {
            let _l = self.lock_registry()?;
            self.meta_locked(index, Some(seq))?
        };
        if sops.iter().any(|s| s.sem_num as u32 >= m.nsems) {
            return Err(Error::SemNumOutOfRange);
        }
        Err(Error::PermissionDenied)
    }
}
