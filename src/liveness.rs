//! Who this process is, whether another one is still alive, and this
//! process's entry in each set's process table.
//!
//! A process is named by (pid, start time): the start time (field 22 of
//! /proc/PID/stat) does not change at exec and differs for a reused pid.
//! Each process holds one descriptor per namespace, close-on-exec, of its
//! uid's presence file, and through it a lock on its presence byte
//! (`shm_layout::lock_bytes`), which the kernel drops when the process
//! dies. A held lock says "alive" for the price of one system call; a free
//! one is only a hint (a daemon may close every descriptor, an exec closes
//! it): pid and start time decide, and a zombie counts as dead.
//!
//! * [`identity`]: this process's pid and start time; whether a process is
//!   alive.
//! * [`presence`]: [`Presence`], this process's descriptor of one
//!   namespace, checked before it is used for anything that writes.
//! * [`host`]: [`OsHost`], the engine's [`Host`](crate::set::Host): which
//!   process-table entries belong to dead processes.
//! * [`membership`]: [`Membership`], this process's entry in one set:
//!   adopted after an exec, claimed from the free ones, or freed from the
//!   idle dead when the table is full.

mod host;
mod identity;
mod membership;
mod presence;

pub use host::OsHost;
pub use identity::pid;
pub use membership::Membership;
pub use presence::{unlink_presence_files, Presence};
