//! The idiomatic layer: a set handle, typed operations, `Duration` timeouts.
//! Every method is one call of the System V layer; there is no logic here.

use std::sync::Arc;
use std::time::Duration;

use crate::sysv::{Sembuf, SemctlArg, SemidDs, Timespec};
use crate::{Namespace, Result};
use shm_layout::{
    GETALL, GETNCNT, GETPID, GETVAL, GETZCNT, IPC_CREAT, IPC_EXCL, IPC_NOWAIT, IPC_PRIVATE,
    IPC_RMID, IPC_SET, IPC_STAT, SEM_UNDO, SETALL, SETVAL,
};

/// A set's status: ownership, permissions, times, size.
pub type SetStatus = SemidDs;

/// One operation of a [`SemaphoreSet::op`] call.
///
/// ```
/// use shmsem::Op;
/// let p = Op::wait(0, 1).undo();      // P with SEM_UNDO
/// let v = Op::post(0, 1).nowait();    // V (IPC_NOWAIT is harmless: V never blocks)
/// let z = Op::zero(1);                // wait until semaphore 1 is zero
/// assert_eq!(p.as_sembuf().sem_op, -1);
/// # let _ = (v, z);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct Op(Sembuf);

impl Op {
    /// Wait until semaphore `num` is at least `n`, then subtract `n`.
    pub const fn wait(num: u16, n: i16) -> Op {
        Op(Sembuf::new(num, n.wrapping_neg(), 0))
    }
    /// Add `n` to semaphore `num`.
    pub const fn post(num: u16, n: i16) -> Op {
        Op(Sembuf::new(num, n, 0))
    }
    /// Wait until semaphore `num` is zero.
    pub const fn zero(num: u16) -> Op {
        Op(Sembuf::new(num, 0, 0))
    }
    /// With SEM_UNDO: reversed when this process exits, however it exits.
    pub const fn undo(self) -> Op {
        Op(Sembuf::new(
            self.0.sem_num,
            self.0.sem_op,
            self.0.sem_flg | SEM_UNDO as i16,
        ))
    }
    /// With IPC_NOWAIT: fail with [`Error::WouldBlock`](crate::Error::WouldBlock)
    /// instead of blocking on this op.
    pub const fn nowait(self) -> Op {
        Op(Sembuf::new(
            self.0.sem_num,
            self.0.sem_op,
            self.0.sem_flg | IPC_NOWAIT as i16,
        ))
    }
    /// The raw `sembuf`.
    pub const fn as_sembuf(&self) -> Sembuf {
        self.0
    }
}

impl From<Sembuf> for Op {
    fn from(s: Sembuf) -> Op {
        Op(s)
    }
}

/// A handle on one semaphore set of a namespace.
///
/// The handle is only an id: the set lives in shared memory until someone
/// calls [`SemaphoreSet::remove`] (or IPC_RMID), whatever happens to handles.
#[derive(Clone, Debug)]
pub struct SemaphoreSet {
    ns: Arc<Namespace>,
    id: i32,
}

fn ops(ops: &[Op]) -> &[Sembuf] {
    // SAFETY: Op is #[repr(transparent)] over Sembuf, so a slice of Ops is a
    // slice of Sembufs with the same length and lifetime.
    unsafe { core::slice::from_raw_parts(ops.as_ptr().cast::<Sembuf>(), ops.len()) }
}
const _: () = assert!(core::mem::size_of::<Op>() == core::mem::size_of::<Sembuf>());

