//! Multi-process integration tests for SEMANTICS.md sections D (what an
//! operation does), E (SEM_UNDO) and G (counters and times).
//!
//! Every test uses real processes (fork, or one re-exec of this binary), its
//! own namespace, a watchdog, and synchronises only on observable state
//! (GETNCNT/GETZCNT, values, a pipe, /proc), never on sleeps. Timing is never
//! a pass/fail criterion. Children report through their exit code: 0 for
//! success, the errno of a failed call, or 200+k for a failed check k inside
//! the child (see `support::describe`).
//!
//! What each test covers:
//!
//! | test | SEMANTICS.md |
//! |------|--------------|
//! | `d5_d6_the_waker_performs_the_sleepers_op` | D5, D6, G (sempid of a completed sleeper) |
//! | `d7_fifo_order_among_waiters_that_can_all_proceed` | D5, D7 (FIFO) |
//! | `d7_fifo_skips_a_waiter_that_cannot_proceed` | D7 (skipping, no starvation protection), G (ncnt) |
//! | `d7_zero_waiters_complete_before_alter_waiters` | D5, D7 (zero waiters first), G (zcnt) |
//! | `d7_complex_waiter_keeps_fifo_with_simple_waiters` | D5 (merged FIFO), D7 (skip + restart from the head), G |
//! | `g_counts_follow_the_first_blocking_op` | G (ncnt/zcnt count the first blocking op; it moves on retry) |
//! | `g_a_killed_waiter_stops_counting` | G (a killed waiter stops counting), D6 |
//! | `d8_an_error_found_on_retry_is_handed_to_the_sleeper` | D3, D8 (EAGAIN and ERANGE handed over) |
//! | `d9_timeouts_give_eagain` | D9 (timeout → EAGAIN, `{0,0}` → EAGAIN at once) |
//! | `d10_a_signal_gives_eintr_even_with_sa_restart` | D9, D10 (EINTR, never restarted), G |
//! | `d10_sigstop_then_sigcont_gives_eintr` | D10 (EINTR after SIGSTOP/SIGCONT) |
//! | `d11_rmid_wakes_every_waiter_with_eidrm` | D11, C6 (old id → EINVAL) |
//! | `e4_undo_is_applied_at_normal_exit` | E1, E2, E4 (value and sempid) |
//! | `e4_undo_is_applied_after_death_by_an_unhandled_signal` | E4 (SIGTERM) |
//! | `e6_undo_is_applied_after_sigkill` | E6, D6 (a waiter gets the unit) |
//! | `e4_undo_is_clamped_at_exit` | E4 (clamp to 0 and to SEMVMX) |
//! | `e3_setval_clears_the_adjustment` | E3 |
//! | `e5_threads_share_one_undo_record` | E5 (threads) |
//! | `e5_a_forked_child_starts_with_no_undo` | E5 (fork) |
//! | `e5_exec_keeps_the_undo` | E5 (exec) |
//! | `g_sempid_otime_and_ctime_rules` | D4, G (sempid, otime, ctime), B (new set) |
//! | `fork_child_uses_the_inherited_set` | DESIGN "facts": fork without exec |
//! | `many_processes_on_a_mutex_lose_no_increment` | D1, D5–D7 under contention, E2 |
//! | `unrelated_process_finds_the_set_by_key` | cross-process by name and key (re-exec) |
// The ban on std atomics, fences and raw futex calls (clippy.toml) keeps them
// inside the library's shim; this program is not the library: its atomics
// are its own (process-local counters, or words of a mapping it made), and
// its raw futex and semtimedop calls are the competitors it measures.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod support;

use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use shmsem::sysv::{Sembuf, Timespec, IPC_NOWAIT, SEMVMX};
use shmsem::{Error, Namespace, Op, SemaphoreSet};

use support::*;

const NOWAIT: i16 = IPC_NOWAIT as i16;
const VMX: u16 = SEMVMX as u16;

fn sb(num: u16, op: i16, flg: i16) -> Sembuf {
    Sembuf::new(num, op, flg)
}

fn my_pid() -> i32 {
    std::process::id() as i32
}

/// A V that cannot block (a positive op never blocks); unwrapped.
fn post(set: &SemaphoreSet, n: u16, k: i16) {
    set.op(&[Op::post(n, k)])
        .unwrap_or_else(|e| panic!("V({n}, +{k}): {e}"));
}

// ---------------------------------------------------------------- D5 / D6

#[test]
fn d5_d6_the_waker_performs_the_sleepers_op() {
    let env = TestEnv::new("d5d6", 60);
    let set = env.set_with(&[0]);
    let mut kids = Kids::new();

    // A SETVAL completes a -2 sleeper: the value is 3 at once.
    let a = kids.spawn(|| rc(set.op(&[Op::wait(0, 2)])));
    wait_ncnt(&set, 0, 1);
    set.set_value(0, 5).unwrap();
    assert_eq!(
        val(&set, 0),
        3,
        "GETVAL right after SETVAL 5 with a -2 sleeper"
    );
    assert_eq!(sempid(&set, 0), a.as_raw(), "GETPID: the completed sleeper");
    assert_eq!(ncnt(&set, 0), 0, "GETNCNT after the hand-off");
    kids.expect_exit(a, OK, "the sleeper's P(-2)");

    // A V completes a -4 sleeper: the value is 0 at once.
    let b = kids.spawn(|| rc(set.op(&[Op::wait(0, 4)])));
    wait_ncnt(&set, 0, 1);
    post(&set, 0, 1);
    assert_eq!(
        val(&set, 0),
        0,
        "GETVAL right after V(+1) with a -4 sleeper at 3"
    );
    assert_eq!(sempid(&set, 0), b.as_raw(), "GETPID: the completed sleeper");
    assert_eq!(ncnt(&set, 0), 0);
    kids.expect_exit(b, OK, "the sleeper's P(-4)");
}

// ---------------------------------------------------------------- D7

