//! The one error type: the kernel's errnos for these calls, with messages.

use core::fmt;

/// An error from a semaphore call. Each variant is one errno the kernel's
/// semget/semop/semtimedop/semctl can return; [`Error::errno`] gives it and
/// [`Error::from_errno`] takes it back.
///
/// ```
/// use shmsem::Error;
/// assert_eq!(Error::WouldBlock.errno(), libc::EAGAIN);
/// assert_eq!(Error::from_errno(libc::EIDRM), Error::Removed);
/// assert_eq!(Error::Removed.to_string(), "the semaphore set was removed (EIDRM)");
/// assert_eq!(Error::from_errno(libc::EMFILE), Error::Os(libc::EMFILE));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// E2BIG: more operations in one call than SEMOPM.
    TooManyOps,
    /// EACCES: the set's mode does not grant the requested access.
    PermissionDenied,
    /// EAGAIN: the operation would block and IPC_NOWAIT was given, or the
    /// timeout expired.
    WouldBlock,
    /// EEXIST: IPC_CREAT|IPC_EXCL and the key exists.
    Exists,
    /// EFAULT: a pointer argument does not point into readable/writable memory.
    BadAddress,
    /// EFBIG: a sem_num is not below the set's number of semaphores.
    SemNumOutOfRange,
    /// EIDRM: the set was removed while the caller used or waited on it.
    Removed,
    /// EINTR: a signal interrupted the wait.
    Interrupted,
    /// EINVAL: an invalid argument, or a stale or unknown id.
    Invalid,
    /// ENOENT: no set has this key and IPC_CREAT was not given.
    NotFound,
    /// ENOMEM: no room: the set's pending-queue arena or process table is
    /// full, or memory could not be allocated.
    NoMemory,
    /// ENOSPC: the namespace's SEMMNI or SEMMNS limit would be exceeded.
    NoSpace,
    /// EPERM: IPC_SET/IPC_RMID by a process that is not the owner or creator.
    NotPermitted,
    /// ERANGE: a value would exceed SEMVMX, or an undo adjustment SEMAEM.
    OutOfRange,
    /// EUCLEAN: the shared segment fails its consistency checks (bad magic,
    /// version or size, or an index out of bounds). The set is unusable.
    Corrupt,
    /// Any other errno, from the operating system, as itself: for example
    /// EMFILE or ENFILE when no descriptor is left to open a segment with
    /// (errnos the kernel's semaphore calls never give; the message names
    /// them, as `operating system error 24 (Too many open files)`). ENOSPC
    /// from a full /dev/shm is [`Error::NoSpace`], ENOMEM [`Error::NoMemory`].
    Os(i32),
}

impl Error {
    /// The errno value.
    pub fn errno(self) -> i32 {
        match self {
            Error::TooManyOps => libc::E2BIG,
            Error::PermissionDenied => libc::EACCES,
            Error::WouldBlock => libc::EAGAIN,
            Error::Exists => libc::EEXIST,
            Error::BadAddress => libc::EFAULT,
            Error::SemNumOutOfRange => libc::EFBIG,
            Error::Removed => libc::EIDRM,
            Error::Interrupted => libc::EINTR,
            Error::Invalid => libc::EINVAL,
            Error::NotFound => libc::ENOENT,
            Error::NoMemory => libc::ENOMEM,
            Error::NoSpace => libc::ENOSPC,
            Error::NotPermitted => libc::EPERM,
            Error::OutOfRange => libc::ERANGE,
            Error::Corrupt => libc::EUCLEAN,
            Error::Os(e) => e,
        }
    }

    /// The error for an errno value (unknown values become [`Error::Os`]).
    pub fn from_errno(errno: i32) -> Error {
        match errno {
            libc::E2BIG => Error::TooManyOps,
            libc::EACCES => Error::PermissionDenied,
            libc::EAGAIN => Error::WouldBlock,
            libc::EEXIST => Error::Exists,
            libc::EFAULT => Error::BadAddress,
            libc::EFBIG => Error::SemNumOutOfRange,
            libc::EIDRM => Error::Removed,
            libc::EINTR => Error::Interrupted,
            libc::EINVAL => Error::Invalid,
            libc::ENOENT => Error::NotFound,
            libc::ENOMEM => Error::NoMemory,
            libc::ENOSPC => Error::NoSpace,
            libc::EPERM => Error::NotPermitted,
            libc::ERANGE => Error::OutOfRange,
            libc::EUCLEAN => Error::Corrupt,
            e => Error::Os(e),
        }
    }
}

impl From<Error> for i32 {
    fn from(e: Error) -> i32 {
        e.errno()
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Error {
        Error::from_errno(e.raw_os_error())
    }
}

impl From<nix::errno::Errno> for Error {
    fn from(e: nix::errno::Errno) -> Error {
        Error::from_errno(e as i32)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            Error::TooManyOps => "too many operations in one call (E2BIG)",
            Error::PermissionDenied => "permission denied by the set's mode (EACCES)",
            Error::WouldBlock => "the operation would block, or its timeout expired (EAGAIN)",
            Error::Exists => "a set with this key already exists (EEXIST)",
            Error::BadAddress => "bad address (EFAULT)",
            Error::SemNumOutOfRange => "semaphore number out of range (EFBIG)",
            Error::Removed => "the semaphore set was removed (EIDRM)",
            Error::Interrupted => "interrupted by a signal (EINTR)",
            Error::Invalid => "invalid argument, or no set has this id (EINVAL)",
            Error::NotFound => "no set has this key (ENOENT)",
            Error::NoMemory => "out of room: pending-queue arena or process table full (ENOMEM)",
            Error::NoSpace => "namespace limit on sets or semaphores reached (ENOSPC)",
            Error::NotPermitted => "only the owner or creator may do this (EPERM)",
            Error::OutOfRange => "value or undo adjustment out of range (ERANGE)",
            Error::Corrupt => "the shared segment is corrupt (EUCLEAN)",
            Error::Os(e) => {
                return write!(
                    f,
                    "operating system error {} ({})",
                    e,
                    nix::errno::Errno::from_raw(*e).desc()
                )
            }
        };
        f.write_str(msg)
    }
}

impl std::error::Error for Error {}

/// Result of a semaphore call.
pub type Result<T> = core::result::Result<T, Error>;
