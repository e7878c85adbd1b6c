//! A lock holder that is alive but stopped (SIGSTOP, a debugger) inside a
//! set's locked section, at every counted write of its section
//! (`shmsem::__private::crash_after(k, SIGSTOP)`): a timed semop returns
//! EAGAIN by its deadline and changes nothing, an IPC_NOWAIT one too; a
//! sleeper already queued whose deadline passes returns EAGAIN; a timeout
//! racing the stopped waker that would complete it keeps its unit exactly
//! once; GETVAL, GETPID, GETALL, IPC_STAT, SEM_STAT, GETNCNT, GETZCNT and
//! semget of the set's key answer with the set's state (before or after
//! the holder's update, never between); semget answers even while an
//! IPC_RMID waits for the stopped holder. Once the holder continues, the
//! set is exactly as its update leaves it, nothing leaked.
//!
//! Each call is made by a child that must end within [`PROMPT`]: a hang is
//! a failure, not a timing assertion (the deadlines are 100-300 ms).
//!
//! Run: `cargo test --test stopped`.
// The ban on std atomics, fences and raw futex calls (clippy.toml) keeps them
// inside the library's shim; this program is not the library.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use shmsem::__private::{crash_after, crash_countdown};
use shmsem::layout::SEM_STAT;
use shmsem::sysv::{SemctlArg, SemidDs, SetId};
use shmsem::{Error, Op, SemaphoreSet};
use support::*;

/// How long a child's call may take before the test calls it a hang: far
/// beyond every deadline the calls are given, far below "for ever".
const PROMPT: Duration = Duration::from_secs(5);

/// Exit code of a holder whose update ended before its k-th write.
const FINISHED: i32 = 99;

/// The key of the sets that semget looks up.
const KEY: i32 = 0x5709;

/// The holder's update: a multi-op call (global mode: every word is the
/// holder's for the section) on [5, 5, 5], giving [4, 7, 2].
const BEFORE: [u16; 3] = [5, 5, 5];
const AFTER: [u16; 3] = [4, 7, 2];
fn update(s: &SemaphoreSet) -> shmsem::Result<()> {
    s.op(&[Op::wait(0, 1), Op::post(1, 2), Op::wait(2, 3)])
}

/// How the holder forked by [`stop_holder`] ended up.
enum Holder {
    /// Stopped inside its update.
    Stopped(Pid),
    /// Its update made fewer than k counted writes.
    Finished,
}

/// Forks a holder that runs `body` and stops (SIGSTOP) after its k-th
/// counted write, and waits until it is stopped (or has finished).
fn stop_holder(
    set: &SemaphoreSet,
    kids: &mut Kids,
    k: u64,
    body: fn(&SemaphoreSet) -> shmsem::Result<()>,
) -> Holder {
    let s2 = set.clone();
    let pid = kids.spawn(move || {
        crash_after(k, libc::SIGSTOP);
        let r = body(&s2);
        crash_after(0, 0);
        match r {
            Ok(()) => FINISHED,
            Err(e) => e.errno(),
        }
    });
    let mut ended = None;
    poll_until(&format!("holder {pid} stops or finishes"), || {
        if process_state(pid) == Some('T') {
            return true;
        }
        match kids.running(pid) {
            Ok(()) => false,
            Err(st) => {
                ended = Some(st);
                true
            }
        }
    });
    match ended {
        None => Holder::Stopped(pid),
        Some(WaitStatus::Exited(_, FINISHED)) => Holder::Finished,
        Some(other) => panic!("holder stopping after write {k}: ended as {other:?}"),
    }
}

/// Counted writes of `body` on a fresh set with `initial` values (a
/// reference run in a child, which exits with the count in a pipe).
fn writes_of(env: &TestEnv, initial: &[u16], body: fn(&SemaphoreSet) -> shmsem::Result<()>) -> u64 {
    let mut kids = Kids::new();
    let set = env.set_with(initial);
    let (mut rx, mut tx) = pipe();
    let s2 = set.clone();
    let child = kids.spawn(move || {
        const BIG: u64 = 1 << 40;
        crash_after(BIG, libc::SIGKILL);
        body(&s2).expect("the reference update");
        let n = BIG - crash_countdown();
        crash_after(0, 0);
        let _ = tx.write_all(&n.to_le_bytes());
        OK
    });
    let mut buf = [0u8; 8];
    rx.read_exact(&mut buf).expect("write count from the child");
    kids.expect_exit(child, OK, "reference run");
    let _ = set.remove();
    u64::from_le_bytes(buf)
}