#[test]
fn d7_fifo_order_among_waiters_that_can_all_proceed() {
    let env = TestEnv::new("d7fifo", 60);
    let set = env.set_with(&[0]);
    let mut kids = Kids::new();

    let mut waiters: Vec<Pid> = Vec::new();
    for i in 0..3u32 {
        waiters.push(kids.spawn(|| rc(set.op(&[Op::wait(0, 1)]))));
        wait_ncnt(&set, 0, i + 1);
    }
    for (i, &w) in waiters.iter().enumerate() {
        post(&set, 0, 1);
        assert_eq!(
            sempid(&set, 0),
            w.as_raw(),
            "V #{i} completes the oldest waiter"
        );
        assert_eq!(val(&set, 0), 0);
        assert_eq!(ncnt(&set, 0), 2 - i as u32);
        kids.expect_exit(w, OK, &format!("waiter #{i}"));
    }
}

#[test]
fn d7_fifo_skips_a_waiter_that_cannot_proceed() {
    let env = TestEnv::new("d7skip", 60);
    let set = env.set_with(&[0]);
    let mut kids = Kids::new();

    let a = kids.spawn(|| rc(set.op(&[Op::wait(0, 2)])));
    wait_ncnt(&set, 0, 1);
    let b = kids.spawn(|| rc(set.op(&[Op::wait(0, 1)])));
    wait_ncnt(&set, 0, 2);

    // V(+1): A (-2, first in line) cannot proceed and is skipped; B completes.
    post(&set, 0, 1);
    assert_eq!(
        sempid(&set, 0),
        b.as_raw(),
        "V(+1) completes the -1 waiter B"
    );
    assert_eq!(val(&set, 0), 0);
    assert_eq!(ncnt(&set, 0), 1, "A is still waiting and counted");
    kids.expect_exit(b, OK, "B's P(-1)");
    assert!(kids.running(a).is_ok(), "A must still be blocked");

    // Value 1: A still cannot proceed.
    post(&set, 0, 1);
    assert_eq!(val(&set, 0), 1, "A must not take anything at value 1");
    assert_eq!(ncnt(&set, 0), 1);
    assert_eq!(sempid(&set, 0), my_pid());

    // Value 2: A completes.
    post(&set, 0, 1);
    assert_eq!(val(&set, 0), 0, "A took 2");
    assert_eq!(sempid(&set, 0), a.as_raw());
    assert_eq!(ncnt(&set, 0), 0);
    kids.expect_exit(a, OK, "A's P(-2)");
}

#[test]
fn d7_zero_waiters_complete_before_alter_waiters() {
    let env = TestEnv::new("d7zero", 60);
    let set = env.set_with(&[1, 0]);
    let mut kids = Kids::new();

    // Z waits for sem 0 to be zero.
    let z = kids.spawn(|| rc(set.op(&[Op::zero(0)])));
    wait_zcnt(&set, 0, 1);
    assert_eq!(ncnt(&set, 0), 0, "a zero waiter is not in GETNCNT");
    // A would make sem 0 non-zero again: [{0,+1},{1,-1}] blocks on sem 1.
    let a = kids.spawn(|| rc(set.op(&[Op::post(0, 1), Op::wait(1, 1)])));
    wait_ncnt(&set, 1, 1);
    assert_eq!(
        ncnt(&set, 0),
        0,
        "A counts only on its blocking op's semaphore"
    );
    assert_eq!(zcnt(&set, 1), 0);

    // One call makes sem 0 zero and lets A proceed. Zero waiters go first:
    // Z completes, then A puts sem 0 back to 1.
    set.op(&[Op::wait(0, 1), Op::post(1, 1)]).unwrap();
    assert_eq!(
        zcnt(&set, 0),
        0,
        "Z must have completed before A made sem 0 non-zero again"
    );
    assert_eq!(ncnt(&set, 1), 0, "A completed too");
    assert_eq!(vals(&set), vec![1, 0]);
    assert_eq!(
        sempid(&set, 0),
        a.as_raw(),
        "A's op came after Z's on sem 0"
    );
    assert_eq!(sempid(&set, 1), a.as_raw());
    kids.expect_exit(z, OK, "Z's wait-for-zero");
    kids.expect_exit(a, OK, "A's [{0,+1},{1,-1}]");
}

#[test]
fn d7_complex_waiter_keeps_fifo_with_simple_waiters() {
    let env = TestEnv::new("d7cplx", 60);
    let set = env.set_with(&[0, 0]);
    let mut kids = Kids::new();

    // Phase 1: C = [{0,-1},{1,-1}] queued before S = {0,-1}.
    let c = kids.spawn(|| rc(set.op(&[Op::wait(0, 1), Op::wait(1, 1)])));
    wait_ncnt(&set, 0, 1);
    let s = kids.spawn(|| rc(set.op(&[Op::wait(0, 1)])));
    wait_ncnt(&set, 0, 2);
    assert_eq!(ncnt(&set, 1), 0);

    // Sem 1 alone does not let C through: it needs both.
    post(&set, 1, 1);
    assert_eq!(vals(&set), vec![0, 1], "C must not take sem 1 alone");
    assert_eq!(ncnt(&set, 0), 2, "C still blocks on sem 0, S too");
    assert_eq!(ncnt(&set, 1), 0);

    // Sem 0 +1: C is first in line and can now proceed; S stays.
    post(&set, 0, 1);
    assert_eq!(vals(&set), vec![0, 0], "C took both");
    assert_eq!(
        sempid(&set, 0),
        c.as_raw(),
        "FIFO: C (queued first) completes, not S"
    );
    assert_eq!(sempid(&set, 1), c.as_raw());
    assert_eq!(ncnt(&set, 0), 1, "S still waits");
    kids.expect_exit(c, OK, "C's [{0,-1},{1,-1}]");
    post(&set, 0, 1);
    assert_eq!(sempid(&set, 0), s.as_raw());
    assert_eq!(ncnt(&set, 0), 0);
    kids.expect_exit(s, OK, "S's P");

    // Phase 2: C2 first in line but unable to proceed is skipped for S2.
    let c2 = kids.spawn(|| rc(set.op(&[Op::wait(0, 1), Op::wait(1, 1)])));
    wait_ncnt(&set, 0, 1);
    let s2 = kids.spawn(|| rc(set.op(&[Op::wait(0, 1)])));
    wait_ncnt(&set, 0, 2);
    post(&set, 0, 1);
    assert_eq!(
        sempid(&set, 0),
        s2.as_raw(),
        "C2 (sem 1 is 0) is skipped, S2 completes"
    );
    assert_eq!(vals(&set), vec![0, 0]);
    // The kernel retries C2 (it then blocks on sem 1), completes S2, and
    // restarts from the head: C2 is retried again and blocks on sem 0.
    assert_eq!(
        ncnt(&set, 0),
        1,
        "after the restart C2 blocks on sem 0 again"
    );
    assert_eq!(ncnt(&set, 1), 0);
    kids.expect_exit(s2, OK, "S2's P");
    post(&set, 1, 1);
    assert_eq!(vals(&set), vec![0, 1]);
    post(&set, 0, 1);
    assert_eq!(vals(&set), vec![0, 0]);
    assert_eq!(sempid(&set, 0), c2.as_raw());
    kids.expect_exit(c2, OK, "C2's [{0,-1},{1,-1}]");
}

