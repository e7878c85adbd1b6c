//! IPC_RMID releases the set's memory and descriptors in the remover and,
//! once they notice, in every other process (issue 12, point 2): a create /
//! IPC_RMID loop runs for ever in constant /dev/shm space, and a process
//! that had a removed set mapped lets it go at its next semget, its next
//! first mapping of a set, or its next call on the removed id — even while
//! one of its threads sleeps in a semop on the set being removed.
//!
//! What a process holds of a namespace is read from outside it, as the
//! kernel sees it ([`holding`]): the lines of /proc/PID/maps that map the
//! namespace's set segments (a removed one shows as "... (deleted)"), its
//! descriptors (/proc/PID/fd), and the blocks of the namespace's files:
//! those in /dev/shm and the removed ones the process still maps or holds
//! open (tmpfs frees an unlinked file's pages only when its last mapping
//! and descriptor go, so these count against /dev/shm as well).
//!
//! Real processes throughout: a C program through the preload library, and
//! forked children using the Rust API. Each loop stops at the first
//! checkpoint that is not steady (before the fix, the first one after the
//! baseline: every removed set stayed mapped, 156 KiB of /dev/shm each).
// The ban on std atomics (clippy.toml) keeps them inside the library's
// shim; this program is not the library: its atomics are its own.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use shmsem::{Error, Op, SemaphoreSet};
use support::*;

/// Cycles of the create / IPC_RMID loops (`SHMSEM_RECLAIM_CYCLES`).
fn cycles() -> u64 {
    env_u64("SHMSEM_RECLAIM_CYCLES", 5000)
}

/// Cycles between two checkpoints of the loops.
const EVERY: u64 = 250;

/// Lines of /proc/PID/maps that may come and go between two checkpoints of
/// a loop without anything of ours leaking: between two cycles the process
/// has no set at all (each one it made is removed and unmapped), so the
/// namespace's segments contribute none and the registry one; what else
/// can change is the C library's own (malloc maps a request of 128 KiB or
/// more by itself, and trims its heap). Two, for that.
const MAPS_SLACK: usize = 2;

/// The descriptor limit the loops run under: a leak of one descriptor per
/// cycle would fail within a few dozen cycles.
const NOFILE: u64 = 64;

// ---------------------------------------------------------------------------
// What a process holds
// ---------------------------------------------------------------------------

/// What process `pid` holds of namespace `ns` (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Holding {
    /// Mappings of the namespace's set segments, live or removed.
    set_maps: usize,
    /// Of those, mappings of removed ("(deleted)") segments.
    deleted_maps: usize,
    /// Lines of /proc/PID/maps in all.
    all_maps: usize,
    /// Descriptors open in the process.
    fds: usize,
    /// Of those, descriptors of removed set segments of the namespace.
    deleted_fds: usize,
    /// 512-byte blocks of the namespace's files: in /dev/shm, and removed
    /// ones the process still maps or holds open.
    shm_blocks: u64,
}

/// `/dev/shm/shmsem.NS.`: the start of the path of every set segment of
/// namespace `ns` (the registry's path has no dot after the name).
fn set_prefix(ns: &str) -> String {
    format!("/dev/shm/shmsem.{ns}.")
}

/// The lines of /proc/PID/maps.
fn maps(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/maps: {e}"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// The file a maps line maps (after the fifth field), if any.
fn mapped_path(line: &str) -> Option<&str> {
    let mut rest = line;
    for _ in 0..5 {
        rest = rest.trim_start().split_once(' ')?.1;
    }
    let path = rest.trim_start();
    (!path.is_empty()).then_some(path)
}

/// The links of directory `dir` of /proc (fd, map_files) and their
/// targets; a directory we may not read gives none.
fn links(dir: &str) -> Vec<(std::path::PathBuf, String)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            Some((e.path(), target.to_string_lossy().into_owned()))
        })
        .collect()
}

