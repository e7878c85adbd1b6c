//! The System V calls, shaped as the kernel has them.
//!
//! The free functions work in the process's default namespace
//! ([`Namespace::default_ns`]: `SHMSEM_NAMESPACE`, or
//! [`DEFAULT_NAMESPACE`](crate::DEFAULT_NAMESPACE)); the same calls exist as
//! methods of [`Namespace`]. Errors are [`Error`](crate::Error)s, whose
//! [`Error::errno`](crate::Error::errno) is exactly what the kernel would
//! have returned.

pub use shm_layout::{
    GETALL, GETNCNT, GETPID, GETVAL, GETZCNT, IPC_CREAT, IPC_EXCL, IPC_INFO, IPC_NOWAIT,
    IPC_PRIVATE, IPC_RMID, IPC_SET, IPC_STAT, SEMAEM, SEMVMX, SEM_INFO, SEM_STAT, SEM_STAT_ANY,
    SEM_UNDO, SETALL, SETVAL,
};

#[cfg(not(shmsem_loom))]
use crate::{Namespace, Result};
use shm_layout::{IPCMNI_SHIFT, SEMMNI_MAX};

/// One operation, laid out as C's `struct sembuf`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sembuf {
    /// Semaphore number (unsigned: -1 from C arrives as 65535).
    pub sem_num: u16,
    /// Amount: > 0 adds, < 0 waits then subtracts, 0 waits for zero.
    pub sem_op: i16,
    /// IPC_NOWAIT and/or SEM_UNDO.
    pub sem_flg: i16,
}

impl Sembuf {
    /// A `sembuf` from its three fields.
    pub const fn new(sem_num: u16, sem_op: i16, sem_flg: i16) -> Sembuf {
        Sembuf {
            sem_num,
            sem_op,
            sem_flg,
        }
    }
}

/// A relative timeout, as C's `struct timespec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timespec {
    /// Seconds.
    pub tv_sec: i64,
    /// Nanoseconds, 0..1_000_000_000.
    pub tv_nsec: i64,
}

impl Timespec {
    /// The timeout `d`; seconds beyond `i64::MAX` (some 292 billion years)
    /// are clamped to it.
    ///
    /// ```
    /// use shmsem::sysv::Timespec;
    /// let t = Timespec::from_duration(std::time::Duration::from_millis(1500));
    /// assert_eq!((t.tv_sec, t.tv_nsec), (1, 500_000_000));
    /// ```
    pub const fn from_duration(d: core::time::Duration) -> Timespec {
        let secs = d.as_secs();
        Timespec {
            tv_sec: if secs > i64::MAX as u64 {
                i64::MAX
            } else {
                secs as i64
            },
            tv_nsec: d.subsec_nanos() as i64,
        }
    }
}

/// A set id taken apart, as the kernel builds and splits its ipc ids
/// (`ipc_buildid`, `ipcid_to_idx`, `ipcid_to_seqx`): `seq << IPCMNI_SHIFT |
/// index`, where `index` is the set's place in its namespace and `seq` counts
/// the reuses of the index (a stale id has an old `seq`).
///
/// ```
/// use shmsem::sysv::SetId;
/// let id = SetId::new(5, 3);
/// assert_eq!(id.raw(), 3 << shmsem::layout::IPCMNI_SHIFT | 5);
/// assert_eq!(SetId::from_raw(id.raw()), id);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SetId {
    /// The index: the low IPCMNI_SHIFT bits.
    pub index: u32,
    /// The sequence number: the bits above.
    pub seq: u32,
}

impl SetId {
    /// The id of index `index` (below SEMMNI_MAX) in its `seq`-th use.
    pub const fn new(index: u32, seq: u32) -> SetId {
        SetId { index, seq }
    }

    /// Splits the id `id` (callers reject negative ids first: they name no
    /// set).
    pub const fn from_raw(id: i32) -> SetId {
        SetId {
            index: id as u32 & (SEMMNI_MAX - 1),
            seq: id as u32 >> IPCMNI_SHIFT,
        }
    }