// ---------------------------------------------------------------- G counts

#[test]
fn g_counts_follow_the_first_blocking_op() {
    let env = TestEnv::new("gcnt", 60);
    let set = env.set_with(&[0, 0]);
    let mut kids = Kids::new();

    // [{0,-1},{1,-1}] on [0,0]: counted on sem 0 only.
    let w = kids.spawn(|| rc(set.op(&[Op::wait(0, 1), Op::wait(1, 1)])));
    wait_ncnt(&set, 0, 1);
    assert_eq!(ncnt(&set, 1), 0, "only the first blocking op counts");
    // Sem 0 becomes available: the retry blocks on sem 1, the count moves.
    post(&set, 0, 1);
    assert_eq!(
        ncnt(&set, 0),
        0,
        "after the retry: no longer counted on sem 0"
    );
    assert_eq!(ncnt(&set, 1), 1, "after the retry: counted on sem 1");
    assert_eq!(vals(&set), vec![1, 0]);
    post(&set, 1, 1);
    assert_eq!(vals(&set), vec![0, 0]);
    assert_eq!((ncnt(&set, 0), ncnt(&set, 1)), (0, 0));
    kids.expect_exit(w, OK, "[{0,-1},{1,-1}]");

    // [{0,0},{1,-1}] on [1,0]: counted in GETZCNT of sem 0.
    set.set_value(0, 1).unwrap();
    let w2 = kids.spawn(|| rc(set.op(&[Op::zero(0), Op::wait(1, 1)])));
    wait_zcnt(&set, 0, 1);
    assert_eq!((ncnt(&set, 0), ncnt(&set, 1), zcnt(&set, 1)), (0, 0, 0));
    set.set_value(0, 0).unwrap();
    assert_eq!(
        zcnt(&set, 0),
        0,
        "after the retry: no longer in GETZCNT of sem 0"
    );
    assert_eq!(ncnt(&set, 1), 1, "after the retry: in GETNCNT of sem 1");
    post(&set, 1, 1);
    assert_eq!(vals(&set), vec![0, 0]);
    assert_eq!((zcnt(&set, 0), ncnt(&set, 1)), (0, 0));
    kids.expect_exit(w2, OK, "[{0,0},{1,-1}]");
}

#[test]
fn g_a_killed_waiter_stops_counting() {
    let env = TestEnv::new("gkill", 60);
    let set = env.set_with(&[0, 1]);
    let mut kids = Kids::new();

    let p = kids.spawn(|| rc(set.op(&[Op::wait(0, 1)])));
    let z = kids.spawn(|| rc(set.op(&[Op::zero(1)])));
    wait_ncnt(&set, 0, 1);
    wait_zcnt(&set, 1, 1);
    for pid in [p, z] {
        kids.signal(pid, Signal::SIGKILL);
        match kids.wait(pid, "killed waiter") {
            WaitStatus::Signaled(_, Signal::SIGKILL, _) => {}
            other => panic!("killed waiter: unexpected status {other:?}"),
        }
    }
    poll_until_within(
        UNDO_DEADLINE,
        "GETNCNT(0) == 0 and GETZCNT(1) == 0 after the waiters were killed",
        || ncnt(&set, 0) == 0 && zcnt(&set, 1) == 0,
    );
    // Nothing is handed to the dead.
    post(&set, 0, 1);
    assert_eq!(val(&set, 0), 1, "a V must not be handed to a killed waiter");
    assert_eq!(sempid(&set, 0), my_pid());
    set.set_value(1, 0).unwrap();
    assert_eq!(val(&set, 1), 0);
}

// ---------------------------------------------------------------- D8

#[test]
fn d8_an_error_found_on_retry_is_handed_to_the_sleeper() {
    let env = TestEnv::new("d8", 60);
    let ns = &env.ns;
    let mut kids = Kids::new();

    // EAGAIN: [{0,-1},{1,-1,NOWAIT}] sleeps on sem 0 (no NOWAIT there); when
    // sem 0 is available the retry blocks on sem 1, which has NOWAIT.
    let set = env.set_with(&[0, 0]);
    let id = set.id();
    let w = kids.spawn(|| rc(ns.semop(id, &[sb(0, -1, 0), sb(1, -1, NOWAIT)])));
    wait_ncnt(&set, 0, 1);
    assert_eq!(ncnt(&set, 1), 0);
    post(&set, 0, 1);
    assert_eq!(
        vals(&set),
        vec![1, 0],
        "nothing of the failed retry is applied"
    );
    assert_eq!(
        (ncnt(&set, 0), ncnt(&set, 1)),
        (0, 0),
        "the sleeper left the queue"
    );
    kids.expect_exit(w, libc::EAGAIN, "the sleeper whose retry hit IPC_NOWAIT");

    // ERANGE: [{0,-1},{1,+1}] with sem 1 at SEMVMX sleeps on sem 0 first;
    // the retry then overflows sem 1.
    let set2 = env.set_with(&[0, VMX]);
    let id2 = set2.id();
    let w2 = kids.spawn(|| rc(ns.semop(id2, &[sb(0, -1, 0), sb(1, 1, 0)])));
    wait_ncnt(&set2, 0, 1);
    post(&set2, 0, 1);
    assert_eq!(
        vals(&set2),
        vec![1, VMX],
        "nothing of the failed retry is applied"
    );
    assert_eq!(ncnt(&set2, 0), 0);
    kids.expect_exit(w2, libc::ERANGE, "the sleeper whose retry overflowed");
}

