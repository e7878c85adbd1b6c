//! Names another user cannot forge (issue #9, the trust model): whatever
//! another user (the attacker) puts in /dev/shm under the names a victim's
//! namespace uses, or writes into what she may write, the victim gets its
//! own set or a clear error, never a hang, never a mapping of a file that
//! is not its own, never another user's set under its key; and nothing the
//! attacker does makes the victim's processes (or root's gc) unlink a name.
//!
//! Each test runs in a child in a private mount namespace with its own
//! tmpfs on /dev/shm (nothing reaches the machine's /dev/shm), as root,
//! which forks the users: raw uids without accounts (setresuid), so no
//! user is created. Without root the tests say so and check nothing.
//!
//! The attacks are partly layout-agnostic, so that the same file run
//! against the registry layout (main before issue #9) shows them work
//! there: the attacker writes into every shmsem file she can open for
//! writing (the registry was mode 0666), and squats names of both layouts.
//!
//! Run: `cargo test --test trust_names` (as root).
// Test code: raw system calls and std atomics are the harness's own.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod support;

use std::os::unix::fs::{FileExt, MetadataExt};

use nix::sys::wait::WaitStatus;
use shmsem::layout::{
    SetHeader, GETVAL, IPC_CREAT, IPC_EXCL, IPC_INFO, IPC_PRIVATE, IPC_STAT, SEM_STAT_ANY, SETVAL,
};
use shmsem::sysv::{SemctlArg, SemidDs, Seminfo};
use shmsem::{Error, Namespace};
use support::{is_root, Kids, OK};

/// The attacker, the victim and a third user: raw uids nobody uses.
const ATTACKER: u32 = 61001;
const VICTIM: u32 = 61002;
const BYSTANDER: u32 = 61003;
/// Exit code of the mount child when it cannot make its private /dev/shm.
const SKIPPED: i32 = 77;

/// Runs `body` in a child with its own mount namespace and a fresh tmpfs
/// on /dev/shm (device nodes allowed, so that a device there is real);
/// fails the test unless it exits OK. Needs root.
fn in_private_shm(what: &str, body: fn() -> i32) {
    if !is_root() {
        eprintln!("{what}: skipped: needs root (to mount a private /dev/shm and be other users)");
        return;
    }
    let mut kids = Kids::long();
    let child = kids.spawn(move || {
        // SAFETY: unshare(CLONE_NEWNS) changes only this (forked,
        // single-threaded) process's mount namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return SKIPPED;
        }
        // SAFETY: valid NUL-terminated strings; every mount of the new
        // namespace becomes private, so nothing below reaches the host.
        let r = unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                core::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                core::ptr::null(),
            )
        };
        assert_eq!(r, 0, "make / private: {}", std::io::Error::last_os_error());
        // SAFETY: as above; a tmpfs over /dev/shm in this namespace only.
        let r = unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/dev/shm".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"size=64m,mode=1777".as_ptr().cast(),
            )
        };
        assert_eq!(r, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        body()
    });
    match kids.wait(child, what) {
        WaitStatus::Exited(_, OK) => {}
        WaitStatus::Exited(_, SKIPPED) => eprintln!("{what}: skipped: no private mount namespace"),
        other => panic!("{what}: {other:?} (see the child's messages above)"),
    }
}

/// Runs `body` in a fresh child as `uid` (gid the same, no supplementary
/// groups; `None`: as root); its exit code. A hang past the deadline fails
/// the test (the harness's watchdog), a panic is PANICKED.
fn as_user(uid: Option<u32>, what: &str, body: impl FnOnce() -> i32) -> i32 {
    let mut kids = Kids::new();
    let pid = kids.spawn(move || {
        if let Some(uid) = uid {
            // SAFETY: plain credential calls in a single-threaded child.
            unsafe {
                assert_eq!(libc::setgroups(0, core::ptr::null()), 0, "setgroups");
                assert_eq!(libc::setresgid(uid, uid, uid), 0, "setresgid");
                assert_eq!(libc::setresuid(uid, uid, uid), 0, "setresuid");
            }
        }
        body()
    });
    match kids.wait(pid, what) {
        WaitStatus::Exited(_, c) => c,
        other => panic!("{what}: {other:?}"),
    }
}

fn must(uid: Option<u32>, what: &str, body: impl FnOnce() -> i32) {
    assert_eq!(as_user(uid, what, body), OK, "{what}");
}

