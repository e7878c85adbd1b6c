//! Other users, without creating any: a sandbox process (a private mount
//! namespace with its own tmpfs on /dev/shm, and a private System V IPC
//! namespace for the kernel's sets to compare with) whose children switch
//! to raw unused ids with setresuid/setresgid. Nothing reaches the host:
//! the tmpfs, the kernel's sets and the mounts go with the sandbox's last
//! process. Needs root (tests that use it say they were skipped
//! otherwise).

use std::time::Duration;

use nix::sys::wait::WaitStatus;

use super::children::{fork_child, wait_for, ChildNet, PANICKED};

/// A user: uid, primary gid, supplementary groups.
#[derive(Clone, Copy, Debug)]
pub struct User {
    /// Real, effective and saved uid.
    pub uid: u32,
    /// Real, effective and saved gid.
    pub gid: u32,
}

impl User {
    /// A user with these ids (and no supplementary groups).
    pub const fn new(uid: u32, gid: u32) -> User {
        User { uid, gid }
    }
}

/// Whether this process may make a sandbox (it is root).
pub fn can_sandbox() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs `body` in a forked sandbox process (see the module) as root, and
/// returns its exit code; fails the test if it does not end within
/// `secs` seconds (its alarm kills it first).
pub fn in_sandbox(what: &str, secs: u32, body: impl FnOnce() -> i32) -> i32 {
    let pid = fork_child(ChildNet::alarm_and_parent_death(secs), || {
        if let Err(e) = enter_sandbox() {
            eprintln!("{what}: sandbox: {e}");
            return PANICKED;
        }
        body()
    });
    match wait_for(pid, Duration::from_secs(secs as u64 + 5), what) {
        WaitStatus::Exited(_, code) => code,
        other => panic!("{what}: sandbox ended as {other:?}"),
    }
}

/// Private mount and IPC namespaces, and a fresh tmpfs on /dev/shm.
fn enter_sandbox() -> std::io::Result<()> {
    use std::ffi::CString;
    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let (root, shm, tmpfs) = (c"/", c"/dev/shm", c"tmpfs");
    let opts = CString::new("mode=1777,size=64m").unwrap();
    // SAFETY: plain system calls on this (single-threaded, forked)
    // process, with valid C strings or nulls.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC))?;
        // Nothing mounted from here on propagates to the host's namespace.
        check(libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            tmpfs.as_ptr(),
            shm.as_ptr(),
            tmpfs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            opts.as_ptr().cast(),
        ))
    }
}

/// In a forked child of the sandbox: becomes `user` for good (no
/// supplementary groups), then runs `body`; its exit code (e.g.
/// `kids.spawn(|| as_user(u, || ...))`).
pub fn as_user(user: User, body: impl FnOnce() -> i32) -> i32 {
    if let Err(e) = become_user(user) {
        eprintln!("as {user:?}: {e}");
        return PANICKED;
    }
    body()
}

/// setgroups([]), setresgid, setresuid: from root to `user` for good.
fn become_user(user: User) -> nix::Result<()> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    setgroups(&[])?;
    let g = Gid::from_raw(user.gid);
    setresgid(g, g, g)?;
    let u = Uid::from_raw(user.uid);
    setresuid(u, u, u)
}