// ---------------------------------------------------------------- D9 / D10

#[test]
fn d9_timeouts_give_eagain() {
    let env = TestEnv::new("d9", 60);
    let ns = &env.ns;
    let set = env.set_with(&[0, 1]);
    let id = set.id();
    let mut kids = Kids::new();
    let ms50 = Timespec {
        tv_sec: 0,
        tv_nsec: 50_000_000,
    };
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };

    // In a child: a 50 ms timeout on a P and on a wait-for-zero.
    let c = kids.spawn(|| rc(ns.semtimedop(id, &[sb(0, -1, 0)], Some(&ms50))));
    kids.expect_exit(c, libc::EAGAIN, "P with a 50 ms timeout");
    let c = kids.spawn(|| rc(ns.semtimedop(id, &[sb(1, 0, 0)], Some(&ms50))));
    kids.expect_exit(c, libc::EAGAIN, "wait-for-zero with a 50 ms timeout");

    // Here: the same, and {0,0} with a blocking op fails at once.
    assert_eq!(
        ns.semtimedop(id, &[sb(0, -1, 0)], Some(&ms50)),
        Err(Error::WouldBlock)
    );
    assert_eq!(
        ns.semtimedop(id, &[sb(0, -1, 0)], Some(&zero)),
        Err(Error::WouldBlock),
        "{{0,0}} with a blocking P"
    );
    assert_eq!(
        ns.semtimedop(id, &[sb(1, 0, 0)], Some(&zero)),
        Err(Error::WouldBlock),
        "{{0,0}} with a blocking wait-for-zero"
    );
    assert_eq!(
        ns.semtimedop(id, &[sb(0, 1, 0), sb(1, -1, 0), sb(1, 0, 0)], Some(&zero)),
        Ok(()),
        "{{0,0}} with ops that can all proceed"
    );
    assert_eq!(vals(&set), vec![1, 0]);
    assert_eq!(
        (ncnt(&set, 0), zcnt(&set, 1)),
        (0, 0),
        "timed-out waiters left"
    );
}

extern "C" fn on_sigusr1(_: libc::c_int) {}

