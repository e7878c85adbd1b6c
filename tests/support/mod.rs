//! What the integration tests share: one copy of each piece of support,
//! included by every test file with `mod support;` (each file under tests/
//! is its own crate, so each includes the module; what one file does not use
//! is dead code there, and so are some of the re-exports below: hence the
//! `allow`s). `use support::*` gives everything; the submodules say where it
//! lives.
//!
//! | file | holds |
//! |---|---|
//! | `env.rs` | the test environment: one test at a time (the fork lock), namespace names, [`TestEnv`], namespaces destroyed on drop, scratch directories, environment knobs |
//! | `watchdog.rs` | [`Watchdog`]: a hang becomes a failure with a message |
//! | `children.rs` | forked children: exit codes, the child's safety net, [`fork_child`], waits with deadlines, [`Kids`], [`poll_until`], pipes, a process's state |
//! | `programs.rs` | other programs: this test binary run again for one test, a program run to its end under a deadline |
//! | `c.rs` | building C programs (tests/c/*.c, gcc) and the preload library |
//! | `memory.rs` | shared mappings: [`SharedMap`], [`Shared`] values that forked children write |
//! | `segment.rs` | a namespace's files in /dev/shm, a segment mapped raw ([`RawMap`]) and decoded with the shm-layout types ([`Usage`]) |
//! | `sets.rs` | a set's observable state, unwrapped, and waits for it; the wall clock as sets stamp it |
//! | `rng.rs` | [`Rng`], the seeded generator |
//! | `errno.rs` | errno names |
//! | `users.rs` | other users (raw uids and gids, no accounts) and a sandbox to run them in: private mount and IPC namespaces with a fresh tmpfs on /dev/shm ([`in_sandbox`]), and helpers to become one ([`as_user`], [`spawn_as`]) |
//!
//! Suite machinery that only one suite needs stays with the suite:
//! tests/differential/harness.rs (the kernel-against-shmsem runner) and
//! tests/hostile/harness.rs (the control page and worker processes of the
//! hostile-segment tests).

#![allow(dead_code, unused_imports)]

pub mod c;
pub mod children;
pub mod env;
pub mod errno;
pub mod memory;
pub mod programs;
pub mod rng;
pub mod segment;
pub mod sets;
pub mod users;
pub mod watchdog;

pub use c::*;
pub use children::*;
pub use env::*;
pub use errno::*;
pub use memory::*;
pub use programs::*;
pub use rng::*;
pub use segment::*;
pub use sets::*;
pub use users::*;
pub use watchdog::*;