fn holding(pid: i32, ns: &str) -> Holding {
    let prefix = set_prefix(ns);
    let lines = maps(pid);
    let ours: Vec<&str> = lines
        .iter()
        .filter_map(|l| mapped_path(l))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    let removed = |target: &str| target.starts_with(&prefix) && target.ends_with(" (deleted)");
    let fds = links(&format!("/proc/{pid}/fd"));
    // Blocks, each file once (a file may be both mapped and open).
    let mut seen = HashSet::new();
    let mut blocks = 0;
    let mut count = |md: std::fs::Metadata| {
        if seen.insert((md.dev(), md.ino())) {
            blocks += md.blocks();
        }
    };
    for name in ns_files(ns) {
        if let Ok(md) = std::fs::metadata(format!("/dev/shm/{name}")) {
            count(md);
        }
    }
    let maps_files = links(&format!("/proc/{pid}/map_files"));
    for (link, target) in fds.iter().chain(maps_files.iter()) {
        if removed(target) {
            // stat follows the link to the (unlinked) file itself.
            if let Ok(md) = std::fs::metadata(link) {
                count(md);
            }
        }
    }
    Holding {
        set_maps: ours.len(),
        deleted_maps: ours.iter().filter(|p| p.ends_with(" (deleted)")).count(),
        all_maps: lines.len(),
        fds: fds.len(),
        deleted_fds: fds.iter().filter(|(_, t)| removed(t)).count(),
        shm_blocks: blocks,
    }
}

/// Whether `now` is what a loop between two cycles must look like, given
/// the `base` of its first checkpoint; else why not.
fn steady(base: &Holding, now: &Holding) -> Result<(), String> {
    let mut why = Vec::new();
    if now.set_maps != 0 {
        why.push(format!("{} set segments still mapped", now.set_maps));
    }
    if now.deleted_fds != 0 {
        why.push(format!("{} removed segments still open", now.deleted_fds));
    }
    if now.shm_blocks != base.shm_blocks {
        why.push(format!(
            "/dev/shm use {} blocks, {} at the baseline",
            now.shm_blocks, base.shm_blocks
        ));
    }
    if now.all_maps > base.all_maps + MAPS_SLACK {
        why.push(format!(
            "{} mappings, {} at the baseline (+{MAPS_SLACK} allowed)",
            now.all_maps, base.all_maps
        ));
    }
    if now.fds > base.fds {
        why.push(format!(
            "{} descriptors, {} at the baseline",
            now.fds, base.fds
        ));
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why.join("; "))
    }
}

/// Where set `set` of `ns` stands in process `pid`'s mappings: `None` if
/// not mapped, `Some(removed)` if mapped (removed: its name is gone).
fn mapped(pid: i32, ns: &str, set: &SemaphoreSet) -> Option<bool> {
    let path = set_path(ns, set.id());
    let deleted = format!("{path} (deleted)");
    let mut found = None;
    for l in maps(pid) {
        match mapped_path(&l) {
            Some(p) if p == path => found = found.or(Some(false)),
            Some(p) if p == deleted => found = Some(true),
            _ => {}
        }
    }
    found
}

/// Whether process `pid` holds a descriptor of set `set`'s segment.
fn has_fd_of(pid: i32, ns: &str, set: &SemaphoreSet) -> bool {
    let path = set_path(ns, set.id());
    links(&format!("/proc/{pid}/fd"))
        .iter()
        .any(|(_, t)| t == &path || *t == format!("{path} (deleted)"))
}