/// In a child: SIGUSR1 runs an empty handler installed with SA_RESTART.
fn install_usr1_handler_with_restart() {
    let act = SigAction::new(
        SigHandler::Handler(on_sigusr1),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing, so it is async-signal-safe.
    unsafe { sigaction(Signal::SIGUSR1, &act) }.expect("sigaction(SIGUSR1)");
}

#[test]
fn d10_a_signal_gives_eintr_even_with_sa_restart() {
    let env = TestEnv::new("d10", 60);
    let set = env.set_with(&[0, 1]);
    let mut kids = Kids::new();

    // (what, op, semaphore, counts in zcnt?, timeout)
    let cases: [(&str, Op, u16, bool, Option<Duration>); 3] = [
        ("untimed P", Op::wait(0, 1), 0, false, None),
        (
            "P with a 30 s timeout",
            Op::wait(0, 1),
            0,
            false,
            Some(Duration::from_secs(30)),
        ),
        ("untimed wait-for-zero", Op::zero(1), 1, true, None),
    ];
    for (what, op, n, zero, timeout) in cases {
        let count = |set: &SemaphoreSet| if zero { zcnt(set, n) } else { ncnt(set, n) };
        let child = kids.spawn(|| {
            install_usr1_handler_with_restart();
            let r = match timeout {
                None => set.op(&[op]),
                Some(t) => set.op_timeout(&[op], t),
            };
            match r {
                Err(Error::Interrupted) if count(&set) == 0 => OK,
                Err(Error::Interrupted) => CHECK_FAILED + 1, // still counted
                Ok(()) => CHECK_FAILED + 2,
                Err(e) => e.errno(),
            }
        });
        poll_until(&format!("{what}: the child is counted"), || {
            count(&set) == 1
        });
        wait_asleep_in_futex(child);
        kids.signal(child, Signal::SIGUSR1);
        kids.expect_exit(
            child,
            OK,
            &format!("{what}: EINTR expected, and the child no longer counted"),
        );
        assert_eq!(
            count(&set),
            0,
            "{what}: the interrupted waiter still counts"
        );
    }
    // The interrupted waiters took nothing and are not handed anything.
    post(&set, 0, 1);
    assert_eq!(vals(&set), vec![1, 1]);
    assert_eq!(sempid(&set, 0), my_pid());
}

#[test]
#[ignore = "known difference 1 in README.md: a timed futex wait is restarted after SIGSTOP/SIGCONT with no handler, so shmsem keeps waiting where the kernel returns EINTR"]
fn d10_sigstop_then_sigcont_gives_eintr() {
    let env = TestEnv::new("d10stop", 60);
    let set = env.set_with(&[0]);
    let mut kids = Kids::new();

    // No handler at all: the stop/continue alone ends the wait with EINTR.
    let child = kids.spawn(|| match set.op(&[Op::wait(0, 1)]) {
        Ok(()) => CHECK_FAILED + 1,
        r => rc(r),
    });
    wait_ncnt(&set, 0, 1);
    wait_asleep_in_futex(child);
    kids.signal(child, Signal::SIGSTOP);
    poll_until("the child is stopped", || process_state(child) == Some('T'));
    kids.signal(child, Signal::SIGCONT);
    kids.expect_exit(child, libc::EINTR, "P interrupted by SIGSTOP + SIGCONT");
    assert_eq!(ncnt(&set, 0), 0);
    post(&set, 0, 1);
    assert_eq!(val(&set, 0), 1);
}

// ---------------------------------------------------------------- D11

#[test]
fn d11_rmid_wakes_every_waiter_with_eidrm() {
    let env = TestEnv::new("d11", 60);
    let ns = &env.ns;
    let set = env.set_with(&[0, 1]);
    let id = set.id();
    let mut kids = Kids::new();

    let waiter = |ops: Vec<Op>, timeout: Option<Duration>| {
        let r = match timeout {
            None => set.op(&ops),
            Some(t) => set.op_timeout(&ops, t),
        };
        match r {
            Err(Error::Removed) => {}
            Ok(()) => return CHECK_FAILED + 1,
            Err(e) => return e.errno(),
        }
        // The old id is now unknown: EINVAL, not EIDRM.
        match set.value(0) {
            Err(Error::Invalid) => {}
            Ok(_) => return CHECK_FAILED + 2,
            Err(Error::Removed) => return CHECK_FAILED + 3,
            Err(_) => return CHECK_FAILED + 4,
        }
        match ns.semop(id, &[sb(0, 1, 0)]) {
            Err(Error::Invalid) => {}
            Ok(_) => return CHECK_FAILED + 5,
            Err(Error::Removed) => return CHECK_FAILED + 6,
            Err(_) => return CHECK_FAILED + 7,
        }
        OK
    };
    let children = [
        ("P(-1)", vec![Op::wait(0, 1)], None),
        (
            "P(-2), 30 s timeout",
            vec![Op::wait(0, 2)],
            Some(Duration::from_secs(30)),
        ),
        ("[{0,-1},{1,0}]", vec![Op::wait(0, 1), Op::zero(1)], None),
        ("wait-for-zero", vec![Op::zero(1)], None),
        ("[{1,0},{0,-1}]", vec![Op::zero(1), Op::wait(0, 1)], None),
    ];
    let mut pids = Vec::new();
    for (what, ops, timeout) in children {
        pids.push((what, kids.spawn(|| waiter(ops, timeout))));
    }
    wait_ncnt(&set, 0, 3);
    wait_zcnt(&set, 1, 2);

    set.remove().unwrap();
    for (what, pid) in pids {
        kids.expect_exit(pid, OK, &format!("waiter {what}: EIDRM, then EINVAL"));
    }
    assert_eq!(set.value(0), Err(Error::Invalid));
    assert_eq!(set.status().map(drop), Err(Error::Invalid));
    assert_eq!(set.op(&[Op::post(0, 1)]), Err(Error::Invalid));
    assert_eq!(
        set.op_timeout(&[Op::wait(0, 1)], Duration::from_millis(10)),
        Err(Error::Invalid)
    );
    assert_eq!(set.remove(), Err(Error::Invalid));
}

// ---------------------------------------------------------------- E

/// Semaphores of the undo tests: the one under test, a witness the child
/// also holds with SEM_UNDO (the parent takes it back to see that the
/// child's undo has been applied, all semaphores of a set at once), and a
/// "go" semaphore the child waits on before exiting.
const S: u16 = 0;
const WITNESS: u16 = 1;
const GO: u16 = 2;

/// In a child: wait for the parent's "go" (V on GO), then exit normally.
fn wait_go_then_exit(set: &SemaphoreSet) -> i32 {
    match set.op_timeout(&[Op::wait(GO, 1)], Duration::from_secs(30)) {
        Ok(()) => std::process::exit(OK),
        Err(e) => e.errno(),
    }
}

#[test]
fn e4_undo_is_applied_at_normal_exit() {
    let env = TestEnv::new("e4exit", 60);
    let set = env.set_with(&[1, 1]);
    let mut kids = Kids::new();

    let c = kids.spawn(|| {
        if let Err(e) = set.op(&[Op::wait(S, 1).undo(), Op::wait(WITNESS, 1).undo()]) {
            return e.errno();
        }
        std::process::exit(OK) // a normal exit (exit handlers run)
    });
    kids.expect_exit(c, OK, "P with SEM_UNDO, then exit(0)");
    // The kernel has the value back before waitpid returns; reading is all
    // the parent does here.
    poll_until_within(UNDO_DEADLINE, "GETVAL == 1 after the child's exit", || {
        val(&set, S) == 1
    });
    assert_eq!(val(&set, WITNESS), 1);
    assert_eq!(
        sempid(&set, S),
        c.as_raw(),
        "exit undo sets sempid to the exiting pid"
    );
    assert_eq!(sempid(&set, WITNESS), c.as_raw());
}

#[test]
fn e4_undo_is_applied_after_death_by_an_unhandled_signal() {
    let env = TestEnv::new("e4term", 60);
    let set = env.set_with(&[1, 1]);
    let holding = Signal1::new();
    let mut kids = Kids::new();

    let c = kids.spawn(|| {
        if let Err(e) = set.op(&[Op::wait(S, 1).undo(), Op::wait(WITNESS, 1).undo()]) {
            return e.errno();
        }
        holding.notify();
        loop {
            // SAFETY: pause() only sleeps until a signal arrives.
            unsafe { libc::pause() };
        }
    });
    holding.wait("the child holds the semaphore");
    assert_eq!(vals(&set), vec![0, 0]);
    kids.signal(c, Signal::SIGTERM);
    match kids.wait(c, "the child killed by SIGTERM") {
        WaitStatus::Signaled(_, Signal::SIGTERM, _) => {}
        other => panic!("expected death by SIGTERM, got {other:?}"),
    }
    take_within_undo_deadline(&set, WITNESS, "the child's undo after SIGTERM");
    assert_eq!(val(&set, S), 1, "the undo gave the unit back");
    assert_eq!(
        sempid(&set, S),
        c.as_raw(),
        "exit undo sets sempid to the dead pid"
    );
}

#[test]
fn e6_undo_is_applied_after_sigkill() {
    let env = TestEnv::new("e6kill", 60);
    let set = env.set_with(&[1, 1]);
    let holding = Signal1::new();
    let mut kids = Kids::new();
    let hold_and_sleep = || {
        if let Err(e) = set.op(&[Op::wait(S, 1).undo(), Op::wait(WITNESS, 1).undo()]) {
            return e.errno();
        }
        holding.notify();
        loop {
            // SAFETY: pause() only sleeps until a signal arrives.
            unsafe { libc::pause() };
        }
    };

    // Round 1: another process is already waiting when the holder dies.
    let h = kids.spawn(hold_and_sleep);
    holding.wait("the holder holds the semaphore");
    let w = kids.spawn(|| rc(set.op_timeout(&[Op::wait(S, 1)], Duration::from_secs(8))));
    wait_ncnt(&set, S, 1);
    kids.signal(h, Signal::SIGKILL);
    match kids.wait(h, "the holder") {
        WaitStatus::Signaled(_, Signal::SIGKILL, _) => {}
        other => panic!("expected death by SIGKILL, got {other:?}"),
    }
    kids.expect_exit(
        w,
        OK,
        "the waiter gets the unit the killed holder's undo gave back",
    );
    assert_eq!(
        vals(&set),
        vec![0, 1],
        "the waiter took sem 0; the witness is back"
    );
    assert_eq!(
        sempid(&set, WITNESS),
        h.as_raw(),
        "exit undo sets sempid to the dead pid"
    );

    // Round 2: the parent itself does the blocking P after the kill.
    post(&set, S, 1);
    let h2 = kids.spawn(hold_and_sleep);
    holding.wait("the second holder holds the semaphore");
    assert_eq!(vals(&set), vec![0, 0]);
    kids.signal(h2, Signal::SIGKILL);
    kids.wait(h2, "the second holder");
    take_within_undo_deadline(&set, S, "the parent's P after the holder's SIGKILL");
    assert_eq!(
        vals(&set),
        vec![0, 1],
        "the witness came back with the same undo"
    );
    assert_eq!(sempid(&set, WITNESS), h2.as_raw());
}

#[test]
fn e4_undo_is_clamped_at_exit() {
    let env = TestEnv::new("e4clamp", 60);
    let mut kids = Kids::new();

    // Down to 0: the child's V(+5) gives adj -5; the parent takes 4; at exit
    // 1 + (-5) = -4 is clamped to 0.
    let set = env.set_with(&[0, 1, 0]);
    let c = kids.spawn(|| {
        if let Err(e) = set.op(&[Op::post(S, 5).undo(), Op::wait(WITNESS, 1).undo()]) {
            return e.errno();
        }
        wait_go_then_exit(&set)
    });
    wait_ncnt(&set, GO, 1);
    assert_eq!(vals(&set), vec![5, 0, 0]);
    set.op(&[Op::wait(S, 4)]).unwrap();
    post(&set, GO, 1);
    kids.expect_exit(c, OK, "V(+5) with SEM_UNDO, then exit(0)");
    take_within_undo_deadline(&set, WITNESS, "the child's exit undo");
    assert_eq!(val(&set, S), 0, "1 + adj(-5) is clamped to 0");
    assert_eq!(sempid(&set, S), c.as_raw());

    // Up to SEMVMX: the child's P(-5) gives adj +5; the parent adds 32765;
    // at exit 32765 + 5 is clamped to 32767.
    let set = env.set_with(&[5, 1, 0]);
    let c = kids.spawn(|| {
        if let Err(e) = set.op(&[Op::wait(S, 5).undo(), Op::wait(WITNESS, 1).undo()]) {
            return e.errno();
        }
        wait_go_then_exit(&set)
    });
    wait_ncnt(&set, GO, 1);
    assert_eq!(vals(&set), vec![0, 0, 0]);
    post(&set, S, VMX as i16 - 2);
    post(&set, GO, 1);
    kids.expect_exit(c, OK, "P(-5) with SEM_UNDO, then exit(0)");
    take_within_undo_deadline(&set, WITNESS, "the child's exit undo");
    assert_eq!(val(&set, S), VMX, "32765 + adj(+5) is clamped to SEMVMX");
    assert_eq!(sempid(&set, S), c.as_raw());
}

#[test]
fn e3_setval_clears_the_adjustment() {
    let env = TestEnv::new("e3", 60);
    let set = env.set_with(&[1, 1, 0]);
    let mut kids = Kids::new();

    let c = kids.spawn(|| {
        if let Err(e) = set.op(&[Op::wait(S, 1).undo(), Op::wait(WITNESS, 1).undo()]) {
            return e.errno();
        }
        wait_go_then_exit(&set)
    });
    wait_ncnt(&set, GO, 1);
    assert_eq!(vals(&set), vec![0, 0, 0]);
    set.set_value(S, 3).unwrap(); // clears every process's adj[S]
    post(&set, GO, 1);
    kids.expect_exit(c, OK, "P with SEM_UNDO, then exit(0)");
    take_within_undo_deadline(&set, WITNESS, "the child's exit undo (witness)");
    assert_eq!(
        val(&set, S),
        3,
        "SETVAL cleared the child's +1 adjustment (4 means it was still applied)"
    );
}

#[test]
fn e5_threads_share_one_undo_record() {
    let env = TestEnv::new("e5thr", 60);
    let set = env.set_with(&[2, 1]);
    let mut kids = Kids::new();

    let c = kids.spawn(|| {
        // One thread takes a unit of S with SEM_UNDO and ends.
        let r = std::thread::scope(|s| s.spawn(|| set.op(&[Op::wait(S, 1).undo()])).join());
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return e.errno(),
            Err(_) => return PANICKED,
        }
        if set.value(S) != Ok(1) {
            return CHECK_FAILED + 1; // the thread's end undid its op
        }
        // Another takes the second unit and the witness, and ends.
        let r = std::thread::scope(|s| {
            s.spawn(|| set.op(&[Op::wait(S, 1).undo(), Op::wait(WITNESS, 1).undo()]))
                .join()
        });
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return e.errno(),
            Err(_) => return PANICKED,
        }
        // A call that takes the set's lock, in case ended threads are taken
        // for dead processes by whoever looks for the dead.
        if let Err(e) = set.op(&[Op::post(WITNESS, 1), Op::wait(WITNESS, 1)]) {
            return e.errno();
        }
        if set.values() != Ok(vec![0, 0]) {
            return CHECK_FAILED + 2; // a thread's end undid something
        }
        std::process::exit(OK)
    });
    kids.expect_exit(c, OK, "two threads' P with SEM_UNDO, then exit(0)");
    take_within_undo_deadline(&set, WITNESS, "the process's exit undo");
    assert_eq!(
        val(&set, S),
        2,
        "the process's exit gave back both threads' units"
    );
    assert_eq!(sempid(&set, S), c.as_raw());
}

