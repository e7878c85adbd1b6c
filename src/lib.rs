//! System V semaphores in user space.
//!
//! shmsem implements `semget`, `semop`, `semtimedop` and `semctl` — with
//! SEM_UNDO, IPC_NOWAIT, IPC_RMID, GETNCNT/GETZCNT and every other command —
//! over POSIX shared memory. An uncontended single operation is one
//! compare-and-swap with no system call; blocked processes sleep on shared
//! futexes and are handed their completed operation by the process that
//! woke them. Unrelated processes synchronise with no server.
//!
//! Two layers share one engine:
//!
//! * [`sysv`]: the calls as the kernel has them (ids, [`sysv::Sembuf`],
//!   errno-valued [`Error`]s), in the namespace given by `SHMSEM_NAMESPACE`
//!   or explicitly through a [`Namespace`];
//! * [`SemaphoreSet`]: a handle with typed operations and `Duration` timeouts.
//!
//! ```
//! use shmsem::{Namespace, SemaphoreSet, Op};
//! # let ns = Namespace::open(&format!("doctest-lib-{}", std::process::id())).unwrap();
//! let set = SemaphoreSet::create_private(&ns, 2, 0o600)?;
//! set.set_value(0, 1)?;
//! set.op(&[Op::wait(0, 1).undo(), Op::post(1, 2)])?;
//! assert_eq!(set.values()?, vec![0, 2]);
//! set.remove()?;
//! # ns.destroy().unwrap();
//! # Ok::<(), shmsem::Error>(())
//! ```
#![warn(unsafe_op_in_unsafe_fn, missing_docs)]

// Under loom only the engine, the set and the shim are built: they are
// what the models drive (loom cannot map memory or call the kernel).
#[cfg(not(shmsem_loom))]
mod api;
mod engine;
mod error;
#[cfg(not(shmsem_loom))]
mod liveness;
mod mapped;
#[cfg(not(shmsem_loom))]
mod namespace;
// The namespace's reclamation core on its own, for the loom models (the
// namespace itself is not built under loom).
#[cfg(shmsem_loom)]
#[path = "namespace/reclaim.rs"]
mod reclaim;
mod set;
#[cfg(not(shmsem_loom))]
mod shm;
pub mod signal;
mod sync;
pub mod sysv;

#[cfg(not(shmsem_loom))]
pub use api::{Op, SemaphoreSet, SetStatus};
pub use error::{Error, Result};
#[cfg(not(shmsem_loom))]
pub use namespace::{
    GcReport, Limits, Namespace, NamespaceInfo, NamespaceRemoval, DEFAULT_NAMESPACE,
};
pub use set::{PendingOp, ProcessReport, SetReport, SlotUsage};
pub use shm_layout as layout;

#[doc(hidden)]
pub mod __private {
    //! Items for the loom models and the crate's own tests. Not a stable API.
    /// The set cache's reclamation core, for the models (loom-tests/).
    #[cfg(shmsem_loom)]
    pub use crate::reclaim::{Domain, Held, Pin, Registry, Slot};
    #[cfg(any(test, shmsem_loom))]
    pub use crate::set::heap::HeapSet;
    pub use crate::set::{Guard, Host, Me, NoDeaths, SetView, SlowOutcome, Sweep, SWEEP_SLICE_NS};
    pub use crate::signal::HandlerMark;
    pub use crate::sync::Ordering;
    /// Loom's clock and crash points, for the models (loom-tests/).
    #[cfg(shmsem_loom)]
    pub use crate::sync::{advance_clock, crash_after, model_membarrier, someone_crashed, Crash};
    /// Crash-point hooks, for tests/stale.rs and tests/crash_points.rs.
    #[cfg(not(shmsem_loom))]
    pub use crate::sync::{crash_after, crash_countdown};
}