/// Sets this process's descriptor limit to [`NOFILE`].
fn limit_descriptors() -> std::io::Result<()> {
    let r = libc::rlimit {
        rlim_cur: NOFILE,
        rlim_max: NOFILE,
    };
    // SAFETY: setrlimit reads one valid struct and changes only this
    // process's limit; it is async-signal-safe (used after fork).
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn expect_exit_ok(pid: Pid, limit: Duration, what: &str) {
    match wait_for(pid, limit, what) {
        WaitStatus::Exited(_, OK) => {}
        other => panic!("{what}: {other:?}, not exit 0"),
    }
}

/// A forked process that removes `set` and exits (another process than
/// the one under test).
fn remove_from_another_process(set: &SemaphoreSet) {
    let s = SemaphoreSet::from_id(set.namespace(), set.id());
    let pid = fork_child(ChildNet::alarm(10), move || rc(s.remove()));
    expect_exit_ok(pid, DEADLINE, "the remover");
}

// ---------------------------------------------------------------------------
// The loops
// ---------------------------------------------------------------------------

/// An unmodified C program (tests/c/rmid_loop.c) through the preload
/// library, under `ulimit -n 64`: 5,000 cycles of semget(IPC_PRIVATE) /
/// IPC_STAT / GETVAL / semop / GETVAL / IPC_RMID, measured from outside at
/// every 250th: no set segment mapped or open, /dev/shm use as at the
/// first checkpoint, mappings and descriptors no more.
#[test]
fn c_create_rmid_loop_runs_in_constant_space() {
    if !have_gcc() {
        eprintln!("SKIPPED c_create_rmid_loop_runs_in_constant_space: gcc not found");
        return;
    }
    let env = TestEnv::new("reclaim-c-loop", 280);
    let ns = env.ns.name().to_string();
    let dir = ScratchDir::new(&format!("shmsem-reclaim-{}", std::process::id()));
    let exe = dir.path().join("rmid_loop");
    compile_c(&manifest_dir().join("tests/c/rmid_loop.c"), &exe, &[]);
    let n = cycles();
    let mut cmd = Command::new(&exe);
    cmd.args([n.to_string(), EVERY.to_string()])
        .env("LD_PRELOAD", preload_lib())
        .env("SHMSEM_NAMESPACE", &ns)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe.
    unsafe { cmd.pre_exec(limit_descriptors) };
    let mut child = cmd.spawn().expect("spawn rmid_loop");
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut fail = |why: String| -> ! {
        let _ = child.kill();
        let status = child.wait().map(|s| s.to_string());
        panic!("rmid_loop (pid {pid}): {why} ({status:?})");
    };
    let mut base = None;
    let mut k = 0;
    while k < n {
        let line = match rx.recv_timeout(LONG_DEADLINE) {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => fail(format!("reading its output: {e}")),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                fail(format!("it exited after cycle {k} (its stderr is above)"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => fail(format!(
                "no checkpoint within {LONG_DEADLINE:?} after cycle {k}"
            )),
        };
        k = match line.strip_prefix("ready cycle ").map(str::parse::<u64>) {
            Some(Ok(k)) => k,
            _ => fail(format!("unexpected output {line:?}")),
        };
        if k >= EVERY {
            let now = holding(pid, &ns);
            match &base {
                None => base = Some(now),
                Some(b) => {
                    if let Err(why) = steady(b, &now) {
                        let ours: Vec<String> = maps(pid)
                            .into_iter()
                            .filter(|l| l.contains(&set_prefix(&ns)))
                            .take(5)
                            .collect();
                        fail(format!(
                            "after {k} cycles: {why}\n  baseline {b:?}\n  now      {now:?}\n  e.g. {ours:#?}"
                        ));
                    }
                }
            }
        }
        if writeln!(stdin, "go").is_err() {
            fail(format!("it exited at cycle {k}"));
        }
    }
    drop(stdin);
    let status = child.wait().expect("wait for rmid_loop");
    assert!(status.success(), "rmid_loop: {status}");
    assert!(base.is_some(), "no checkpoint was measured");
}

/// The same loop through the Rust API (`SemaphoreSet`) in a forked
/// process, which measures itself from /proc at every 250th cycle.
#[test]
fn rust_create_rmid_loop_runs_in_constant_space() {
    let env = TestEnv::new("reclaim-rust-loop", 280);
    let ns = env.ns.clone();
    let n = cycles();
    let pid = fork_child(ChildNet::alarm_and_parent_death(250), move || {
        if let Err(e) = limit_descriptors() {
            eprintln!("setrlimit: {e}");
            return CHECK_FAILED;
        }
        let me = std::process::id() as i32;
        let mut base = None;
        for k in 0..=n {
            if k % EVERY == 0 && k >= EVERY {
                let now = holding(me, ns.name());
                match &base {
                    None => base = Some(now),
                    Some(b) => {
                        if let Err(why) = steady(b, &now) {
                            eprintln!(
                                "after {k} cycles: {why}\n  baseline {b:?}\n  now      {now:?}"
                            );
                            return CHECK_FAILED + 1;
                        }
                    }
                }
            }
            if k == n {
                break;
            }
            let cycle = || -> shmsem::Result<bool> {
                let set = SemaphoreSet::create_private(&ns, 1, 0o600)?;
                let st = set.status()?;
                let v0 = set.value(0)?;
                set.op(&[Op::post(0, 1)])?;
                let v1 = set.value(0)?;
                set.remove()?;
                Ok(st.nsems == 1 && v0 == 0 && v1 == 1)
            };
            match cycle() {
                Ok(true) => {}
                Ok(false) => return CHECK_FAILED + 2,
                Err(e) => {
                    eprintln!("cycle {k}: {e}");
                    return e.errno();
                }
            }
        }
        OK
    });
    match wait_for(pid, Duration::from_secs(250), "the Rust loop") {
        WaitStatus::Exited(_, OK) => {}
        WaitStatus::Exited(_, code) => panic!("the Rust loop exited {}", describe(code)),
        other => panic!("the Rust loop: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Another process notices
// ---------------------------------------------------------------------------

/// Process P maps sets A, B and D; another process removes A: P still maps
/// it (it has not noticed) until it creates a set (a semget notices), after
/// which A's segment is neither mapped nor open in P, and B and D still
/// are. Then another process removes D, and P's next call on D (EINVAL, as
/// the kernel) lets D go.
#[test]
fn another_process_lets_a_removed_set_go_when_it_notices() {
    let env = TestEnv::new("reclaim-notice", 60);
    let ns = env.ns.name().to_string();
    let [a, b, d] = [0, 1, 2].map(|_| env.set_with(&[1]));
    let (to_parent, to_child) = (Signal1::new(), Signal1::new());
    let (sa, sb, sd) = (
        SemaphoreSet::from_id(&env.ns, a.id()),
        SemaphoreSet::from_id(&env.ns, b.id()),
        SemaphoreSet::from_id(&env.ns, d.id()),
    );
    let pid = fork_child(ChildNet::alarm_and_parent_death(50), || {
        let touch = |s: &SemaphoreSet| {
            s.op(&[Op::wait(0, 1)]).is_ok()
                && s.op(&[Op::post(0, 1)]).is_ok()
                && s.value(0) == Ok(1)
        };
        if !(touch(&sa) && touch(&sb) && touch(&sd)) {
            return CHECK_FAILED;
        }
        to_parent.notify();
        to_child.wait("go: create a set");
        let c = match SemaphoreSet::create_private(sa.namespace(), 1, 0o600) {
            Ok(c) => c,
            Err(e) => return e.errno(),
        };
        if c.op(&[Op::post(0, 1)]).is_err() || !touch(&sb) {
            return CHECK_FAILED + 1;
        }
        to_parent.notify();
        to_child.wait("go: a call on D");
        if sd.value(0) != Err(Error::Invalid) {
            return CHECK_FAILED + 2;
        }
        to_parent.notify();
        to_child.wait("go: end");
        rc(c.remove())
    });
    let p = pid.as_raw();
    to_parent.wait("P has mapped A, B and D");
    for s in [&a, &b, &d] {
        assert_eq!(mapped(p, &ns, s), Some(false), "P maps set {}", s.id());
    }
    remove_from_another_process(&a);
    assert_eq!(
        mapped(p, &ns, &a),
        Some(true),
        "P has not noticed yet: A is mapped, deleted"
    );
    to_child.notify();
    to_parent.wait("P has created a set");
    assert_eq!(
        mapped(p, &ns, &a),
        None,
        "P's semget noticed: A is unmapped"
    );
    assert!(!has_fd_of(p, &ns, &a), "P holds no descriptor of A");
    assert_eq!(mapped(p, &ns, &b), Some(false), "B is still P's");
    assert_eq!(mapped(p, &ns, &d), Some(false), "D is still P's");
    remove_from_another_process(&d);
    assert_eq!(mapped(p, &ns, &d), Some(true), "D is mapped, deleted");
    to_child.notify();
    to_parent.wait("P has called on D");
    assert_eq!(
        mapped(p, &ns, &d),
        None,
        "P's call on D noticed: D is unmapped"
    );
    assert!(!has_fd_of(p, &ns, &d), "P holds no descriptor of D");
    assert_eq!(mapped(p, &ns, &b), Some(false), "B is still P's");
    to_child.notify();
    expect_exit_ok(pid, DEADLINE, "P");
}

/// A process with several threads in calls: one asleep in a semop on set A
/// when another process removes A (it gets EIDRM, and nothing crashes), two
/// working on set B all along, and one creating and removing sets before,
/// during and after. At the end the process maps B and nothing else of the
/// namespace, and holds no removed segment open.
#[test]
fn a_sleeper_gets_eidrm_while_its_process_churns_sets() {
    let env = TestEnv::new("reclaim-stress", 120);
    let ns = env.ns.name().to_string();
    let a = env.set_with(&[0]);
    let b = env.set_with(&[1]);
    let (sa, sb) = (
        SemaphoreSet::from_id(&env.ns, a.id()),
        SemaphoreSet::from_id(&env.ns, b.id()),
    );
    let ns_in_child = env.ns.clone();
    let child_ns = ns.clone();
    let pid = fork_child(ChildNet::alarm_and_parent_death(100), move || {
        let sleeper_done = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let sleeper = {
            let done = sleeper_done.clone();
            std::thread::spawn(move || {
                let r = sa.op(&[Op::wait(0, 1)]);
                done.store(true, Ordering::SeqCst);
                r
            })
        };
        let users: Vec<_> = (0..2)
            .map(|_| {
                let (sb, stop) = (SemaphoreSet::from_id(sb.namespace(), sb.id()), stop.clone());
                std::thread::spawn(move || -> shmsem::Result<u64> {
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        sb.op(&[Op::wait(0, 1)])?;
                        sb.op(&[Op::post(0, 1)])?;
                        sb.value(0)?;
                        sb.status()?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        let churn = {
            let (done, ns) = (sleeper_done.clone(), ns_in_child.clone());
            std::thread::spawn(move || -> shmsem::Result<u64> {
                // Until 100 cycles after the sleeper's return (and at
                // least 300 in all).
                let (mut k, mut after) = (0, 0);
                while k < 300 || after < 100 {
                    let c = SemaphoreSet::create_private(&ns, 1, 0o600)?;
                    c.status()?;
                    c.op(&[Op::post(0, 1)])?;
                    c.value(0)?;
                    c.remove()?;
                    k += 1;
                    if done.load(Ordering::SeqCst) {
                        after += 1;
                    }
                }
                Ok(k)
            })
        };
        let slept = sleeper.join();
        let churned = churn.join();
        stop.store(true, Ordering::SeqCst);
        let worked: Vec<_> = users.into_iter().map(|u| u.join()).collect();
        if !matches!(slept, Ok(Err(Error::Removed))) {
            eprintln!("the sleeper: {slept:?}, not EIDRM");
            return CHECK_FAILED;
        }
        if !matches!(churned, Ok(Ok(_))) || !worked.iter().all(|w| matches!(w, Ok(Ok(_)))) {
            eprintln!("churn {churned:?}, users {worked:?}");
            return CHECK_FAILED + 1;
        }
        // One more semget notices whatever is left, then: B only.
        match SemaphoreSet::create_private(&ns_in_child, 1, 0o600).and_then(|c| c.remove()) {
            Ok(()) => {}
            Err(e) => return e.errno(),
        }
        let h = holding(std::process::id() as i32, &child_ns);
        if h.set_maps != 1 || h.deleted_maps != 0 || h.deleted_fds != 0 {
            eprintln!("at the end: {h:?} (B alone should be mapped)");
            return CHECK_FAILED + 2;
        }
        OK
    });
    wait_ncnt(&a, 0, 1);
    remove_from_another_process(&a);
    match wait_for(pid, LONG_DEADLINE, "the churning process") {
        WaitStatus::Exited(_, OK) => {}
        WaitStatus::Exited(_, code) => panic!("the churning process exited {}", describe(code)),
        other => panic!("the churning process: {other:?}"),
    }
    assert_eq!(val(&b, 0), 1, "B's unit came back each time");
}

/// Fork copies one thread: a thread that was asleep in a call in the
/// parent does not exist in the child, and must not keep the child from
/// unmapping (its hazard word is copied with the memory; the fork handler
/// frees it). P's thread sleeps on S; P forks C; C removes S, and S is
/// unmapped in C at once; P's sleeper gets EIDRM.
#[test]
fn a_forked_child_is_not_held_back_by_its_parents_sleeping_thread() {
    let env = TestEnv::new("reclaim-fork", 60);
    let ns = env.ns.name().to_string();
    let s = env.set_with(&[0]);
    let sp = SemaphoreSet::from_id(&env.ns, s.id());
    let pid = fork_child(ChildNet::alarm_and_parent_death(50), move || {
        let sleeper = {
            let s = SemaphoreSet::from_id(sp.namespace(), sp.id());
            std::thread::spawn(move || s.op(&[Op::wait(0, 1)]))
        };
        poll_until("P's thread asleep on S", || sp.ncnt(0) == Ok(1));
        let c = fork_child(ChildNet::alarm(20), || {
            let me = std::process::id() as i32;
            if mapped(me, &ns, &sp) != Some(false) {
                return CHECK_FAILED;
            }
            if let Err(e) = sp.remove() {
                return e.errno();
            }
            match mapped(me, &ns, &sp) {
                None => OK,
                Some(_) => {
                    eprintln!("C still maps S after removing it: {:?}", holding(me, &ns));
                    CHECK_FAILED + 1
                }
            }
        });
        let verdict = match wait_for(c, DEADLINE, "C") {
            WaitStatus::Exited(_, code) => code,
            other => {
                eprintln!("C: {other:?}");
                return CHECK_FAILED + 2;
            }
        };
        match sleeper.join() {
            Ok(Err(Error::Removed)) => verdict,
            other => {
                eprintln!("P's sleeper: {other:?}, not EIDRM");
                CHECK_FAILED + 3
            }
        }
    });
    match wait_for(pid, LONG_DEADLINE, "P") {
        WaitStatus::Exited(_, OK) => {}
        WaitStatus::Exited(_, code) => panic!("P exited {}", describe(code)),
        other => panic!("P: {other:?}"),
    }
}