#[test]
fn e5_a_forked_child_starts_with_no_undo() {
    let env = TestEnv::new("e5fork", 60);
    let set = env.set_with(&[1, 1]);
    let mut kids = Kids::new();

    // The test is the grandparent; P is the parent, C its forked child.
    let p = kids.spawn(|| {
        if let Err(e) = set.op(&[Op::wait(S, 1).undo()]) {
            return e.errno();
        }
        let mut grandkids = Kids::new();
        let c = grandkids.spawn(|| {
            if let Err(e) = set.op(&[Op::wait(WITNESS, 1).undo()]) {
                return e.errno();
            }
            std::process::exit(OK) // runs exit handlers inherited from P
        });
        match grandkids.wait(c, "C") {
            WaitStatus::Exited(_, OK) => {}
            _ => return CHECK_FAILED + 1,
        }
        // C's own adjustment comes back...
        if set
            .op_timeout(&[Op::wait(WITNESS, 1)], UNDO_DEADLINE)
            .is_err()
        {
            return CHECK_FAILED + 2;
        }
        // ...and P's is untouched: C did not inherit it.
        if set.value(S) != Ok(0) {
            return CHECK_FAILED + 3;
        }
        if set.op(&[Op::post(WITNESS, 1)]).is_err() {
            return CHECK_FAILED + 4;
        }
        std::process::exit(OK)
    });
    kids.expect_exit(p, OK, "P (P with undo, fork C, C exits, S still taken)");
    take_within_undo_deadline(&set, S, "P's own undo at its exit");
    assert_eq!(vals(&set), vec![0, 1]);
}