/// The names in /dev/shm of namespace `ns` (its limits file and every
/// `shmsem.NS.` name), with their `lstat`.
fn ns_names(ns: &str) -> Vec<(String, std::fs::Metadata)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/dev/shm")
        .expect("read /dev/shm")
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if n == format!("shmsem.{ns}") || n.starts_with(&format!("shmsem.{ns}.")) {
            if let Ok(m) = std::fs::symlink_metadata(format!("/dev/shm/{n}")) {
                v.push((n, m));
            }
        }
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The victim's set files of namespace `ns`: its regular files there
/// other than the limits and hints files (either layout).
fn set_files_of(ns: &str, uid: u32) -> Vec<String> {
    ns_names(ns)
        .into_iter()
        .filter(|(n, m)| {
            m.file_type().is_file() && m.uid() == uid && n.starts_with(&format!("shmsem.{ns}.s."))
        })
        .map(|(n, _)| n)
        .collect()
}

/// In the attacker: rewrites every 4-aligned little-endian word of every
/// shmsem file of `ns` she can open for writing (and does not own), from
/// byte `from` on: `f(offset, old)` gives the new value, `None` keeps it.
fn scribble(ns: &str, from: u64, f: impl Fn(u64, u32) -> Option<u32>) {
    for (n, m) in ns_names(ns) {
        if !m.file_type().is_file() || m.uid() == ATTACKER {
            continue;
        }
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/dev/shm/{n}"))
        else {
            continue;
        };
        let len = m.len();
        let mut off = from;
        while off + 4 <= len {
            let mut b = [0u8; 4];
            if file.read_exact_at(&mut b, off).is_err() {
                break;
            }
            if let Some(v) = f(off, u32::from_le_bytes(b)) {
                let _ = file.write_all_at(&v.to_le_bytes(), off);
            }
            off += 4;
        }
    }
}

/// In a process: every mapping of a file under /dev/shm is of a regular
/// file owned by `uid` (never one another user made, never a device).
fn maps_only_own_files(uid: u32) {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    for line in maps.lines() {
        let Some(at) = line.find("/dev/shm/") else {
            continue;
        };
        let path = line[at..].trim_end_matches(" (deleted)");
        if let Ok(m) = std::fs::symlink_metadata(path) {
            assert!(
                m.file_type().is_file() && m.uid() == uid,
                "mapped {path}: {:?} of uid {}",
                m.file_type(),
                m.uid()
            );
        }
    }
}

fn setval(ns: &Namespace, id: i32, v: i32) {
    ns.semctl(id, 0, SETVAL, SemctlArg::Val(v))
        .unwrap_or_else(|e| panic!("SETVAL {id}: {e}"));
}

fn getval(ns: &Namespace, id: i32) -> shmsem::Result<i32> {
    ns.semctl(id, 0, GETVAL, SemctlArg::None)
}

fn stat_uid_cuid(ns: &Namespace, id: i32) -> shmsem::Result<(u32, u32)> {
    let mut ds = SemidDs::default();
    ns.semctl(id, 0, IPC_STAT, SemctlArg::StatOut(&mut ds))?;
    Ok((ds.perm.uid, ds.perm.cuid))
}

fn symlink(target: &str, name: &str) {
    let _ = std::os::unix::fs::symlink(target, format!("/dev/shm/{name}"));
}

fn fifo(name: &str) {
    let _ = nix::unistd::mkfifo(
        format!("/dev/shm/{name}").as_str(),
        nix::sys::stat::Mode::from_bits_truncate(0o666),
    );
}

fn garbage(name: &str, bytes: &[u8]) {
    let path = format!("/dev/shm/{name}");
    if std::fs::symlink_metadata(&path).is_err() {
        let _ = std::fs::write(&path, bytes);
    }
}

/// (As root, for the attacker: no user may mknod.) A character device
/// like /dev/zero named `name`, owned by the attacker.
fn device(name: &str) {
    let path = format!("/dev/shm/{name}");
    let c = std::ffi::CString::new(path.clone()).unwrap();
    // SAFETY: valid NUL-terminated path; makes one device node.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 5)) };
    assert_eq!(r, 0, "mknod {path}: {}", std::io::Error::last_os_error());
    std::os::unix::fs::lchown(&path, Some(ATTACKER), Some(ATTACKER)).expect("lchown");
}

/// Names of both layouts a victim's semget could use in `ns`: set files
/// (`s.IDX.SEQ`, and the registry layout's `IDX.SEQ`) of indices `idx`.
fn set_names(ns: &str, idx: u32) -> Vec<String> {
    (0..3)
        .flat_map(|seq| {
            [
                format!("shmsem.{ns}.s.{idx}.{seq}"),
                format!("shmsem.{ns}.{idx}.{seq}"),
            ]
        })
        .collect()
}