impl SemaphoreSet {
    /// Creates a new set for `key`; fails with `Exists` if the key is taken.
    pub fn create(ns: &Arc<Namespace>, key: i32, nsems: u16, mode: u32) -> Result<SemaphoreSet> {
        let flags = IPC_CREAT | IPC_EXCL | (mode & 0o777) as i32;
        let id = ns.semget(key, nsems as i32, flags)?;
        Ok(SemaphoreSet { ns: ns.clone(), id })
    }
    /// Creates a new set that no key names (IPC_PRIVATE).
    pub fn create_private(ns: &Arc<Namespace>, nsems: u16, mode: u32) -> Result<SemaphoreSet> {
        let id = ns.semget(IPC_PRIVATE, nsems as i32, (mode & 0o777) as i32)?;
        Ok(SemaphoreSet { ns: ns.clone(), id })
    }
    /// Opens the existing set for `key`.
    pub fn open(ns: &Arc<Namespace>, key: i32) -> Result<SemaphoreSet> {
        let id = ns.semget(key, 0, 0)?;
        Ok(SemaphoreSet { ns: ns.clone(), id })
    }
    /// Opens the set for `key`, creating it with `nsems` and `mode` if absent.
    pub fn open_or_create(
        ns: &Arc<Namespace>,
        key: i32,
        nsems: u16,
        mode: u32,
    ) -> Result<SemaphoreSet> {
        let id = ns.semget(key, nsems as i32, IPC_CREAT | (mode & 0o777) as i32)?;
        Ok(SemaphoreSet { ns: ns.clone(), id })
    }
    /// A handle for an id obtained elsewhere (not checked until used).
    pub fn from_id(ns: &Arc<Namespace>, id: i32) -> SemaphoreSet {
        SemaphoreSet { ns: ns.clone(), id }
    }
    /// The set's id.
    pub fn id(&self) -> i32 {
        self.id
    }
    /// The namespace the set lives in.
    pub fn namespace(&self) -> &Arc<Namespace> {
        &self.ns
    }
    /// Applies `ops` all or nothing, blocking as long as needed.
    pub fn op(&self, ops_: &[Op]) -> Result<()> {
        self.ns.semtimedop(self.id, ops(ops_), None)
    }
    /// Applies `ops` all or nothing, blocking at most `timeout`
    /// ([`Error::WouldBlock`](crate::Error::WouldBlock) when it expires).
    pub fn op_timeout(&self, ops_: &[Op], timeout: Duration) -> Result<()> {
        let ts = Timespec::from_duration(timeout);
        self.ns.semtimedop(self.id, ops(ops_), Some(&ts))
    }
    /// The value of semaphore `num`.
    pub fn value(&self, num: u16) -> Result<u16> {
        Ok(self
            .ns
            .semctl(self.id, num as i32, GETVAL, SemctlArg::None)? as u16)
    }
    /// Every value (one consistent snapshot).
    pub fn values(&self) -> Result<Vec<u16>> {
        let st = self.status()?;
        let mut v = vec![0u16; st.nsems as usize];
        self.ns
            .semctl(self.id, 0, GETALL, SemctlArg::GetAll(&mut v))?;
        Ok(v)
    }
    /// Sets semaphore `num` to `value` (SETVAL: clears its undo adjustments).
    pub fn set_value(&self, num: u16, value: u16) -> Result<()> {
        self.ns
            .semctl(self.id, num as i32, SETVAL, SemctlArg::Val(value as i32))
            .map(drop)
    }
    /// Sets every value (SETALL).
    pub fn set_values(&self, values: &[u16]) -> Result<()> {
        self.ns
            .semctl(self.id, 0, SETALL, SemctlArg::SetAll(values))
            .map(drop)
    }
    /// Pid of the last process to operate on semaphore `num` (GETPID).
    pub fn pid(&self, num: u16) -> Result<i32> {
        self.ns.semctl(self.id, num as i32, GETPID, SemctlArg::None)
    }
    /// Processes waiting for semaphore `num` to increase (GETNCNT).
    pub fn ncnt(&self, num: u16) -> Result<u32> {
        Ok(self
            .ns
            .semctl(self.id, num as i32, GETNCNT, SemctlArg::None)? as u32)
    }
    /// Processes waiting for semaphore `num` to become zero (GETZCNT).
    pub fn zcnt(&self, num: u16) -> Result<u32> {
        Ok(self
            .ns
            .semctl(self.id, num as i32, GETZCNT, SemctlArg::None)? as u32)
    }
    /// The set's status (IPC_STAT).
    pub fn status(&self) -> Result<SetStatus> {
        let mut ds = SemidDs::default();
        self.ns
            .semctl(self.id, 0, IPC_STAT, SemctlArg::StatOut(&mut ds))?;
        Ok(ds)
    }
    /// Changes owner and mode (IPC_SET).
    pub fn set_permissions(&self, uid: u32, gid: u32, mode: u32) -> Result<()> {
        let mut ds = SemidDs::default();
        ds.perm.uid = uid;
        ds.perm.gid = gid;
        ds.perm.mode = mode;
        self.ns
            .semctl(self.id, 0, IPC_SET, SemctlArg::Set(&ds))
            .map(drop)
    }
    /// Removes the set (IPC_RMID): every waiter returns `Removed`.
    pub fn remove(&self) -> Result<()> {
        self.ns
            .semctl(self.id, 0, IPC_RMID, SemctlArg::None)
            .map(drop)
    }
}