/// Runs `body` in a child that must exit within [`PROMPT`] with `OK`;
/// `body` returns `Err(message)` for a failed check.
fn promptly(kids: &mut Kids, what: &str, body: impl FnOnce() -> Result<(), String>) {
    let pid = kids.spawn(move || match body() {
        Ok(()) => OK,
        Err(m) => {
            eprintln!("check failed: {m}");
            CHECK_FAILED
        }
    });
    match kids.wait_within(pid, PROMPT, what) {
        WaitStatus::Exited(_, OK) => {}
        other => panic!("{what}: {other:?} (see the child's message above)"),
    }
}

/// Continues a stopped holder and checks that its update completed.
fn resume(kids: &mut Kids, holder: Pid, what: &str) {
    kids.signal(holder, Signal::SIGCONT);
    kids.expect_exit(holder, FINISHED, &format!("{what}: the holder, continued"));
}

/// Sweeps and checks that nothing is left: every queue slot free, no
/// process but this one in the table, no adjustment.
fn check_no_leak(set: &SemaphoreSet, what: &str) {
    let ns = set.namespace();
    ns.sweep(set.id()).expect("sweep");
    let r = ns.report(set.id()).expect("report");
    assert_nothing_left(&r, what);
}

/// A keyed set with `values`.
fn keyed_set(env: &TestEnv, values: &[u16]) -> SemaphoreSet {
    let set = SemaphoreSet::create(&env.ns, KEY, values.len() as u16, 0o600).expect("create");
    set.set_values(values).expect("SETALL");
    set
}

/// Every read, in a child, while the holder is stopped after each of its
/// writes: one state, before or after the update, whichever read gives it;
/// then the holder continues and the set is as its update leaves it.
#[test]
fn reads_never_wait_for_a_stopped_holder() {
    let env = TestEnv::new("stopped-reads", 300);
    let writes = writes_of(&env, &BEFORE, update);
    let me = std::process::id() as i32;
    let mut seen = (0, 0);
    for k in 1.. {
        let what = format!("reads, holder stopped after write {k} of {writes}");
        let mut kids = Kids::new();
        let set = keyed_set(&env, &BEFORE);
        let holder = match stop_holder(&set, &mut kids, k, update) {
            Holder::Stopped(pid) => pid,
            Holder::Finished => break,
        };
        let (mut rx, mut tx) = pipe();
        let s2 = set.clone();
        let hpid = holder.as_raw();
        promptly(&mut kids, &what, move || {
            let ns = s2.namespace();
            let all = s2.values().map_err(|e| format!("GETALL: {e}"))?;
            let after = match all.as_slice() {
                x if x == BEFORE => false,
                x if x == AFTER => true,
                x => return Err(format!("GETALL {x:?}: neither {BEFORE:?} nor {AFTER:?}")),
            };
            let pid = if after { hpid } else { me };
            for n in 0..3u16 {
                let v = s2.value(n).map_err(|e| format!("GETVAL {n}: {e}"))?;
                let p = s2.pid(n).map_err(|e| format!("GETPID {n}: {e}"))?;
                if (v, p) != (all[n as usize], pid) {
                    return Err(format!(
                        "sem {n}: GETVAL {v} GETPID {p}, with GETALL {all:?} (pid {pid})"
                    ));
                }
                let (nc, zc) = (s2.ncnt(n), s2.zcnt(n));
                if (nc, zc) != (Ok(0), Ok(0)) {
                    return Err(format!(
                        "sem {n}: GETNCNT {nc:?} GETZCNT {zc:?}, nobody waits"
                    ));
                }
            }
            let st = s2.status().map_err(|e| format!("IPC_STAT: {e}"))?;
            if (st.perm.key, st.perm.mode, st.nsems) != (KEY, 0o600, 3) {
                return Err(format!("IPC_STAT: {st:?}"));
            }
            let mut ds = SemidDs::default();
            let idx = SetId::from_raw(s2.id()).index as i32;
            let id = ns
                .semctl(idx, 0, SEM_STAT, SemctlArg::StatOut(&mut ds))
                .map_err(|e| format!("SEM_STAT: {e}"))?;
            if id != s2.id() || ds.perm.key != KEY {
                return Err(format!("SEM_STAT: id {id}, {ds:?}"));
            }
            let got = ns.semget(KEY, 0, 0).map_err(|e| format!("semget: {e}"))?;
            if got != s2.id() {
                return Err(format!("semget: id {got}, the set's is {}", s2.id()));
            }
            let _ = tx.write_all(&[after as u8]);
            Ok(())
        });
        let mut b = [0u8; 1];
        rx.read_exact(&mut b).expect("what the reader saw");
        if b[0] == 1 {
            seen.1 += 1;
        } else {
            seen.0 += 1;
        }
        resume(&mut kids, holder, &what);
        assert_eq!(vals(&set), AFTER, "{what}: after the holder continued");
        check_no_leak(&set, &what);
        set.remove().expect("IPC_RMID");
        assert!(k < writes * 4 + 100, "{what}: the update never ends");
    }
    eprintln!(
        "reads: {} stops seen before the update, {} after",
        seen.0, seen.1
    );
    assert!(
        seen.0 > 0 && seen.1 > 0,
        "every stop looked the same: {seen:?}"
    );
}

