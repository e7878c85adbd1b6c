//! Other users, and a sandbox to run them in.
//!
//! The cross-user tests (tests/trust.rs, tests/readers.rs, the fuzzer's
//! cross-user mode) need processes of several uids. None of them needs a
//! passwd or group entry (the library and the kernel only compare numbers),
//! so no user is created: a forked child switches to raw ids that no account
//! on a usual machine has (61000–61003), with `setgroups`, `setresgid` and
//! `setresuid` ([`User::become_now`], [`as_user`], [`spawn_as`]). Nothing
//! about users is left behind.
//!
//! Everything runs inside [`in_sandbox`] (or [`in_sandbox_ok`]): a forked
//! child, as root, that enters a mount namespace of its own (made private,
//! so that nothing propagates to the host) with a fresh tmpfs on /dev/shm
//! (mode 1777, as a system's), and an IPC namespace of its own (the
//! kernel's semaphore sets made there, for comparison, die with it). When
//! the child and its children end, both namespaces and everything in them
//! are gone: no segment, set or mount outlives a test, pass or fail. Only
//! root can do this ([`can_sandbox`]; elsewhere the test is skipped).
//!
//! Children of that child report through a pipe the test reads and prints:
//! a panic's message (the harness's output capture does not reach forked
//! children) and what [`note`] says.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::children::{
    describe, fork_child, kill_and_reap, pipe, try_wait_for, ChildNet, Kids, WaitError,
};
use super::env::{is_root, skipped};

/// A user: ids only (no account needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    /// For messages.
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: &'static [u32],
}

/// Alice's group: the group of her sets.
pub const ALICE_GROUP: u32 = 61000;
/// The victim.
pub const ALICE: User = User {
    name: "alice",
    uid: 61001,
    gid: ALICE_GROUP,
    groups: &[ALICE_GROUP],
};
/// The attacker, in no group of alice's: the "other" class of her sets.
pub const MALLORY: User = User {
    name: "mallory",
    uid: 61002,
    gid: 61002,
    groups: &[61002],
};
/// The attacker as a member of alice's group: the "group" class.
pub const MALLORY_IN_GROUP: User = User {
    name: "mallory (in alice's group)",
    uid: 61002,
    gid: 61002,
    groups: &[61002, ALICE_GROUP],
};
/// A bystander.
pub const BOB: User = User {
    name: "bob",
    uid: 61003,
    gid: 61003,
    groups: &[61003],
};

impl User {
    /// A user called `name` with these ids and no supplementary groups.
    pub const fn new(name: &'static str, uid: u32, gid: u32) -> User {
        User {
            name,
            uid,
            gid,
            groups: &[],
        }
    }

    /// Makes the calling process this user (real, effective and saved ids,
    /// supplementary groups), dumpable as a login process is, dying with
    /// its parent. Only in a forked, single-threaded child of root.
    pub fn become_now(&self) {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } == self.uid && self.uid != 0 {
            return; // already (a child of this user's)
        }
        let groups: Vec<libc::gid_t> = self.groups.to_vec();
        // SAFETY: setgroups reads `groups.len()` gids from a live vector.
        let r = unsafe { libc::setgroups(groups.len(), groups.as_ptr()) };
        assert_eq!(r, 0, "setgroups: {}", std::io::Error::last_os_error());
        // SAFETY: plain system calls on this process's credentials.
        let r = unsafe { libc::setresgid(self.gid, self.gid, self.gid) };
        assert_eq!(r, 0, "setresgid: {}", std::io::Error::last_os_error());
        // SAFETY: as above.
        let r = unsafe { libc::setresuid(self.uid, self.uid, self.uid) };
        assert_eq!(r, 0, "setresuid: {}", std::io::Error::last_os_error());
        // SAFETY: prctl only sets properties of this process. A change of
        // credentials clears both the dumpable flag and the parent-death
        // signal: set them again.
        unsafe {
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
        }
        // SAFETY: no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, self.uid);
    }
}

/// In a forked child (of the sandbox): becomes `user` for good, then runs
/// `body`; its exit code (e.g. `kids.spawn(|| as_user(u, || ...))`).
pub fn as_user(user: User, body: impl FnOnce() -> i32) -> i32 {
    user.become_now();
    body()
}

/// Forks a child of `kids` that becomes `user` and runs `body` (its exit
/// code is the child's; see [`fork_child`]).
pub fn spawn_as(kids: &mut Kids, user: User, body: impl FnOnce() -> i32) -> Pid {
    kids.spawn(move || as_user(user, body))
}

/// Whether a sandbox can be made and users switched here (root); if not,
/// the test `test` is [`skipped`] (a failure under `SHMSEM_REQUIRE_ALL`).
pub fn can_sandbox(test: &str) -> bool {
    if is_root() {
        return true;
    }
    skipped(&format!(
        "{test}: a sandbox (mount and IPC namespaces) and other uids need root"
    ));
    false
}