/// Another uid pre-creates every name the victim's semget would use —
/// its set files' names as symbolic links (to the victim's own set, to
/// /dev/zero), FIFOs, devices and garbage; index and key claims naming the
/// victim's set, nothing, or garbage; other namespaces' limits files as a
/// link, a FIFO, garbage; the cursor hint pointing at the squatted
/// indices — and the victim still gets its own sets with a fresh key or
/// none, a clear error for a key whose name she holds, and a clear error
/// for a namespace whose limits file she made; no hang, and nothing mapped
/// but the victim's own files. (On the registry layout the squatted set
/// names make the victim's semget(IPC_CREAT) fail with EPERM.)
#[test]
fn squatted_names_give_a_clear_error_or_the_victims_own_set() {
    in_private_shm("squatted names", || {
        let ns = "sq";
        must(Some(VICTIM), "the victim's first set", || {
            let n = Namespace::open(ns).expect("open");
            let id = n.semget(0x1111, 1, IPC_CREAT | 0o600).expect("create");
            setval(&n, id, 5);
            OK
        });
        let mine = set_files_of(ns, VICTIM);
        assert_eq!(mine.len(), 1, "{mine:?}");
        let victim_file = mine[0].clone();
        for idx in 41..44 {
            device(&format!("shmsem.{ns}.s.{idx}.0"));
            device(&format!("shmsem.{ns}.{idx}.0"));
        }
        device(&format!("shmsem.{ns}.k.00006666"));
        must(Some(ATTACKER), "the attacker squats", || {
            for idx in 0..41 {
                for (i, name) in set_names(ns, idx).into_iter().enumerate() {
                    match (idx as usize + i) % 5 {
                        0 => symlink(&format!("/dev/shm/{victim_file}"), &name),
                        1 => symlink(&victim_file, &name),
                        2 => fifo(&name),
                        3 => garbage(&name, &[0xa5; 4096]),
                        _ => symlink("/dev/zero", &name),
                    }
                }
                let claim = format!("shmsem.{ns}.i.{idx}");
                match idx % 4 {
                    0 => symlink(&victim_file, &claim),
                    1 => symlink(&format!("shmsem.{ns}.s.{idx}.9"), &claim),
                    2 => garbage(&claim, b"mine"),
                    _ => fifo(&claim),
                }
            }
            symlink(&victim_file, &format!("shmsem.{ns}.k.00002222"));
            fifo(&format!("shmsem.{ns}.k.00003333"));
            garbage(&format!("shmsem.{ns}.k.00004444"), &[0; 64]);
            symlink(&format!("/dev/shm/{victim_file}"), "shmsem.sq2");
            fifo("shmsem.sq3");
            garbage("shmsem.sq4", &[0xff; 64]);
            symlink("/dev/zero", "shmsem.sq5");
            // The cursor hint (anyone may write it): back to the start.
            scribble(ns, 0, |_, _| Some(0));
            OK
        });
        must(Some(VICTIM), "the victim after the squat", || {
            let n = Namespace::open(ns).expect("the victim's namespace still opens");
            let id = n
                .semget(0x5555, 3, IPC_CREAT | IPC_EXCL | 0o600)
                .expect("a new keyed set despite the squatted names");
            setval(&n, id, 4);
            assert_eq!(getval(&n, id), Ok(4));
            assert_eq!(stat_uid_cuid(&n, id), Ok((VICTIM, VICTIM)));
            let p = n
                .semget(IPC_PRIVATE, 2, 0o600)
                .expect("a private set despite the squatted names");
            setval(&n, p, 3);
            assert_eq!(getval(&n, p), Ok(3));
            assert!(n.semget(IPC_PRIVATE, 1, 0o600).is_ok(), "and another");
            // Keys whose names the attacker holds: a clear error (or, were
            // one made, the victim's own set), never the first set.
            let first = n.semget(0x1111, 0, 0).expect("the first set");
            for key in [0x2222, 0x3333, 0x4444, 0x6666] {
                assert_eq!(n.semget(key, 0, 0), Err(Error::NotFound), "key {key:#x}");
                match n.semget(key, 1, IPC_CREAT | 0o600) {
                    Err(e) => assert!(
                        matches!(
                            e,
                            Error::PermissionDenied
                                | Error::NoSpace
                                | Error::Corrupt
                                | Error::NotPermitted
                        ),
                        "key {key:#x}: {e}"
                    ),
                    Ok(id) => {
                        assert_ne!(id, first, "key {key:#x} resolved to the first set");
                        assert_eq!(stat_uid_cuid(&n, id), Ok((VICTIM, VICTIM)));
                    }
                }
            }
            assert_eq!(getval(&n, first), Ok(5), "the first set is untouched");
            // Namespaces whose limits file the attacker made.
            for other in ["sq2", "sq3", "sq4", "sq5"] {
                assert_eq!(
                    Namespace::open(other).map(|_| ()),
                    Err(Error::Corrupt),
                    "namespace {other}"
                );
            }
            maps_only_own_files(VICTIM);
            OK
        });
        OK
    });
}