#[test]
fn e5_exec_keeps_the_undo() {
    let env = TestEnv::new("e5exec", 60);
    let set = env.set_with(&[1]);
    let mut kids = Kids::new();

    // A pipe the exec'd shell reads until the parent closes it; both ends
    // close-on-exec (dup2 onto stdin clears the flag of the copy).
    let (read, write) = pipe();

    let c = kids.spawn(|| {
        if let Err(e) = set.op(&[Op::wait(S, 1).undo()]) {
            return e.errno();
        }
        // SAFETY: dup2 between two descriptors of this process.
        if unsafe { libc::dup2(read.as_raw_fd(), 0) } < 0 {
            return CHECK_FAILED + 1;
        }
        let sh = c"/bin/sh";
        let argv = [c"sh", c"-c", c"read x; exit 0"];
        let _ = nix::unistd::execv(sh, &argv);
        CHECK_FAILED + 2 // exec failed
    });
    drop(read);
    poll_until("the child took the unit", || val(&set, S) == 0);
    let my_exe = std::fs::read_link("/proc/self/exe").unwrap();
    poll_until("the child exec'd /bin/sh", || {
        std::fs::read_link(format!("/proc/{c}/exe")).is_ok_and(|p| p != my_exe)
    });
    // The process lives on after exec, so its undo must not be applied yet.
    assert_eq!(
        set.op_timeout(&[Op::wait(S, 1)], Duration::from_secs(1)),
        Err(Error::WouldBlock),
        "the undo was applied while the process still lived (after exec)"
    );
    drop(write); // the shell reads EOF and exits
    kids.expect_exit(c, OK, "the exec'd shell");
    take_within_undo_deadline(&set, S, "the undo at the exit of the exec'd program");
    assert_eq!(val(&set, S), 0);
}

// ---------------------------------------------------------------- G times

#[test]
fn g_sempid_otime_and_ctime_rules() {
    let env = TestEnv::new("gtimes", 60);
    let set = SemaphoreSet::create_private(&env.ns, 2, 0o600).unwrap();
    let mut kids = Kids::new();

    // A new set: otime 0, sempids 0, ctime set.
    let st = set.status().unwrap();
    assert_eq!(st.otime, 0, "otime of a new set");
    assert!(st.ctime > 0, "ctime of a new set");
    assert_eq!((sempid(&set, 0), sempid(&set, 1)), (0, 0));

    // A successful op: sempid of the semaphores it names, otime.
    let a = kids.spawn(|| rc(set.op(&[Op::post(0, 1)])));
    kids.expect_exit(a, OK, "V");
    assert_eq!(sempid(&set, 0), a.as_raw());
    assert_eq!(sempid(&set, 1), 0, "a semaphore the call did not name");
    let otime1 = set.status().unwrap().otime;
    assert!(otime1 > 0, "otime after a successful semop");

    // A failing op changes neither (even though its first op could proceed).
    next_second_after(otime1);
    let b = kids.spawn(|| rc(set.op(&[Op::wait(0, 1), Op::wait(1, 1).nowait()])));
    kids.expect_exit(b, libc::EAGAIN, "[{0,-1},{1,-1,NOWAIT}]");
    assert_eq!(
        set.status().unwrap().otime,
        otime1,
        "otime after a failed semop"
    );
    assert_eq!(sempid(&set, 0), a.as_raw(), "sempid after a failed semop");
    assert_eq!(vals(&set), vec![1, 0]);

    // SETVAL completing nobody: ctime and sempid change, otime does not.
    let t = next_second_after(st.ctime.max(otime1));
    set.set_value(1, 2).unwrap();
    let st2 = set.status().unwrap();
    assert!(st2.ctime >= t, "ctime after SETVAL: {} < {t}", st2.ctime);
    assert_eq!(
        st2.otime, otime1,
        "SETVAL that completes nobody leaves otime"
    );
    assert_eq!(sempid(&set, 1), my_pid(), "SETVAL sets sempid");

    // A wait-for-zero that succeeds at once sets sempid and otime too.
    set.set_value(1, 0).unwrap();
    let t = next_second_after(otime1);
    let z = kids.spawn(|| rc(set.op(&[Op::zero(1)])));
    kids.expect_exit(z, OK, "wait-for-zero on 0");
    assert_eq!(sempid(&set, 1), z.as_raw(), "a zero op sets sempid");
    let otime2 = set.status().unwrap().otime;
    assert!(otime2 >= t, "otime after a wait-for-zero: {otime2} < {t}");

    // A sleeper completed by SETVAL: sempid is the sleeper's, otime is set.
    let d = kids.spawn(|| rc(set.op(&[Op::wait(0, 3)])));
    wait_ncnt(&set, 0, 1);
    let t = next_second_after(otime2);
    set.set_value(0, 3).unwrap();
    assert_eq!(val(&set, 0), 0);
    assert_eq!(
        sempid(&set, 0),
        d.as_raw(),
        "sempid of a sleeper completed by SETVAL"
    );
    let otime3 = set.status().unwrap().otime;
    assert!(
        otime3 >= t,
        "otime after SETVAL completed a sleeper: {otime3} < {t}"
    );
    kids.expect_exit(d, OK, "the sleeper");
}