/// Timed calls and IPC_NOWAIT calls that need the lock, while the holder
/// is stopped after each of its writes but the last (which releases the
/// lock): EAGAIN, and nothing of them happens.
#[test]
fn timed_and_nowait_calls_return_behind_a_stopped_holder() {
    let env = TestEnv::new("stopped-timed", 300);
    let writes = writes_of(&env, &BEFORE, update);
    for k in 1..writes {
        let what = format!("timed calls, holder stopped after write {k} of {writes}");
        let mut kids = Kids::new();
        let set = env.set_with(&BEFORE);
        let holder = match stop_holder(&set, &mut kids, k, update) {
            Holder::Stopped(pid) => pid,
            Holder::Finished => break,
        };
        let calls: [(&str, Vec<Op>, Option<Duration>); 5] = [
            (
                "semtimedop P, 100 ms",
                vec![Op::wait(0, 1)],
                Some(Duration::from_millis(100)),
            ),
            (
                "semtimedop V with SEM_UNDO, 100 ms",
                vec![Op::post(1, 1).undo()],
                Some(Duration::from_millis(100)),
            ),
            (
                "semtimedop of two ops, 100 ms",
                vec![Op::post(0, 1), Op::post(2, 1)],
                Some(Duration::from_millis(100)),
            ),
            ("semop P, IPC_NOWAIT", vec![Op::wait(0, 1).nowait()], None),
            (
                "semop of two ops, IPC_NOWAIT",
                vec![Op::post(1, 1).nowait(), Op::wait(2, 1).nowait()],
                None,
            ),
        ];
        for (name, ops, timeout) in calls {
            let s2 = set.clone();
            promptly(&mut kids, &format!("{what}: {name}"), move || {
                let r = match timeout {
                    Some(t) => s2.op_timeout(&ops, t),
                    None => s2.op(&ops),
                };
                match r {
                    Err(Error::WouldBlock) => Ok(()),
                    other => Err(format!("{name}: {other:?}, expected EAGAIN")),
                }
            });
        }
        resume(&mut kids, holder, &what);
        assert_eq!(
            vals(&set),
            AFTER,
            "{what}: after the holder continued (a timed call changed something)"
        );
        check_no_leak(&set, &what);
        set.remove().expect("IPC_RMID");
        assert!(k < writes * 4 + 100, "{what}: the update never ends");
    }
}

/// The holder's update of the sleeper tests: it leaves semaphore 0, on
/// which they sleep, alone ([0, 5, 5] → [0, 4, 6]).
fn other_update(s: &SemaphoreSet) -> shmsem::Result<()> {
    s.op(&[Op::wait(1, 1), Op::post(2, 1)])
}

/// Sleepers queued on semaphore 0 before the holder stops: one with a
/// deadline of 300 ms returns EAGAIN while the holder is stopped; GETNCNT
/// then counts only the other, untimed one; once the holder continues, a V
/// goes to that one (the withdrawn operation takes nothing), and nothing is
/// left.
#[test]
fn a_queued_sleeper_times_out_behind_a_stopped_holder() {
    let env = TestEnv::new("stopped-sleeper", 300);
    let initial = [0, 5, 5];
    let writes = writes_of(&env, &initial, other_update);
    for k in 1.. {
        let what = format!("sleeper, holder stopped after write {k} of {writes}");
        let mut kids = Kids::new();
        let set = env.set_with(&initial);
        let s2 = set.clone();
        let stays = kids.spawn(move || rc(s2.op(&[Op::wait(0, 1)])));
        wait_ncnt(&set, 0, 1);
        let s2 = set.clone();
        let timed =
            kids.spawn(move || rc(s2.op_timeout(&[Op::wait(0, 1)], Duration::from_millis(300))));
        wait_ncnt(&set, 0, 2);
        let holder = match stop_holder(&set, &mut kids, k, other_update) {
            Holder::Stopped(pid) => pid,
            Holder::Finished => break,
        };
        match kids.wait_within(timed, PROMPT, &what) {
            WaitStatus::Exited(_, c) if c == libc::EAGAIN => {}
            other => panic!("{what}: the timed sleeper: {other:?}, expected EAGAIN"),
        }
        let s2 = set.clone();
        promptly(&mut kids, &format!("{what}: GETNCNT"), move || {
            match s2.ncnt(0) {
                Ok(1) => Ok(()),
                other => Err(format!(
                    "GETNCNT(0) {other:?}: only the untimed sleeper waits"
                )),
            }
        });
        resume(&mut kids, holder, &what);
        assert_eq!(vals(&set), [0, 4, 6], "{what}: after the holder continued");
        assert_eq!(
            ncnt(&set, 0),
            1,
            "{what}: GETNCNT after the holder continued"
        );
        set.op(&[Op::post(0, 1)]).expect("V");
        kids.expect_exit(
            stays,
            OK,
            &format!("{what}: the untimed sleeper, after a V"),
        );
        assert_eq!(
            vals(&set),
            [0, 4, 6],
            "{what}: the V went to the untimed sleeper"
        );
        check_no_leak(&set, &what);
        set.remove().expect("IPC_RMID");
        assert!(k < writes * 4 + 100, "{what}: the update never ends");
    }
}