    /// The id as the calls take and return it.
    pub const fn raw(self) -> i32 {
        ((self.seq << IPCMNI_SHIFT) | self.index) as i32
    }
}

/// Ownership and permissions of a set, as `struct ipc_perm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IpcPerm {
    /// The key.
    pub key: i32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Creator uid.
    pub cuid: u32,
    /// Creator gid.
    pub cgid: u32,
    /// The 9 permission bits.
    pub mode: u32,
    /// Sequence number of the id.
    pub seq: u32,
}

/// A set's status, as `struct semid_ds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SemidDs {
    /// Ownership and permissions.
    pub perm: IpcPerm,
    /// Last semop time (seconds since the epoch; the latest over the semaphores).
    pub otime: i64,
    /// Last change time.
    pub ctime: i64,
    /// Number of semaphores.
    pub nsems: u64,
}

/// Limits and usage, as `struct seminfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct Seminfo {
    pub semmap: i32,
    pub semmni: i32,
    pub semmns: i32,
    pub semmnu: i32,
    pub semmsl: i32,
    pub semopm: i32,
    pub semume: i32,
    /// IPC_INFO: size of the undo structure; SEM_INFO: sets in use.
    pub semusz: i32,
    pub semvmx: i32,
    /// IPC_INFO: SEMAEM; SEM_INFO: semaphores in use.
    pub semaem: i32,
}

/// semctl's fourth argument (C's `union semun`), typed.
#[derive(Debug)]
pub enum SemctlArg<'a> {
    /// No argument (IPC_RMID, GETVAL, GETPID, GETNCNT, GETZCNT).
    None,
    /// SETVAL.
    Val(i32),
    /// IPC_STAT, SEM_STAT, SEM_STAT_ANY: filled in.
    StatOut(&'a mut SemidDs),
    /// IPC_SET: uid, gid and mode are taken from it.
    Set(&'a SemidDs),
    /// GETALL: filled in; must hold nsems values.
    GetAll(&'a mut [u16]),
    /// SETALL: must hold nsems values.
    SetAll(&'a [u16]),
    /// IPC_INFO, SEM_INFO: filled in.
    Info(&'a mut Seminfo),
}

#[cfg(not(shmsem_loom))]
/// `semget(2)` in the default namespace.
pub fn semget(key: i32, nsems: i32, semflg: i32) -> Result<i32> {
    Namespace::default_ns()?.semget(key, nsems, semflg)
}

#[cfg(not(shmsem_loom))]
/// `semop(2)` in the default namespace.
pub fn semop(semid: i32, sops: &[Sembuf]) -> Result<()> {
    Namespace::default_ns()?.semtimedop(semid, sops, None)
}

#[cfg(not(shmsem_loom))]
/// `semtimedop(2)` in the default namespace. `None` waits for ever.
pub fn semtimedop(semid: i32, sops: &[Sembuf], timeout: Option<&Timespec>) -> Result<()> {
    Namespace::default_ns()?.semtimedop(semid, sops, timeout)
}

#[cfg(not(shmsem_loom))]
/// `semctl(2)` in the default namespace. Returns what the kernel's call
/// returns on success (the value for GETVAL, 0 for most commands, the index
/// for IPC_INFO/SEM_INFO, the id for SEM_STAT).
pub fn semctl(semid: i32, semnum: i32, cmd: i32, arg: SemctlArg<'_>) -> Result<i32> {
    Namespace::default_ns()?.semctl(semid, semnum, cmd, arg)
}

/// Checks a semctl command number the way glibc's wrapper does before any
/// system call: unknown commands (including those with the IPC_64 bit) are
/// EINVAL.
pub fn is_known_cmd(cmd: i32) -> bool {
    matches!(cmd, 0..=3 | 11..=20)
}
