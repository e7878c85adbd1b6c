//! The calls a diagnostic tool makes on one set (`shmsem stat`, `shmsem
//! gc`): its report, and a sweep of its dead processes.

use crate::set::{SetReport, Sweep};
use crate::{Error, Result};

use super::cache::{Found, SetHandle};
use super::perm::READ;
use super::reclaim::{self, Held};
use super::Namespace;

impl Namespace {
    /// A diagnostic view of set `semid`: values, waiters, the pending
    /// queue, the processes in its table and their adjustments (see
    /// [`SetReport`]). Needs read permission.
    pub fn report(&self, semid: i32) -> Result<SetReport> {
        let h = self.mapped(semid)?;
        self.require(&h, READ)?;
        self.locked(&h, |g, me, host| g.report(me, host))
    }

    /// Sweeps set `semid` now: every dead process in its table is reaped
    /// (its undo applied, its queue slots and entry freed), idle ones too.
    pub fn sweep(&self, semid: i32) -> Result<()> {
        let h = self.mapped(semid)?;
        self.locked(&h, |g, me, host| g.sweep_dead(me, host, Sweep::All))
    }

    /// Set `semid`, which these calls need mapped: one this process cannot
    /// map is EACCES (its mode grants our class nothing).
    fn mapped(&self, semid: i32) -> Result<Held<'_, SetHandle>> {
        match self.find(reclaim::pin(), semid)? {
            Found::Mapped(h) => Ok(h),
            Found::Unmappable => Err(Error::PermissionDenied),
        }
    }
}