/// Another uid's forged claims naming the victim's set — a key link and
/// index links to its file; the key's bytes swapped in every file she may
/// write; a set of her own whose header says the victim made it — never
/// resolve: the victim, a bystander and root get ENOENT for the forged key
/// and EINVAL for the forged index, the real key and index still work,
/// and the attacker's forged header is not believed. (On the registry
/// layout the swapped key gives the victim's set to semget of the forged
/// key, and the forged header is returned as the victim's.)
#[test]
fn forged_claims_never_resolve_to_the_victims_set() {
    in_private_shm("forged claims", || {
        let ns = "fk";
        must(Some(VICTIM), "the victim's sets", || {
            let n = Namespace::open(ns).expect("open");
            let v = n.semget(0x1111, 1, IPC_CREAT | 0o600).expect("create");
            setval(&n, v, 5);
            let w = n.semget(0x1212, 1, IPC_CREAT | 0o600).expect("create");
            setval(&n, w, 9);
            OK
        });
        let theirs = set_files_of(ns, VICTIM);
        assert_eq!(theirs.len(), 2, "{theirs:?}");
        must(Some(ATTACKER), "the attacker forges", || {
            for (i, f) in theirs.iter().enumerate() {
                symlink(f, &format!("shmsem.{ns}.k.0000222{i}"));
                symlink(f, &format!("shmsem.{ns}.i.{}", 50 + i));
                symlink(
                    &format!("/dev/shm/{f}"),
                    &format!("shmsem.{ns}.i.{}", 52 + i),
                );
            }
            scribble(ns, 0, |_, w| match w {
                0x1111 => Some(0x2220),
                0x1212 => Some(0x2221),
                _ => None,
            });
            // A set of her own whose header says the victim owns and made it.
            let n = Namespace::open(ns).expect("the attacker opens the namespace");
            n.semget(0x7777, 1, IPC_CREAT | 0o600).expect("her own set");
            for f in set_files_of(ns, ATTACKER) {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(format!("/dev/shm/{f}"))
                    .expect("her own file");
                for off in [
                    std::mem::offset_of!(SetHeader, uid),
                    std::mem::offset_of!(SetHeader, cuid),
                ] {
                    file.write_all_at(&VICTIM.to_le_bytes(), off as u64)
                        .expect("forge the header");
                }
            }
            OK
        });
        let check = || {
            let n = Namespace::open(ns).expect("open");
            let v = n.semget(0x1111, 0, 0).expect("the real key");
            let w = n.semget(0x1212, 0, 0).expect("the other real key");
            for key in [0x2220, 0x2221] {
                assert_eq!(
                    n.semget(key, 0, 0),
                    Err(Error::NotFound),
                    "forged key {key:#x}"
                );
            }
            for idx in 50..54 {
                let mut ds = SemidDs::default();
                assert_eq!(
                    n.semctl(idx, 0, SEM_STAT_ANY, SemctlArg::StatOut(&mut ds)),
                    Err(Error::Invalid),
                    "forged index {idx}"
                );
            }
            let mut info = Seminfo::default();
            let highest = n
                .semctl(0, 0, IPC_INFO, SemctlArg::Info(&mut info))
                .expect("IPC_INFO");
            assert!(highest < 50, "highest index {highest}");
            // The attacker's own set, if it is found at all, is hers.
            if let Ok(id) = n.semget(0x7777, 0, 0) {
                if let Ok((_, cuid)) = stat_uid_cuid(&n, id) {
                    assert_eq!(cuid, ATTACKER, "a forged header was believed");
                }
            }
            (n, v, w)
        };
        must(Some(VICTIM), "the victim", || {
            let (n, v, w) = check();
            assert_eq!(getval(&n, v), Ok(5));
            assert_eq!(getval(&n, w), Ok(9));
            maps_only_own_files(VICTIM);
            OK
        });
        must(Some(BYSTANDER), "a bystander", || {
            let (n, _, w) = check();
            assert_eq!(getval(&n, w), Err(Error::PermissionDenied), "a 0600 set");
            OK
        });
        must(None, "root", || {
            check();
            OK
        });
        OK
    });
}

