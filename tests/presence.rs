//! Liveness that another user cannot forge (issue #9): a process's presence
//! and claim bytes are write locks in its uid's presence file
//! (`/dev/shm/shmsem.NS.p.UID`, 0644), which only that uid's processes can
//! write-lock, and checkers count write locks only.
//!
//! Each test runs as root in a forked child with a private mount namespace
//! whose /dev/shm is a fresh tmpfs (nothing reaches the host's), and forks
//! processes that switch to unused raw ids: the victim (61003) and
//! mallory (61004). Mallory locks every byte she can of every file she can
//! open in /dev/shm, over and over (write locks where she may write, read
//! locks elsewhere, around the locks others hold), or squats the victim's
//! presence file before it exists. A victim's process that is SIGKILLed is
//! left a zombie (as a reused pid would be): the kernel gives its undo
//! back at once, and so must shmsem.
//!
//! | test | before (main b51b1e2) |
//! |---|---|
//! | `another_users_locks_keep_no_dead_holder_alive` | fails: mallory's write lock on the dead holder's presence byte (registry, 0666) keeps its undo (value stays 1, semtimedop EAGAIN) |
//! | `another_users_locks_make_no_live_process_dead` | fails: mallory's write locks on the claim bytes keep the victim out of the process table (semop ENOMEM) |
//! | `a_squatted_presence_file_changes_nothing_but_speed` | fails the same way (ENOMEM, mallory's locks on the registry); the squat itself was harmless then: a guard of the presence file |
//!
//! Run: `cargo test --test presence` (as root; skipped otherwise).
// The test's own atomics (a counter in a shared mapping) are not the
// library's.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use shmsem::{Error, Namespace, Op, SemaphoreSet};
use support::*;

const VICTIM: u32 = 61003;
const MALLORY: u32 = 61004;

/// Runs `body` as root in a forked child with a private mount namespace and
/// its own tmpfs on /dev/shm, under a watchdog of `secs` seconds; skipped
/// unless root.
fn in_private_shm(name: &str, secs: u64, body: impl FnOnce() -> i32) {
    if !is_root() {
        eprintln!("{name}: skipped (needs root)");
        return;
    }
    let _serial = serial();
    let _watchdog = Watchdog::start(name, secs + 5);
    let pid = fork_child(ChildNet::alarm_and_parent_death(secs as u32), || {
        // SAFETY: unshare and mount change only this child's mount
        // namespace (the child is single-threaded); the strings are
        // NUL-terminated literals.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return CHECK_FAILED + 40;
            }
            if libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                core::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                core::ptr::null(),
            ) != 0
            {
                return CHECK_FAILED + 41;
            }
            if libc::mount(
                c"tmpfs".as_ptr(),
                c"/dev/shm".as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=1777".as_ptr().cast(),
            ) != 0
            {
                return CHECK_FAILED + 42;
            }
        }
        body()
    });
    let st = wait_for(pid, Duration::from_secs(secs + 2), name);
    assert_eq!(
        st,
        WaitStatus::Exited(pid, OK),
        "{name}: the test's process"
    );
}

/// Becomes `uid` (and gid `uid`, no supplementary groups) for good.
fn become_user(uid: u32) {
    // SAFETY: plain system calls on this process's credentials.
    unsafe {
        assert_eq!(libc::setgroups(0, core::ptr::null()), 0, "setgroups");
        assert_eq!(libc::setresgid(uid, uid, uid), 0, "setresgid");
        assert_eq!(libc::setresuid(uid, uid, uid), 0, "setresuid");
    }
}

/// A set of one semaphore at `value`, owned by the victim, mode 0600:
/// mallory may not open it at all.
fn victims_set(ns: &std::sync::Arc<Namespace>, value: u16) -> SemaphoreSet {
    let set = SemaphoreSet::create_private(ns, 1, 0o600).expect("create");
    set.set_value(0, value).expect("SETVAL");
    set.set_permissions(VICTIM, VICTIM, 0o600)
        .expect("IPC_SET to the victim");
    set
}

/// A victim's process: takes `n` units with SEM_UNDO, says so on `tx`,
/// and sleeps until killed.
fn victim_holding(kids: &mut Kids, set: &SemaphoreSet, n: i16) -> (Pid, std::fs::File) {
    let (rx, mut tx) = pipe();
    let set = set.clone();
    let pid = kids.spawn(move || {
        become_user(VICTIM);
        if let Err(e) = set.op(&[Op::wait(0, n).undo()]) {
            eprintln!("victim: semop(-{n}, SEM_UNDO): {e}");
            return CHECK_FAILED + 1;
        }
        let _ = tx.write_all(b"r");
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    (pid, rx)
}

fn wait_ready(rx: &mut std::fs::File, what: &str) {
    assert!(readable_within(rx, DEADLINE), "{what}: not ready in time");
    let mut b = [0u8; 1];
    assert_eq!(
        rx.read(&mut b).expect("read"),
        1,
        "{what} failed (see stderr)"
    );
}

/// Takes `kind` locks on every byte of `fd` that no other open file
/// description holds a conflicting lock on.
fn lock_gaps(fd: &OwnedFd, kind: i32) {
    let mut cur: i64 = 0;
    for _ in 0..256 {
        let mut fl = flock(kind, cur, 0);
        // SAFETY: fcntl reads (and for GETLK writes) one valid flock.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) } == 0 {
            return;
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) } != 0 {
            return;
        }
        if fl.l_type as i32 == libc::F_UNLCK {
            continue; // let go meanwhile: try the whole rest again
        }
        let (start, len) = (fl.l_start, fl.l_len);
        if start > cur {
            let gap = flock(kind, cur, start - cur);
            // SAFETY: as above.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &gap) };
        }
        if len == 0 {
            return;
        }
        cur = start + len;
    }
}