/// A V whose process is stopped after each write of its section, which
/// completes a sleeper whose deadline (200 ms) passes meanwhile: the
/// sleeper returns, and the unit is the sleeper's (it returned 0) or the
/// semaphore's (it returned EAGAIN), never both nor neither.
#[test]
fn a_timeout_racing_a_stopped_waker_keeps_its_unit_once() {
    let env = TestEnv::new("stopped-waker", 300);
    let mut outcomes = (0, 0);
    for k in 1.. {
        let what = format!("waker stopped after write {k}");
        let mut kids = Kids::new();
        let set = env.set_with(&[0]);
        let s2 = set.clone();
        let sleeper =
            kids.spawn(move || rc(s2.op_timeout(&[Op::wait(0, 1)], Duration::from_millis(200))));
        wait_ncnt(&set, 0, 1);
        let holder = match stop_holder(&set, &mut kids, k, |s| s.op(&[Op::post(0, 1)])) {
            Holder::Stopped(pid) => pid,
            Holder::Finished => {
                kids.expect_exit(
                    sleeper,
                    OK,
                    &format!("{what}: the sleeper of a V that finished"),
                );
                break;
            }
        };
        let got = match kids.wait_within(sleeper, PROMPT, &what) {
            WaitStatus::Exited(_, OK) => true,
            WaitStatus::Exited(_, c) if c == libc::EAGAIN => false,
            other => panic!("{what}: the sleeper: {other:?}"),
        };
        resume(&mut kids, holder, &what);
        let v = val(&set, 0);
        assert_eq!(
            v + got as u16,
            1,
            "{what}: value {v} and the sleeper {}: the unit is lost or doubled",
            if got { "took it" } else { "timed out" }
        );
        if got {
            outcomes.0 += 1;
        } else {
            outcomes.1 += 1;
        }
        check_no_leak(&set, &what);
        set.remove().expect("IPC_RMID");
        assert!(k < 400, "{what}: the V never ends");
    }
    eprintln!(
        "timeout racing a stopped waker: the sleeper got the unit {} times, timed out {} times",
        outcomes.0, outcomes.1
    );
}

/// semget of the set's key answers while an IPC_RMID waits for the stopped
/// holder (the remover must not hold the registry while it waits); once
/// the holder continues, the removal completes.
#[test]
fn semget_answers_while_a_remover_waits_for_a_stopped_holder() {
    let env = TestEnv::new("stopped-semget", 60);
    let writes = writes_of(&env, &BEFORE, update);
    let mut kids = Kids::new();
    let set = keyed_set(&env, &BEFORE);
    let holder = match stop_holder(&set, &mut kids, writes / 2, update) {
        Holder::Stopped(pid) => pid,
        Holder::Finished => panic!("the update ended before write {}", writes / 2),
    };
    let s2 = set.clone();
    let remover = kids.spawn(move || rc(s2.remove()));
    wait_asleep_in_futex(remover);
    let s2 = set.clone();
    promptly(&mut kids, "semget while IPC_RMID waits", move || {
        match s2.namespace().semget(KEY, 0, 0) {
            Ok(id) if id == s2.id() => Ok(()),
            other => Err(format!("semget: {other:?}, the set's id is {}", s2.id())),
        }
    });
    resume(&mut kids, holder, "semget");
    kids.expect_exit(remover, OK, "the remover, once the holder continued");
    assert_eq!(set.value(0), Err(Error::Invalid), "the set is removed");
}