// ---------------------------------------------------------------- fork

#[test]
fn fork_child_uses_the_inherited_set() {
    let env = TestEnv::new("forkinh", 60);
    let set = env.set_with(&[0, 0]);
    let ns_name = env.ns.name().to_string();
    let id = set.id();
    let mut kids = Kids::new();

    // Through the parent's handle and mapping.
    let c = kids.spawn(|| {
        if let Err(e) = set.op(&[Op::post(0, 1)]) {
            return e.errno();
        }
        rc(set.op(&[Op::wait(1, 1)]))
    });
    wait_ncnt(&set, 1, 1);
    assert_eq!(val(&set, 0), 1);
    assert_eq!(sempid(&set, 0), c.as_raw());
    post(&set, 1, 1);
    assert_eq!(sempid(&set, 1), c.as_raw());
    kids.expect_exit(c, OK, "the child on the inherited set");

    // Through a namespace the child opens itself by name.
    let c2 = kids.spawn(|| {
        let ns = match Namespace::open(&ns_name) {
            Ok(ns) => ns,
            Err(e) => return e.errno(),
        };
        let set = SemaphoreSet::from_id(&ns, id);
        rc(set.op(&[Op::wait(0, 2)]))
    });
    wait_ncnt(&set, 0, 1);
    post(&set, 0, 1);
    assert_eq!(vals(&set), vec![0, 0]);
    assert_eq!(sempid(&set, 0), c2.as_raw());
    kids.expect_exit(c2, OK, "the child on a namespace it opened");
}

/// A counter in shared memory, shared with forked children.
struct SharedCounter {
    cell: Shared<AtomicU64>,
}

impl SharedCounter {
    fn new() -> SharedCounter {
        SharedCounter {
            // SAFETY: an AtomicU64 is valid when zero and needs no drop.
            cell: unsafe { Shared::zeroed() },
        }
    }

    /// A deliberately non-atomic increment (a load, then a store): it loses
    /// counts unless callers exclude each other. Mutual exclusion is what
    /// is under test.
    fn increment(&self) {
        let v = self.cell.load(Ordering::Relaxed);
        for _ in 0..20 {
            std::hint::spin_loop();
        }
        self.cell.store(v + 1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.cell.load(Ordering::Relaxed)
    }
}

#[test]
fn many_processes_on_a_mutex_lose_no_increment() {
    const PROCS: usize = 4;
    const ITERS: usize = 2000;
    let env = TestEnv::new("mutex", 240);
    let set = env.set_with(&[1]);
    let counter = SharedCounter::new();
    let mut kids = Kids::new();

    let mut pids = Vec::new();
    for i in 0..PROCS {
        // Half the processes use SEM_UNDO (the slow path with adjustments).
        let (p, v) = if i % 2 == 0 {
            (Op::wait(0, 1), Op::post(0, 1))
        } else {
            (Op::wait(0, 1).undo(), Op::post(0, 1).undo())
        };
        let counter = &counter;
        let set = &set;
        pids.push(kids.spawn(move || {
            for _ in 0..ITERS {
                if let Err(e) = set.op(&[p]) {
                    return e.errno();
                }
                counter.increment();
                if let Err(e) = set.op(&[v]) {
                    return e.errno();
                }
            }
            OK
        }));
    }
    let start = Instant::now();
    for pid in pids {
        let limit = Duration::from_secs(180).saturating_sub(start.elapsed());
        match kids.wait_within(pid, limit, "a mutex worker") {
            WaitStatus::Exited(_, OK) => {}
            other => panic!("a mutex worker ended with {other:?}"),
        }
    }
    assert_eq!(counter.get(), (PROCS * ITERS) as u64, "lost increments");
    assert_eq!(val(&set, 0), 1);
    assert_eq!(ncnt(&set, 0), 0);
}

// ---------------------------------------------------------------- re-exec

const ROLE_ENV: &str = "SHMSEM_SEMANTICS_ROLE";

/// Not a test of its own: the body of the unrelated process started by
/// `unrelated_process_finds_the_set_by_key` (it does nothing otherwise).
#[test]
fn reexec_child_role() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let code = (|| {
        let (ns_name, key) = role.split_once(':').ok_or(CHECK_FAILED + 1)?;
        let key: i32 = key.parse().map_err(|_| CHECK_FAILED + 2)?;
        let ns = Namespace::open(ns_name).map_err(Error::errno)?;
        let id = ns.semget(key, 0, 0).map_err(Error::errno)?;
        let set = SemaphoreSet::from_id(&ns, id);
        set.op_timeout(&[Op::wait(0, 2)], Duration::from_secs(30))
            .map_err(Error::errno)?;
        Ok::<i32, i32>(OK)
    })()
    .unwrap_or_else(|code| code);
    std::process::exit(code);
}

#[test]
fn unrelated_process_finds_the_set_by_key() {
    let env = TestEnv::new("reexec", 60);
    let key = 0x5e_0000 | (std::process::id() as i32 & 0xffff);
    let set = SemaphoreSet::create(&env.ns, key, 1, 0o600).unwrap();

    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        rerun_self("reexec_child_role")
            .env(ROLE_ENV, format!("{}:{key}", env.ns.name()))
            .stdout(Stdio::null())
            .spawn()
            .expect("re-exec the test binary"),
    );
    wait_ncnt(&set, 0, 1);
    post(&set, 0, 3);
    assert_eq!(
        val(&set, 0),
        1,
        "the unrelated process's -2 was performed by the V"
    );
    assert_eq!(sempid(&set, 0), child.0.id() as i32);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the re-exec'd child did not exit"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(
        status.code(),
        Some(OK),
        "the re-exec'd child: {}",
        describe(status.code().unwrap_or(-1))
    );
}
