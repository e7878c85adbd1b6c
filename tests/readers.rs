//! Readers: a class that a set's mode gives `r--` gets a read-only mapping,
//! enforced by the OS, and every read the kernel gives it (issue #9,
//! tracker 13: "`r--` is read-only, enforced by the OS").
//!
//! Each test runs in a sandbox (tests/support/users.rs: private mount and
//! IPC namespaces, its own tmpfs on /dev/shm) where a victim (uid 61001,
//! gid 61001) makes a set with shmsem and the same set on the kernel, and a
//! reader of another uid — the other class under mode 0644, the group
//! class (same gid) under mode 0640 — tries the segment's file directly
//! (open for writing, truncate, a writable mmap: EACCES from the OS), then
//! the API on both implementations (every read, alters, waits for zero),
//! whose answers must be the kernel's; the segment's bytes must be the same
//! before and after the reader (no process-table entry, no queue slot, no
//! lock, no sempid). A second reader waits for zero and is interrupted
//! (EINTR), woken by the victim's SETVAL 0, and told of the removal
//! (EIDRM). Skipped unless root.
//!
//! Run: `cargo test --test readers` (as root).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "differential/harness.rs"]
#[allow(dead_code, unused_imports)]
mod harness;
mod support;

use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use harness::{Arg, Kernel, SemApi, Shm, KERNEL};
use shmsem::sysv::{
    Sembuf, SetId, Timespec, GETALL, GETNCNT, GETPID, GETVAL, GETZCNT, IPC_CREAT, IPC_EXCL,
    IPC_NOWAIT, IPC_RMID, IPC_SET, IPC_STAT, SEM_STAT, SEM_STAT_ANY, SEM_UNDO, SETALL, SETVAL,
};
use shmsem::Namespace;
use support::*;

const VICTIM: User = User::new("victim", 61001, 61001);
/// The other class (another uid and gid).
const OTHER: User = User::new("other", 61002, 61002);
/// The group class (another uid, the victim's gid).
const GROUP: User = User::new("group", 61003, 61001);
const KEY: i32 = 0x5e_ad_e4;
const NS: &str = "readers";
const NSEMS: usize = 3;
const UNSET: i32 = i32::MIN;

/// What the sandbox and its children share.
struct Ctl {
    /// shmsem's id and the kernel's.
    id: AtomicI32,
    kid: AtomicI32,
    /// The victim has made the sets.
    ready: AtomicU32,
    /// The victim may exit.
    done: AtomicU32,
    /// The waiting reader's stage (it sets it before each wait) and what
    /// the sandbox lets it start.
    stage: AtomicU32,
    go: AtomicU32,
    /// Each stage's result: 0 or an errno.
    results: [AtomicI32; 4],
}

fn ctl() -> Shared<Ctl> {
    // SAFETY: all-zero atomics are valid; nothing to drop.
    let c: Shared<Ctl> = unsafe { Shared::zeroed() };
    for r in &c.results {
        r.store(UNSET, Ordering::Relaxed);
    }
    c
}

