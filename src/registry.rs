//! STUB (being written).
use crate::sysv::{Sembuf, SemctlArg, Timespec};
use crate::Result;
use std::sync::Arc;
/// Name of the namespace used when `SHMSEM_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Per-namespace limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Max semaphores per set (SEMMSL).
    pub semmsl: u32,
    /// Max semaphores in the namespace (SEMMNS).
    pub semmns: u32,
    /// Max ops per call (SEMOPM).
    pub semopm: u32,
    /// Max sets (SEMMNI).
    pub semmni: u32,
    /// Pending-queue slots per set.
    pub queue_slots: u32,
    /// Process-table entries per set.
    pub proc_slots: u32,
}
/// A namespace.
#[derive(Debug)]
pub struct Namespace {}
#[allow(missing_docs, unused_variables)]
impl Namespace {
    pub fn open(name: &str) -> Result<Arc<Namespace>> {
        todo!()
    }
    pub fn open_with_limits(name: &str, limits: Limits) -> Result<Arc<Namespace>> {
        todo!()
    }
    pub fn default_ns() -> Result<Arc<Namespace>> {
        todo!()
    }
    pub fn name(&self) -> &str {
        todo!()
    }
    pub fn limits(&self) -> Limits {
        todo!()
    }
    pub fn semget(&self, key: i32, nsems: i32, semflg: i32) -> Result<i32> {
        todo!()
    }
    pub fn semop(&self, semid: i32, sops: &[Sembuf]) -> Result<()> {
        todo!()
    }
    pub fn semtimedop(
        &self,
        semid: i32,
        sops: &[Sembuf],
        timeout: Option<&Timespec>,
    ) -> Result<()> {
        todo!()
    }
    pub fn semctl(&self, semid: i32, semnum: i32, cmd: i32, arg: SemctlArg<'_>) -> Result<i32> {
        todo!()
    }
    pub fn destroy(&self) -> Result<()> {
        todo!()
    }
}