/// Another uid cannot make the victim unlink anything: she writes into
/// every file she may write (the hints; a set of the victim's she may
/// write, marking it removed and changing its key; on the registry layout,
/// the registry's entries), forges the cursor onto the victim's indices,
/// and leaves dangling and bogus claims and garbage set files; then the
/// victim creates sets, looks keys up and runs gc, and root runs gc: every
/// name the victim had is still there, the same file. (On the registry
/// layout the victim's own semget unlinks its sets.)
#[test]
fn another_user_cannot_make_the_victim_unlink_anything() {
    in_private_shm("unlink", || {
        let ns = "ul";
        must(Some(VICTIM), "the victim's sets", || {
            let n = Namespace::open(ns).expect("open");
            let a = n.semget(0x1111, 1, IPC_CREAT | 0o600).expect("create");
            setval(&n, a, 5);
            let b = n.semget(IPC_PRIVATE, 1, 0o600).expect("create");
            setval(&n, b, 6);
            let c = n.semget(0x3333, 1, IPC_CREAT | 0o666).expect("create");
            setval(&n, c, 7);
            OK
        });
        let before: Vec<(String, u64)> = ns_names(ns)
            .into_iter()
            .filter(|(_, m)| m.uid() == VICTIM)
            .map(|(n, m)| (n, m.ino()))
            .collect();
        let victim_file = set_files_of(ns, VICTIM)[0].clone();
        must(Some(ATTACKER), "the attacker", || {
            // Every word she may write past the first 64 bytes: 1 (on the
            // registry layout, every entry CREATING with sequence 0).
            scribble(ns, 64, |_, _| Some(1));
            // The 0666 set: removed, and another key, as far as its header
            // says (she may write it).
            scribble(ns, 0, |off, w| {
                if off == std::mem::offset_of!(SetHeader, removed) as u64 && w == 0 {
                    Some(1)
                } else if off == std::mem::offset_of!(SetHeader, key) as u64 && w == 0x3333 {
                    Some(0x9999)
                } else {
                    None
                }
            });
            // The hints (the first bytes of a file anyone may write): the
            // cursor onto index 0, sequence 0, where the victim's sets are.
            scribble(ns, 0, |off, w| {
                (off < 64 && w != 0 && off >= 8).then_some(0)
            });
            symlink(&victim_file, &format!("shmsem.{ns}.k.00004444"));
            symlink(
                &format!("shmsem.{ns}.s.9.9"),
                &format!("shmsem.{ns}.k.00005555"),
            );
            symlink(&victim_file, &format!("shmsem.{ns}.i.60"));
            symlink(&format!("shmsem.{ns}.s.61.0"), &format!("shmsem.{ns}.i.61"));
            garbage(&format!("shmsem.{ns}.s.62.0"), &[1; 100]);
            garbage(&format!("shmsem.{ns}.s.1.0"), &[1; 100]);
            OK
        });
        must(Some(VICTIM), "the victim's calls", || {
            let n = Namespace::open(ns).expect("open");
            for _ in 0..3 {
                let p = n.semget(IPC_PRIVATE, 1, 0o600).expect("a private set");
                setval(&n, p, 1);
            }
            let k = n.semget(0x6666, 1, IPC_CREAT | 0o600).expect("a keyed set");
            setval(&n, k, 2);
            for key in [0x1111, 0x3333, 0x4444, 0x5555, 0x9999] {
                let _ = n.semget(key, 0, 0);
                let _ = n.semget(key, 1, IPC_CREAT | 0o600);
            }
            n.gc().expect("gc");
            let a = n.semget(0x1111, 0, 0).expect("the first set");
            assert_eq!(getval(&n, a), Ok(5));
            OK
        });
        must(None, "root's gc", || {
            let n = Namespace::open(ns).expect("open");
            n.gc().expect("gc");
            OK
        });
        let after: std::collections::HashMap<String, u64> = ns_names(ns)
            .into_iter()
            .map(|(n, m)| (n, m.ino()))
            .collect();
        for (name, ino) in &before {
            assert_eq!(
                after.get(name),
                Some(ino),
                "the victim's {name} was unlinked or replaced"
            );
        }
        OK
    });
}