fn flock(kind: i32, start: i64, len: i64) -> libc::flock {
    // SAFETY: plain data; all-zero is valid.
    let mut fl: libc::flock = unsafe { core::mem::zeroed() };
    fl.l_type = kind as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = start;
    fl.l_len = len;
    fl
}

/// Mallory: for ever, opens every file of /dev/shm she can (read-write if
/// she may, else read-only; never blocking, links followed) and locks every
/// byte she can get, counting her rounds in `rounds`.
fn mallory_locks_everything(rounds: &AtomicU64) -> ! {
    use std::os::unix::fs::OpenOptionsExt;
    become_user(MALLORY);
    let mut open: HashMap<(u64, u64), (OwnedFd, i32)> = HashMap::new();
    loop {
        for e in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = e.path();
            let Ok(md) = std::fs::metadata(&path) else {
                continue;
            };
            let id = (md.dev(), md.ino());
            if let std::collections::hash_map::Entry::Vacant(slot) = open.entry(id) {
                let try_open = |flags| {
                    std::fs::OpenOptions::new()
                        .read(true)
                        .write(flags == libc::O_RDWR)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(&path)
                        .ok()
                };
                if let Some(f) = try_open(libc::O_RDWR) {
                    slot.insert((f.into(), libc::F_WRLCK));
                } else if let Some(f) = try_open(libc::O_RDONLY) {
                    slot.insert((f.into(), libc::F_RDLCK));
                }
            }
        }
        for (fd, kind) in open.values() {
            lock_gaps(fd, *kind);
        }
        rounds.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn spawn_mallory(kids: &mut Kids) -> (Pid, Shared<AtomicU64>) {
    // SAFETY: an all-zero AtomicU64 is 0; it needs no drop.
    let rounds: Shared<AtomicU64> = unsafe { Shared::zeroed() };
    let pid = kids.spawn(|| mallory_locks_everything(&rounds));
    (pid, rounds)
}

/// Waits until mallory has made `n` more rounds (each after every lock she
/// could take).
fn mallory_rounds(rounds: &AtomicU64, n: u64) {
    let from = rounds.load(Ordering::SeqCst);
    poll_until(&format!("{n} more rounds of mallory's locks"), || {
        rounds.load(Ordering::SeqCst) >= from + n
    });
}

/// SIGKILLs `pid` and waits until it is a zombie (not reaped: its pid
/// stays taken, as a reused one would be).
fn kill_leaving_zombie(kids: &Kids, pid: Pid) {
    kids.signal(pid, Signal::SIGKILL);
    poll_until(&format!("process {pid} a zombie"), || {
        process_state(pid) == Some('Z')
    });
}

/// Mallory holds locks on every byte she can get of every file she can
/// open while a victim's process holding units with SEM_UNDO is killed:
/// its units come back as on the kernel, though its pid is still taken
/// (a zombie) and mallory grabbed its presence byte's range the moment it
/// was free.
#[test]
fn another_users_locks_keep_no_dead_holder_alive() {
    in_private_shm("locks_dead_holder", 60, || {
        let ns = Namespace::open("pres").expect("namespace");
        let set = victims_set(&ns, 3);
        let mut kids = Kids::new();
        let (v, mut rx) = victim_holding(&mut kids, &set, 2);
        wait_ready(&mut rx, "the victim");
        assert_eq!(set.value(0), Ok(1), "the victim holds two units");
        let (m, rounds) = spawn_mallory(&mut kids);
        mallory_rounds(&rounds, 3);
        kill_leaving_zombie(&kids, v);
        mallory_rounds(&rounds, 3);
        // The kernel: the units are back at the holder's exit.
        let r = set.op_timeout(&[Op::wait(0, 3)], LONG_DEADLINE);
        assert_eq!(
            r,
            Ok(()),
            "the dead holder's two units (value {:?})",
            set.value(0)
        );
        kids.kill(m, "mallory");
        kids.kill(v, "the victim (reaped)");
        set.remove().expect("IPC_RMID");
        ns.destroy().expect("destroy");
        OK
    });
}

/// Mallory holds locks on every byte she can get of every file she can
/// open, the victim's presence file included (read locks: she may only
/// read it), while the victim's processes hold units with SEM_UNDO, one
/// of them starting under her locks (its claim and presence bytes kept
/// from it). Neither is taken for dead while it lives; each one's units
/// come back when it dies.
#[test]
fn another_users_locks_make_no_live_process_dead() {
    in_private_shm("locks_live_holder", 60, || {
        let ns = Namespace::open("pres").expect("namespace");
        let set = victims_set(&ns, 3);
        let mut kids = Kids::new();
        let (v1, mut rx1) = victim_holding(&mut kids, &set, 1);
        wait_ready(&mut rx1, "the first victim");
        let (m, rounds) = spawn_mallory(&mut kids);
        mallory_rounds(&rounds, 3);
        let (v2, mut rx2) = victim_holding(&mut kids, &set, 1);
        wait_ready(&mut rx2, "the victim starting under mallory's locks");
        assert_eq!(set.value(0), Ok(1), "two units held");
        mallory_rounds(&rounds, 3);
        // A live holder taken for dead would give its unit back within a
        // sweep (50 ms): none comes.
        assert_eq!(
            set.op_timeout(&[Op::wait(0, 2)], Duration::from_millis(500)),
            Err(Error::WouldBlock),
            "units of live holders came back (value {:?})",
            set.value(0)
        );
        assert!(kids.running(v1).is_ok() && kids.running(v2).is_ok());
        kill_leaving_zombie(&kids, v2);
        assert_eq!(
            set.op_timeout(&[Op::wait(0, 2)], LONG_DEADLINE),
            Ok(()),
            "the unit of the victim that started under the locks"
        );
        kill_leaving_zombie(&kids, v1);
        assert_eq!(
            set.op_timeout(&[Op::wait(0, 1)], LONG_DEADLINE),
            Ok(()),
            "the first victim's unit"
        );
        kids.kill(m, "mallory");
        kids.kill(v1, "victim 1 (reaped)");
        kids.kill(v2, "victim 2 (reaped)");
        set.remove().expect("IPC_RMID");
        ns.destroy().expect("destroy");
        OK
    });
}

/// What mallory puts where the victim's presence file goes.
#[derive(Clone, Copy, Debug)]
enum Squat {
    Garbage,
    Fifo,
    SymlinkToHers,
    SymlinkToNull,
    WorldWritable,
}

fn squat(kind: Squat, path: &str) {
    use std::os::unix::fs::PermissionsExt;
    become_user(MALLORY);
    let hers = "/dev/shm/mallory.own";
    match kind {
        Squat::Garbage => std::fs::write(path, [0xa5u8; 4096]).expect("garbage"),
        Squat::Fifo => nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o666))
            .expect("mkfifo"),
        Squat::SymlinkToHers => {
            std::fs::write(hers, b"").expect("her file");
            std::fs::set_permissions(hers, std::fs::Permissions::from_mode(0o666)).expect("chmod");
            std::os::unix::fs::symlink(hers, path).expect("symlink");
        }
        Squat::SymlinkToNull => std::os::unix::fs::symlink("/dev/null", path).expect("symlink"),
        Squat::WorldWritable => {
            std::fs::write(path, b"").expect("file");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        }
    }
}

