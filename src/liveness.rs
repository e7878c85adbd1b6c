//! Who this process is, whether another one is still alive, and this
//! process's entry in each set's process table.
//!
//! A process is named by (pid, start time): the start time (field 22 of
//! /proc/PID/stat) does not change at exec and differs for a reused pid.
//! Liveness comes first from the open-file-description lock each process
//! holds on its process-table byte (the kernel drops it at death); a lock
//! that is still held is confirmed by pid + start time, because a child that
//! inherited the descriptor (fork, posix_spawn) keeps the lock alive after
//! the owner died. A zombie counts as dead.
//!
//! * [`identity`]: this process's pid and start time; whether a pid exists.
//! * [`host`]: [`OsHost`], the engine's [`Host`](crate::set::Host): which
//!   process-table entries belong to dead processes.
//! * [`membership`]: [`Membership`], this process's entry in one set:
//!   adopted after an exec, claimed from the free ones, or freed from the
//!   idle dead when the table is full.

mod host;
mod identity;
mod membership;

pub use host::OsHost;
pub use identity::pid;
pub use membership::Membership;