/// The write end of the report pipe, in the children of [`in_sandbox`].
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

/// Says `msg` to the test (a line in its output; in a child of
/// [`in_sandbox`], through the report pipe).
pub fn note(msg: &str) {
    let fd = REPORT_FD.load(Ordering::Relaxed);
    if fd < 0 {
        eprintln!("{msg}");
        return;
    }
    let line = format!("{msg}\n");
    // SAFETY: a write of a live buffer to our own descriptor.
    unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
}

fn os_check(r: libc::c_int, what: &str) -> Result<(), String> {
    if r == 0 {
        Ok(())
    } else {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    }
}

/// In a forked child: a mount namespace of its own, private, with a fresh
/// tmpfs on /dev/shm, and an IPC namespace of its own.
fn enter_sandbox() -> Result<(), String> {
    // SAFETY: unshare only changes this (single-threaded) process's
    // namespaces.
    os_check(
        unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC) },
        "unshare(CLONE_NEWNS | CLONE_NEWIPC)",
    )?;
    // SAFETY: NUL-terminated strings; a propagation change of our own
    // namespace's mounts (mount --make-rprivate /).
    os_check(
        unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        },
        "mount --make-rprivate /",
    )?;
    // SAFETY: NUL-terminated strings; a new tmpfs over /dev/shm in our own
    // namespace only.
    os_check(
        unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                c"/dev/shm".as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=1777,size=512m".as_ptr().cast(),
            )
        },
        "mount -t tmpfs tmpfs /dev/shm",
    )?;
    let n = std::fs::read_dir("/dev/shm")
        .map_err(|e| format!("read /dev/shm: {e}"))?
        .count();
    if n != 0 {
        return Err(format!("the fresh /dev/shm has {n} entries"));
    }
    Ok(())
}

/// Runs `body` in a forked sandbox process (see the module), as root, and
/// returns its exit code; what it and its children reported is printed.
/// Fails the test if it dies of a signal or does not end within `limit`
/// (then it is killed, and its children with it).
pub fn in_sandbox(what: &str, limit: Duration, body: impl FnOnce() -> i32) -> i32 {
    let (mut rd, wr) = pipe();
    let (rd_fd, wr_fd) = (rd.as_raw_fd(), wr.as_raw_fd());
    let alarm = limit.as_secs() as u32 + 20;
    let pid = fork_child(ChildNet::alarm_and_parent_death(alarm), || {
        // SAFETY: the child's copy of the read end, used by nothing else.
        unsafe { libc::close(rd_fd) };
        // The write end is inherited by every forked child of this one;
        // close-on-exec (pipe2), so programs they exec do not hold it.
        REPORT_FD.store(wr_fd, Ordering::Relaxed);
        std::panic::set_hook(Box::new(|info| {
            // SAFETY: no preconditions.
            let pid = unsafe { libc::getpid() };
            note(&format!("PANIC in pid {pid}: {info}"));
        }));
        if let Err(e) = enter_sandbox() {
            note(&format!("cannot make a private /dev/shm: {e}"));
            return 3;
        }
        body()
    });
    drop(wr);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = rd.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    let status = try_wait_for(pid, limit);
    if matches!(status, Err(WaitError::TimedOut)) {
        kill_and_reap(pid);
    }
    // The grandchildren die with the child (PR_SET_PDEATHSIG) and close
    // the pipe; a few seconds for that.
    let text = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| "(children still hold the report pipe)".to_string());
    if !text.is_empty() {
        eprint!("{text}");
    }
    match status {
        Ok(WaitStatus::Exited(_, code)) => code,
        Ok(other) => panic!("{what}: {other:?} (its reports are above)"),
        Err(WaitError::TimedOut) => {
            panic!("{what}: still running after {limit:?} (hang; its reports are above)")
        }
        Err(WaitError::Failed(e)) => panic!("{what}: waitpid: {e}"),
    }
}

/// [`in_sandbox`], failing the test unless `body` returns 0 (a panic in
/// it, or a check that returns non-zero, fails it).
pub fn in_sandbox_ok(what: &str, limit: Duration, body: impl FnOnce() -> i32) {
    let code = in_sandbox(what, limit, body);
    assert!(
        code == 0,
        "{what}: ended with {} (its reports are above)",
        describe(code)
    );
}

/// The names in /dev/shm now, sorted.
pub fn shm_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .expect("read /dev/shm")
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// A file `/dev/shm/NAME` of `user`'s, mode `mode`, holding `content`
/// (made as root, then given away).
pub fn file_of(user: User, name: &str, mode: u32, content: &[u8]) -> String {
    let path = format!("/dev/shm/{name}");
    let mut f = File::create(&path).unwrap_or_else(|e| panic!("create {path}: {e}"));
    f.write_all(content).expect("write");
    std::os::unix::fs::fchown(&f, Some(user.uid), Some(user.gid)).expect("fchown");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .expect("chmod");
    path
}