/// Mallory creates the victim's presence file first — garbage, a FIFO, a
/// symbolic link to a file of hers or to /dev/null, a file of hers that
/// anyone may write — and holds locks on everything she can. The victim's
/// processes neither hang nor fail; a live one stays alive and a dead
/// one's units come back (liveness from /proc: only slower).
#[test]
fn a_squatted_presence_file_changes_nothing_but_speed() {
    in_private_shm("squatted_presence", 120, || {
        for kind in [
            Squat::Garbage,
            Squat::Fifo,
            Squat::SymlinkToHers,
            Squat::SymlinkToNull,
            Squat::WorldWritable,
        ] {
            let name = format!("sq{}", kind as u32);
            let path = format!("/dev/shm/shmsem.{name}.p.{VICTIM}");
            let mut kids = Kids::new();
            let s = kids.spawn(move || {
                squat(kind, &path);
                OK
            });
            kids.expect_exit(s, OK, &format!("{kind:?}: mallory's squat"));
            let ns = Namespace::open(&name).expect("namespace");
            let set = victims_set(&ns, 3);
            let (m, rounds) = spawn_mallory(&mut kids);
            mallory_rounds(&rounds, 2);
            let (v, mut rx) = victim_holding(&mut kids, &set, 2);
            wait_ready(&mut rx, &format!("{kind:?}: the victim"));
            mallory_rounds(&rounds, 2);
            assert_eq!(
                set.op_timeout(&[Op::wait(0, 3)], Duration::from_millis(300)),
                Err(Error::WouldBlock),
                "{kind:?}: a live holder's units came back (value {:?})",
                set.value(0)
            );
            kill_leaving_zombie(&kids, v);
            assert_eq!(
                set.op_timeout(&[Op::wait(0, 3)], LONG_DEADLINE),
                Ok(()),
                "{kind:?}: the dead holder's units (value {:?})",
                set.value(0)
            );
            kids.kill(m, "mallory");
            kids.kill(v, "the victim (reaped)");
            set.remove().expect("IPC_RMID");
            ns.destroy().expect("destroy");
        }
        OK
    });
}