fn poll_flag(what: &str, f: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > Duration::from_secs(30) {
            note(&format!("timed out waiting for {what}"));
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

fn sb(num: u16, op: i16, flg: i32) -> Sembuf {
    Sembuf::new(num, op, flg as i16)
}

/// The victim: both sets, values [5, 0, 2] and then an undo-held -1 on
/// semaphore 2 (so that it has a process-table entry and an adjustment),
/// then it stays until told to go.
fn victim(c: &Ctl, mode: i32) -> i32 {
    let ns = Namespace::open(NS).expect("open the namespace");
    let shm = Shm { ns };
    let flags = IPC_CREAT | IPC_EXCL | mode;
    let (id, kid) = (
        shm.semget(KEY, NSEMS as i32, flags).expect("shmsem semget"),
        KERNEL
            .semget(KEY, NSEMS as i32, flags)
            .expect("kernel semget"),
    );
    for (api, id) in [(&shm as &dyn SemApi, id), (&KERNEL, kid)] {
        api.semctl(id, 0, SETALL, &Arg::SetAll(vec![5, 0, 2]))
            .expect("SETALL");
        api.semop(id, &[sb(2, -1, SEM_UNDO)]).expect("semop");
    }
    c.id.store(id, Ordering::Relaxed);
    c.kid.store(kid, Ordering::Relaxed);
    c.ready.store(1, Ordering::Release);
    if !poll_flag("the end", || c.done.load(Ordering::Acquire) != 0) {
        return CHECK_FAILED;
    }
    0
}

/// One action of the victim's (in a new process of the victim's uid), on
/// both implementations.
fn victim_act(c: &Ctl, cmd: i32, val: i32) -> i32 {
    let shm = Shm {
        ns: Namespace::open(NS).expect("open the namespace"),
    };
    let (id, kid) = (c.id.load(Ordering::Relaxed), c.kid.load(Ordering::Relaxed));
    for (api, id) in [(&shm as &dyn SemApi, id), (&KERNEL, kid)] {
        let arg = if cmd == SETVAL {
            Arg::Val(val)
        } else {
            Arg::None
        };
        if let Err(e) = api.semctl(id, 0, cmd, &arg) {
            note(&format!("victim: semctl({cmd}) = {}", errno_name(e)));
            return CHECK_FAILED;
        }
    }
    0
}

/// The segment's file: the regular file of the victim's that starts with
/// the set magic.
fn segment_path() -> String {
    for e in std::fs::read_dir("/dev/shm")
        .expect("read /dev/shm")
        .flatten()
    {
        let p = e.path();
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if !md.file_type().is_file() || md.uid() != VICTIM.uid {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap_or_default();
        if bytes.len() >= 8 && bytes[..8] == shmsem::layout::SET_MAGIC.to_ne_bytes() {
            return p.to_string_lossy().into_owned();
        }
    }
    panic!("no set segment in /dev/shm");
}

fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// What the OS lets the reader do to the file itself.
fn file_checks(path: &str, want_mode: u32) -> Vec<String> {
    let mut bad = Vec::new();
    let mode = std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
    if mode != want_mode {
        bad.push(format!("file mode {mode:o}, want {want_mode:o}"));
    }
    let open = |w: bool, r: bool| {
        std::fs::OpenOptions::new()
            .read(r)
            .write(w)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    for (what, e) in [
        ("open O_RDWR", errno_of(open(true, true))),
        ("open O_WRONLY", errno_of(open(true, false))),
    ] {
        if e != libc::EACCES {
            bad.push(format!("{what}: {}, want EACCES", errno_name(e)));
        }
    }
    let f = open(false, true).expect("open O_RDONLY");
    let len = f.metadata().expect("fstat").len() as usize;
    match SharedMap::of_fd(&f, len, true) {
        Ok(_) => bad.push("a PROT_WRITE shared mapping succeeded".into()),
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
        Err(e) => bad.push(format!("PROT_WRITE mmap: {e}, want EACCES")),
    }
    match SharedMap::of_fd(&f, len, false) {
        Ok(m) => {
            // SAFETY: mprotect of a mapping we own, which stays mapped.
            let r = unsafe {
                libc::mprotect(
                    m.at::<u8>(0) as *const u8 as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EACCES) {
                bad.push(
                    "mprotect(PROT_WRITE) of the read-only mapping did not fail EACCES".into(),
                );
            }
        }
        Err(e) => bad.push(format!("PROT_READ mmap: {e}")),
    }
    // SAFETY: ftruncate on our own descriptor (O_RDONLY: must fail).
    if unsafe { libc::ftruncate(f.as_raw_fd(), 0) } == 0 {
        bad.push("ftruncate of the O_RDONLY descriptor succeeded".into());
    }
    // Last: where it succeeds, the set is destroyed.
    let p = std::ffi::CString::new(path).unwrap();
    // SAFETY: a valid C string; truncate(2) takes nothing else.
    if unsafe { libc::truncate(p.as_ptr(), 0) } == 0 {
        bad.push("truncate(path, 0) succeeded: the victim's set is gone".into());
    } else if std::io::Error::last_os_error().raw_os_error() != Some(libc::EACCES) {
        bad.push(format!(
            "truncate: {}, want EACCES",
            std::io::Error::last_os_error()
        ));
    }
    bad
}

/// The reader's calls on one implementation, each answer as a line (ids and
/// exact times left out). `id` is the set's id there, `index` its index.
fn answers(api: &dyn SemApi, id: i32, index: i32) -> Vec<String> {
    let mut out = Vec::new();
    let mut say = |what: String, r: Result<String, i32>| {
        out.push(match r {
            Ok(v) => format!("{what} = {v}"),
            Err(e) => format!("{what} = {}", errno_name(e)),
        })
    };
    for flg in [
        0,
        0o444,
        0o400,
        0o040,
        0o004,
        0o666,
        0o222,
        IPC_CREAT,
        IPC_CREAT | 0o444,
    ] {
        say(
            format!("semget(K, 0, {flg:o})"),
            api.semget(KEY, 0, flg).map(|got| (got == id).to_string()),
        );
    }
    let stat = |ds: &shmsem::sysv::SemidDs| {
        let p = ds.perm;
        format!(
            "key {:x} uid {} gid {} cuid {} cgid {} mode {:o} nsems {} otime>0 {} ctime>0 {}",
            p.key,
            p.uid,
            p.gid,
            p.cuid,
            p.cgid,
            p.mode,
            ds.nsems,
            ds.otime > 0,
            ds.ctime > 0
        )
    };
    // Reads first: the kernel's own wait-for-zero sets sempid and otime
    // (shmsem's reader does not: a README difference).
    for cmd in [GETVAL, GETPID, GETNCNT, GETZCNT] {
        for n in 0..=NSEMS as i32 {
            say(
                format!("semctl({n}, cmd {cmd})"),
                api.semctl(id, n, cmd, &Arg::None)
                    .map(|o| o.ret.to_string()),
            );
        }
    }
    say(
        "GETALL".into(),
        api.semctl(id, 0, GETALL, &Arg::GetAll(NSEMS))
            .map(|o| format!("{:?}", o.all)),
    );
    say(
        "IPC_STAT".into(),
        api.semctl(id, 0, IPC_STAT, &Arg::Stat)
            .map(|o| stat(&o.stat.unwrap())),
    );
    for cmd in [SEM_STAT, SEM_STAT_ANY] {
        say(
            format!("SEM_STAT cmd {cmd}"),
            api.semctl(index, 0, cmd, &Arg::Stat)
                .map(|o| format!("{} {}", o.ret == id, stat(&o.stat.unwrap()))),
        );
    }
    // Alters, and waits that do not block (or time out).
    let ms = |n: i64| Timespec {
        tv_sec: 0,
        tv_nsec: n * 1_000_000,
    };
    let ops: &[(&str, Vec<Sembuf>, Option<Timespec>)] = &[
        ("P", vec![sb(0, -1, IPC_NOWAIT)], None),
        ("V", vec![sb(1, 1, 0)], None),
        ("V undo", vec![sb(1, 1, SEM_UNDO)], None),
        ("zero on 0 now", vec![sb(1, 0, 0)], None),
        ("zero undo", vec![sb(1, 0, SEM_UNDO)], None),
        ("zero on 5, nowait", vec![sb(0, 0, IPC_NOWAIT)], None),
        (
            "two zeros, nowait second",
            vec![sb(1, 0, 0), sb(0, 0, IPC_NOWAIT)],
            None,
        ),
        ("zero on 5, 50 ms", vec![sb(0, 0, 0)], Some(ms(50))),
        (
            "zeros on 1 and 5, 20 ms",
            vec![sb(1, 0, 0), sb(2, 0, 0)],
            Some(ms(20)),
        ),
        ("EFBIG", vec![sb(NSEMS as u16, 0, 0)], None),
        ("EFBIG before EACCES", vec![sb(0, -1, 0), sb(7, 0, 0)], None),
        (
            "zero then P",
            vec![sb(1, 0, 0), sb(0, -1, IPC_NOWAIT)],
            None,
        ),
    ];
    for (what, sops, t) in ops {
        say(
            format!("semtimedop({what})"),
            api.semtimedop(id, sops, t.as_ref()).map(|()| "ok".into()),
        );
    }
    for (what, cmd, arg) in [
        ("SETVAL", SETVAL, Arg::Val(1)),
        ("SETALL", SETALL, Arg::SetAll(vec![1, 1, 1])),
        (
            "IPC_SET",
            IPC_SET,
            Arg::Set {
                uid: OTHER.uid,
                gid: OTHER.gid,
                mode: 0o666,
            },
        ),
        ("IPC_RMID", IPC_RMID, Arg::None),
    ] {
        say(
            what.into(),
            api.semctl(id, 0, cmd, &arg).map(|o| o.ret.to_string()),
        );
    }
    say(
        "GETALL after".into(),
        api.semctl(id, 0, GETALL, &Arg::GetAll(NSEMS))
            .map(|o| format!("{:?}", o.all)),
    );
    out
}

/// The first reader: the file, then the API on both sides.
fn reader(c: &Ctl, path: &str, want_mode: u32) -> i32 {
    let mut bad = file_checks(path, want_mode);
    let shm = Shm {
        ns: Namespace::open(NS).expect("open the namespace"),
    };
    let (id, kid) = (c.id.load(Ordering::Relaxed), c.kid.load(Ordering::Relaxed));
    let k = answers(&Kernel { key_xor: 0 }, kid, kid & 0x7fff);
    let s = answers(&shm, id, SetId::from_raw(id).index as i32);
    if k.len() != s.len() {
        bad.push(format!(
            "{} answers from the kernel, {} from shmsem",
            k.len(),
            s.len()
        ));
    }
    if std::env::var_os("READERS_VERBOSE").is_some() {
        note(&format!(
            "reader (uid {}): the kernel's answers:\n  {}",
            nix::unistd::getuid(),
            k.join("\n  ")
        ));
    }
    for (k, s) in k.iter().zip(&s) {
        if k != s {
            bad.push(format!("kernel: {k}\n    shmsem: {s}"));
        }
    }
    for b in &bad {
        note(&format!("reader: {b}"));
    }
    if bad.is_empty() {
        0
    } else {
        CHECK_FAILED
    }
}

extern "C" fn on_usr1(_: libc::c_int) {}

/// The second reader: waits for zero on semaphore 0 (value 5) in stages
/// the sandbox drives: 1 interrupted, 2 woken by SETVAL 0, 3 removed.
fn waiter(c: &Ctl) -> i32 {
    // SAFETY: a valid action with an async-signal-safe (empty) handler.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(
            shmsem::signal::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()),
            0
        );
    }
    let ns = Namespace::open(NS).expect("open the namespace");
    let id = c.id.load(Ordering::Relaxed);
    for stage in 1..=3u32 {
        if !poll_flag("go", || c.go.load(Ordering::Acquire) >= stage) {
            return CHECK_FAILED;
        }
        c.stage.store(stage, Ordering::Release);
        let r = ns.semop(id, &[sb(0, 0, 0)]);
        c.results[stage as usize].store(r.map_or_else(|e| e.errno(), |()| 0), Ordering::Release);
    }
    0
}

/// Waits until the waiter is in `stage` and asleep in its futex wait.
fn waiter_asleep(c: &Ctl, pid: nix::unistd::Pid, stage: u32) {
    poll_until(&format!("waiter in stage {stage}"), || {
        c.stage.load(Ordering::Acquire) == stage
    });
    wait_asleep_in_futex(pid);
}

fn result_of(c: &Ctl, stage: usize) -> i32 {
    poll_until(&format!("stage {stage}'s result"), || {
        c.results[stage].load(Ordering::Acquire) != UNSET
    });
    c.results[stage].load(Ordering::Acquire)
}

/// The whole scenario for one mode and one reader; the sandbox's exit code.
fn scenario(mode: i32, who: User) -> i32 {
    let c = ctl();
    let mut kids = Kids::with(
        Duration::from_secs(40),
        ChildNet::alarm_and_parent_death(50),
    );
    let v = kids.spawn(|| as_user(VICTIM, || victim(&c, mode)));
    if !poll_flag("the victim's sets", || c.ready.load(Ordering::Acquire) != 0) {
        return CHECK_FAILED;
    }
    let path = segment_path();
    let before = std::fs::read(&path).expect("read the segment");
    let r = kids.spawn(|| as_user(who, || reader(&c, &path, (mode as u32) & 0o777)));
    kids.expect_exit(r, 0, "the reader");
    let after = std::fs::read(&path).expect("read the segment");
    if before != after {
        let first = before.iter().zip(&after).position(|(a, b)| a != b);
        note(&format!(
            "the reader changed the segment: first difference at byte {first:?}"
        ));
        return CHECK_FAILED + 1;
    }

    let w = kids.spawn(|| as_user(who, || waiter(&c)));
    let act = |kids: &mut Kids, cmd: i32, val: i32| {
        let a = kids.spawn(|| as_user(VICTIM, || victim_act(&c, cmd, val)));
        kids.expect_exit(a, 0, "the victim's action");
    };
    // 1: a signal (sent again until it lands in the wait, not before it).
    c.go.store(1, Ordering::Release);
    waiter_asleep(&c, w, 1);
    poll_until("EINTR", || {
        kids.signal(w, nix::sys::signal::Signal::SIGUSR1);
        std::thread::sleep(Duration::from_millis(20));
        c.results[1].load(Ordering::Acquire) != UNSET
    });
    let mut bad = Vec::new();
    let r1 = result_of(&c, 1);
    if r1 != libc::EINTR {
        bad.push(format!("interrupted wait: {}, want EINTR", errno_name(r1)));
    }
    // 2: the victim sets the value to 0.
    c.go.store(2, Ordering::Release);
    waiter_asleep(&c, w, 2);
    let seg = std::fs::read(&path).expect("read the segment");
    act(&mut kids, SETVAL, 0);
    let r2 = result_of(&c, 2);
    if r2 != 0 {
        bad.push(format!(
            "wait woken by SETVAL 0: {}, want success",
            errno_name(r2)
        ));
    }
    // The waiter was not queued, nor given a process-table entry: the
    // segment, read while it waited, is what the first reader left.
    if seg != after {
        bad.push("the waiting reader changed the segment".into());
    }
    // 3: back to 5, then removed.
    act(&mut kids, SETVAL, 5);
    c.go.store(3, Ordering::Release);
    waiter_asleep(&c, w, 3);
    act(&mut kids, IPC_RMID, 0);
    let r3 = result_of(&c, 3);
    if r3 != libc::EIDRM {
        bad.push(format!(
            "wait on a removed set: {}, want EIDRM",
            errno_name(r3)
        ));
    }
    kids.expect_exit(w, 0, "the waiter");
    c.done.store(1, Ordering::Release);
    kids.expect_exit(v, 0, "the victim");
    for b in &bad {
        note(b);
    }
    if bad.is_empty() {
        0
    } else {
        CHECK_FAILED + 2
    }
}

/// IPC_SET moves the file's mode with the set's: a reader that mapped
/// the set read-only may alter it once the mode gives its class write (it
/// maps the set again, read-write), and the file is `r--` for the class
/// again when the mode takes write away (a mapping made meanwhile stays
/// writable, like an open descriptor: the library's check refuses alters).
fn scenario_ipc_set() -> i32 {
    let c = ctl();
    let mut kids = Kids::with(
        Duration::from_secs(40),
        ChildNet::alarm_and_parent_death(50),
    );
    let v = kids.spawn(|| as_user(VICTIM, || victim(&c, 0o644)));
    if !poll_flag("the victim's sets", || c.ready.load(Ordering::Acquire) != 0) {
        return CHECK_FAILED;
    }
    let path = segment_path();
    let file_mode = || std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    let set_mode = |kids: &mut Kids, mode: u32| {
        let a = kids.spawn(|| {
            as_user(VICTIM, || {
                let shm = Shm {
                    ns: Namespace::open(NS).expect("open the namespace"),
                };
                let (id, kid) = (c.id.load(Ordering::Relaxed), c.kid.load(Ordering::Relaxed));
                for (api, id) in [(&shm as &dyn SemApi, id), (&KERNEL, kid)] {
                    let arg = Arg::Set {
                        uid: VICTIM.uid,
                        gid: VICTIM.gid,
                        mode,
                    };
                    if api.semctl(id, 0, IPC_SET, &arg).is_err() {
                        return CHECK_FAILED;
                    }
                }
                0
            })
        });
        kids.expect_exit(a, 0, "the victim's IPC_SET");
    };
    let mut bad = Vec::new();
    // The reader maps the set read-only, then is told to go on.
    let r = kids.spawn(|| {
        as_user(OTHER, || {
            let shm = Shm {
                ns: Namespace::open(NS).expect("open the namespace"),
            };
            let (id, kid) = (c.id.load(Ordering::Relaxed), c.kid.load(Ordering::Relaxed));
            let mut out = Vec::new();
            let step = |out: &mut Vec<String>| {
                for (api, id) in [(&shm as &dyn SemApi, id), (&KERNEL, kid)] {
                    out.push(format!("{:?}", api.semop(id, &[sb(1, 1, IPC_NOWAIT)])));
                }
            };
            step(&mut out);
            c.stage.store(1, Ordering::Release);
            if !poll_flag("go 1", || c.go.load(Ordering::Acquire) >= 1) {
                return CHECK_FAILED;
            }
            step(&mut out);
            c.stage.store(2, Ordering::Release);
            if !poll_flag("go 2", || c.go.load(Ordering::Acquire) >= 2) {
                return CHECK_FAILED;
            }
            step(&mut out);
            let want = [
                "Err(13)", "Err(13)", "Ok(())", "Ok(())", "Err(13)", "Err(13)",
            ];
            if out != want {
                note(&format!("reader's V: {out:?}, want {want:?}"));
                return CHECK_FAILED;
            }
            0
        })
    });
    poll_until("the reader's first V", || {
        c.stage.load(Ordering::Acquire) == 1
    });
    set_mode(&mut kids, 0o646);
    if file_mode() != 0o646 {
        bad.push(format!("file mode {:o} after IPC_SET 0646", file_mode()));
    }
    c.go.store(1, Ordering::Release);
    poll_until("the reader's second V", || {
        c.stage.load(Ordering::Acquire) == 2
    });
    set_mode(&mut kids, 0o644);
    if file_mode() != 0o644 {
        bad.push(format!("file mode {:o} after IPC_SET 0644", file_mode()));
    }
    c.go.store(2, Ordering::Release);
    kids.expect_exit(r, 0, "the reader");
    c.done.store(1, Ordering::Release);
    kids.expect_exit(v, 0, "the victim");
    for b in &bad {
        note(b);
    }
    if bad.is_empty() {
        0
    } else {
        CHECK_FAILED + 3
    }
}

fn sandboxed(name: &str, body: impl FnOnce() -> i32) {
    if !can_sandbox(name) {
        return;
    }
    let _serial = serial();
    let _w = Watchdog::start(name, 90);
    let code = in_sandbox(name, Duration::from_secs(80), body);
    assert_eq!(code, 0, "{name}: the sandbox ended with {}", describe(code));
}

fn run(name: &str, mode: i32, who: User) {
    sandboxed(name, || scenario(mode, who));
}

/// IPC_SET and the file's mode (see `scenario_ipc_set`).
#[test]
fn ipc_set_moves_the_file_mode_and_a_reader_may_become_a_writer() {
    sandboxed(
        "ipc_set_moves_the_file_mode_and_a_reader_may_become_a_writer",
        scenario_ipc_set,
    );
}

/// Mode 0644, the other class: read-only, enforced by the OS, and the
/// kernel's answers.
#[test]
fn other_class_under_0644_reads_only() {
    run("other_class_under_0644_reads_only", 0o644, OTHER);
}

/// Mode 0640, the group class: the same.
#[test]
fn group_class_under_0640_reads_only() {
    run("group_class_under_0640_reads_only", 0o640, GROUP);
}

/// What another user put under a namespace's name before it was created —
/// a FIFO, or a symbolic link to a file of someone else — as root, mode
/// 0644 so that the user can only open it for reading: opening the
/// namespace fails at once with an error (it used to wait for a writer of
/// the FIFO for ever, once a read-only open followed the refused
/// read-write one), and the file is neither opened through the link nor
/// mapped.
#[test]
fn a_fifo_or_a_link_under_the_namespace_name_is_refused_at_once() {
    let name = "a_fifo_or_a_link_under_the_namespace_name_is_refused_at_once";
    sandboxed(name, || {
        let fifo = c"/dev/shm/shmsem.taken-by-fifo";
        let target = c"/dev/shm/someone-elses-file";
        let link = c"/dev/shm/shmsem.taken-by-link";
        // SAFETY: NUL-terminated paths; plain system calls.
        let made = unsafe {
            libc::umask(0o022);
            libc::mkfifo(fifo.as_ptr(), 0o644) == 0
                && libc::close(libc::open(
                    target.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY,
                    0o644,
                )) == 0
                && libc::symlink(target.as_ptr(), link.as_ptr()) == 0
        };
        if !made {
            note(&format!(
                "{name}: set-up: {}",
                std::io::Error::last_os_error()
            ));
            return CHECK_FAILED;
        }
        as_user(OTHER, || {
            let mut bad = Vec::new();
            for ns in ["taken-by-fifo", "taken-by-link"] {
                match Namespace::open(ns) {
                    Ok(_) => bad.push(format!("{ns}: opened")),
                    Err(e) => note(&format!("{ns}: {e:?} (errno {})", e.errno())),
                }
            }
            if bad.is_empty() {
                0
            } else {
                note(&format!("{name}: {bad:?}"));
                CHECK_FAILED
            }
        })
    });
}
