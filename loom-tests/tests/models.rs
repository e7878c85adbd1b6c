//! Loom models of the real set code (src/set/) on a heap-built set.
//!
//! Run (bounded, as CI): RUSTFLAGS="--cfg shmsem_loom" cargo test -p loom-tests --release
//! Unbounded: add LOOM_UNBOUNDED=1. Every model names, in its comment, the
//! mutant (`--cfg shmsem_mutant="..."`) under which it must fail;
//! loom-tests/run-mutants.sh checks both directions. See README.md.
//!
//! Time in the models is loom's clock (src/sync/mod.rs): it starts at 1 and
//! moves only when a "timeout thread" calls `advance_clock`; a futex
//! sleeper whose deadline has then passed returns TimedOut, as a timer
//! firing would.
//!
//! Every thread of a model starts with `actor(...)` (the main thread calls
//! `gate()` after spawning): see `gate` in src/lib.rs for why loom needs it.
#![cfg(shmsem_loom)]

use loom::sync::Arc;
use loom_tests::*;
use shmsem::__private::{
    advance_clock, HandlerMark, HeapSet, Host, Me, NoDeaths, Ordering, SetView, Sweep,
};
use shmsem::layout::{ProcState, SemWord, SlotStatus, PROC_FREE, SEM_UNDO};
use shmsem::sysv::Sembuf;
use shmsem::Error;

const UNDO: i16 = SEM_UNDO as i16;

/// a. A blocking decrement racing an increment: no lost wake-up (loom
/// would report a deadlock) and the final value is 0.
/// Mutant `no_waiters_bit`: a section that queues a sleeper does not leave
/// WAITERS on the word, so the increment takes the fast path and never
/// completes the sleeper.
#[test]
fn blocking_p_races_v() {
    check("blocking_p_races_v", 3, || {
        let set = Arc::new(HeapSet::new(1, 2, 2));
        let s2 = set.clone();
        let t = actor(move || {
            let me = s2.register(1, 2);
            semop(&s2, &me, &[Sembuf::new(0, -1, 0)], NEVER, &NoDeaths)
        });
        gate();
        let me = set.register(0, 1);
        semop(&set, &me, &[Sembuf::new(0, 1, 0)], NEVER, &NoDeaths).unwrap();
        t.join().unwrap().unwrap();
        assert_eq!(value(&set, &me, 0, &NoDeaths), 0);
        assert_quiescent(&set.view());
    });
}

/// a'. A wait-for-zero racing the decrement that makes the value zero: the
/// sleeper returns, the value is 0.
/// Mutant `no_wake`: the section that completes a sleeper does not wake it.
#[test]
fn zero_wait_races_decrement() {
    check("zero_wait_races_decrement", 3, || {
        let set = Arc::new(HeapSet::new(1, 2, 2));
        let me = set.register(0, 1);
        setval(&set, &me, 0, 1, &NoDeaths);
        let s2 = set.clone();
        let t = actor(move || {
            let me = s2.register(1, 2);
            semop(&s2, &me, &[Sembuf::new(0, 0, 0)], NEVER, &NoDeaths)
        });
        gate();
        semop(&set, &me, &[Sembuf::new(0, -1, 0)], NEVER, &NoDeaths).unwrap();
        t.join().unwrap().unwrap();
        assert_eq!(value(&set, &me, 0, &NoDeaths), 0);
        assert_quiescent(&set.view());
    });
}

/// a''. The global lock among three contenders (SEM_UNDO keeps every call
/// on the slow path): mutual exclusion (no increment lost: the value is 3)
/// and no lost wake-up of a sleeper on the lock word (no deadlock).
/// Under loom a contender spins once before it sleeps (`LOCK_SPINS`), so
/// the sleeping protocol is reached.
/// Mutant `lock_drops_contended`: a sleeper that takes the freed lock does
/// not keep CONTENDED in the lock word, so its unlock wakes nobody while
/// the third contender sleeps.
#[test]
fn lock_three_contenders() {
    check("lock_three_contenders", 3, || {
        let set = Arc::new(HeapSet::new(1, 3, 2));
        let others: Vec<_> = (1..3)
            .map(|p| {
                let s2 = set.clone();
                actor(move || {
                    // Process 2's contender is not its process's lone
                    // thread: it counts itself in `locking` (a
                    // read-modify-write) instead of `holding`.
                    let me = Me {
                        lone: p != 2,
                        ..s2.register(p, p as i32 + 1)
                    };
                    semop(&s2, &me, &[Sembuf::new(0, 1, UNDO)], NEVER, &NoDeaths)
                })
            })
            .collect();
        gate();
        let me = set.register(0, 1);
        semop(&set, &me, &[Sembuf::new(0, 1, UNDO)], NEVER, &NoDeaths).unwrap();
        for t in others {
            t.join().unwrap().unwrap();
        }
        assert_eq!(value(&set, &me, 0, &NoDeaths), 3, "an increment was lost");
        let v = set.view();
        assert_quiescent(&v);
        for p in 0..3 {
            let pe = v.proc(p).unwrap();
            let (h, l) = (
                pe.holding.load(Ordering::SeqCst),
                pe.locking.load(Ordering::SeqCst),
            );
            assert_eq!((h, l), (0, 0), "process {p}: still counted as locking");
        }
    });
}

/// b. A fast-path single op racing a multi-op call that enters global mode
/// (and blocks until the single op's unit arrives): no lost update, no
/// lost wake-up, and while the multi-op call is queued every word it names
/// keeps a slow bit (GLOBAL or WAITERS), so no fast-path CAS can bypass it.
/// Mutant `no_global_marks`: entering global mode does not mark the words
/// (global mode as a separate flag only: DESIGN.md decision 5).
#[test]
fn fast_op_races_global() {
    check("fast_op_races_global", 3, || {
        let set = Arc::new(HeapSet::new(2, 2, 2));
        let s2 = set.clone();
        let t = actor(move || {
            let me = s2.register(1, 2);
            let ops = [Sembuf::new(0, -1, 0), Sembuf::new(1, 1, 0)];
            semop(&s2, &me, &ops, NEVER, &NoDeaths)
        });
        gate();
        let me = set.register(0, 1);
        // The queued complex operation (if it is queued now) is protected
        // by slow bits on both of its words. Status read before and after
        // the words: QUEUED both times means it was queued throughout.
        let v = set.view();
        let q = v.queue_slot(0).unwrap();
        let before = q.status.load(Ordering::Acquire);
        let words = [0, 1].map(|n| v.sem(n).unwrap().word.load(Ordering::Acquire));
        if SlotStatus::from_raw(before).is_queued() && q.status.load(Ordering::Acquire) == before {
            for (n, &w) in words.iter().enumerate() {
                assert!(
                    SemWord::from_raw(w).is_slow(),
                    "sem {n} unprotected while queued"
                );
            }
        }
        semop(&set, &me, &[Sembuf::new(0, 1, 0)], NEVER, &NoDeaths).unwrap();
        t.join().unwrap().unwrap();
        assert_eq!(value(&set, &me, 0, &NoDeaths), 0);
        assert_eq!(value(&set, &me, 1, &NoDeaths), 1);
        assert_quiescent(&set.view());
    });
}

/// c. GETALL (lock-free snapshot, falling back to the lock as the
/// registry does) racing a multi-op writer: every snapshot is a state
/// that existed, (0,1) or (1,0).
/// Mutant `snapshot_no_seq_recheck`: the snapshot does not re-check the
/// sequence counter that brackets multi-word writes.
#[test]
fn snapshot_races_multi_op() {
    check("snapshot_races_multi_op", 3, || {
        let set = Arc::new(HeapSet::new(2, 2, 2));
        let me = set.register(0, 1);
        setval(&set, &me, 1, 1, &NoDeaths);
        let s2 = set.clone();
        let t = actor(move || {
            let me = s2.register(1, 2);
            let ops = [Sembuf::new(0, 1, 0), Sembuf::new(1, -1, 0)];
            semop(&s2, &me, &ops, NEVER, &NoDeaths)
        });
        gate();
        let v = set.view();
        let mut out = [0u16; 2];
        if v.snapshot(&mut out).is_none() {
            v.lock(&me, &NoDeaths).read_all(&mut out);
        }
        assert!(
            out == [0, 1] || out == [1, 0],
            "snapshot {out:?} never existed"
        );
        t.join().unwrap().unwrap();
    });
}

/// c'. GETALL racing two fast-path increments (which do not touch the
/// sequence counter): the snapshot is (0,0), (1,0) or (1,1), never (0,1).
/// Mutant `snapshot_single_read`: the words are collected once instead of
/// twice (the versions in the words are what catches fast-path writes).
#[test]
fn snapshot_races_fast_ops() {
    check("snapshot_races_fast_ops", 3, || {
        let set = Arc::new(HeapSet::new(2, 2, 2));
        let s2 = set.clone();
        let t = actor(move || {
            let v = s2.view();
            v.fast_op(Sembuf::new(0, 1, 0), 2).unwrap().unwrap();
            v.fast_op(Sembuf::new(1, 1, 0), 2).unwrap().unwrap();
        });
        gate();
        let me = set.register(0, 1);
        let v = set.view();
        let mut out = [0u16; 2];
        if v.snapshot(&mut out).is_none() {
            v.lock(&me, &NoDeaths).read_all(&mut out);
        }
        assert!(out != [0, 1], "snapshot {out:?} never existed");
        t.join().unwrap();
    });
}

/// c''. IPC_STAT's consistent read of header fields racing IPC_SET: the
/// owner and mode read belong together.
/// Mutant `stat_no_fence`: the reader's acquire fence between its relaxed
/// field loads and its re-check of the sequence counter is removed.
#[test]
fn stat_races_set_perm() {
    check("stat_races_set_perm", 3, || {
        let set = Arc::new(HeapSet::new(1, 2, 2));
        let s2 = set.clone();
        let t = actor(move || {
            let me = s2.register(1, 2);
            let v = s2.view();
            v.lock(&me, &NoDeaths).set_perm(1, 1, 0o640).unwrap();
        });
        gate();
        let v = set.view();
        let (uid, mode) = v
            .read_consistent(|v| {
                (
                    v.hdr.uid.load(Ordering::Relaxed),
                    v.hdr.mode.load(Ordering::Relaxed),
                )
            })
            .expect("the writer finishes within the read's retries");
        assert!(
            (uid, mode) == (0, 0o600) || (uid, mode) == (1, 0o640),
            "IPC_STAT read uid {uid} with mode {mode:o}"
        );
        t.join().unwrap();
    });
}

/// d. A timeout racing a waker that completes the same sleeper: one
/// outcome, and it matches the unit's fate (Ok: consumed, value 0;
/// EAGAIN: not consumed, value 1); the slot is freed exactly once (the
/// owner's queued count would wrap otherwise), nothing left queued.
/// Mutant `cancel_no_recheck`: after its timeout the sleeper withdraws its
/// operation with a plain store instead of a compare-and-swap, so a
/// completion that came first is overwritten. Mutant
/// `completion_ignores_withdrawal`: a waker whose completion store lost to
/// the sleeper's withdrawal applies the operation's values all the same.
#[test]
fn timeout_races_waker() {
    check("timeout_races_waker", 3, || {
        let set = Arc::new(HeapSet::new(1, 2, 2));
        let s2 = set.clone();
        let sleeper = actor(move || {
            let me = s2.register(1, 2);
            semop(&s2, &me, &[Sembuf::new(0, -1, 0)], 100, &NoDeaths)
        });
        let timer = actor(|| advance_clock(1000));
        gate();
        let me = set.register(0, 1);
        semop(&set, &me, &[Sembuf::new(0, 1, 0)], NEVER, &NoDeaths).unwrap();
        let r = sleeper.join().unwrap();
        timer.join().unwrap();
        let val = value(&set, &me, 0, &NoDeaths);
        match r {
            Ok(()) => assert_eq!(val, 0, "completed, but the unit is still there"),
            Err(Error::WouldBlock) => assert_eq!(val, 1, "timed out, but the unit is gone"),
            Err(e) => panic!("unexpected result {e:?}"),
        }
        assert_quiescent(&set.view());
    });
}

/// e. Slot reuse: a sleeper (process 1) times out and frees the only queue
/// slot; a second sleeper (process 2) reuses it, while a waker that held
/// the old slot (its completion and deferred wake, or its queue link) runs
/// concurrently. Units are conserved: value + successes == 1, each result
/// is Ok or EAGAIN, the slot ends free and unlinked.
/// Mutant `cancel_no_dequeue`: the timed-out sleeper frees its slot
/// without unlinking it, so the waker's stale link reaches the freed (or
/// reused) slot and completes an operation nobody waits for.
#[test]
fn slot_reuse() {
    check("slot_reuse", 2, || {
        let set = Arc::new(HeapSet::new(1, 3, 1));
        let s2 = set.clone();
        let sleepers = actor(move || {
            let p1 = s2.register(1, 2);
            let r1 = semop(&s2, &p1, &[Sembuf::new(0, -1, 0)], 100, &NoDeaths);
            let p2 = s2.register(2, 3);
            let r2 = semop(&s2, &p2, &[Sembuf::new(0, -1, 0)], 200, &NoDeaths);
            (r1, r2)
        });
        let timer = actor(|| {
            advance_clock(149); // past the first deadline (the clock starts at 1)
            advance_clock(100); // past the second
        });
        gate();
        let me = set.register(0, 1);
        semop(&set, &me, &[Sembuf::new(0, 1, 0)], NEVER, &NoDeaths).unwrap();
        let (r1, r2) = sleepers.join().unwrap();
        timer.join().unwrap();
        let mut got = 0;
        for r in [r1, r2] {
            match r {
                Ok(()) => got += 1,
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("unexpected result {e:?}"),
            }
        }
        let val = value(&set, &me, 0, &NoDeaths);
        assert_eq!(val + got, 1, "units: value {val}, successes {got}");
        assert_quiescent(&set.view());
    });
}

/// f. IPC_RMID racing a sleeper entering the queue: the sleeper returns
/// EIDRM (whether it queued before the removal or came after it), never
/// sleeps for ever; a later operation gets EIDRM too.
/// Mutant `rmid_no_removed_check`: the slow path does not check the
/// removed flag, so a sleeper arriving after IPC_RMID queues for ever.
#[test]
fn rmid_races_sleeper() {
    check("rmid_races_sleeper", 3, || {
        let set = Arc::new(HeapSet::new(1, 2, 2));
        let s2 = set.clone();
        let t = actor(move || {
            let me = s2.register(1, 2);
            semop(&s2, &me, &[Sembuf::new(0, -1, 0)], NEVER, &NoDeaths)
        });
        gate();
        let me = set.register(0, 1);
        set.view().lock(&me, &NoDeaths).remove().unwrap();
        assert_eq!(t.join().unwrap(), Err(Error::Removed));
        let after = semop(&set, &me, &[Sembuf::new(0, 1, 0)], NEVER, &NoDeaths);
        assert_eq!(after, Err(Error::Removed));
        assert_quiescent(&set.view());
    });
}

/// g. A dead process's undo applied (by a sweep) racing a waker that
/// completes the dead process's queued operation. Process 1 did sem0 += 1
/// with SEM_UNDO, queued sem1 -= 1 with SEM_UNDO, and died. Whichever
/// goes first, the end state is the same: its undo applied exactly once
/// (sem0 back to 1), a completed operation undone as well (sem1 = 1), its
/// slot and entry freed, no adjustment left.
/// Mutant `reap_no_dequeue`: the sweep frees the dead process's queue slot
/// without unlinking it, so the waker later completes it for a process
/// whose undo has already been applied: a unit vanishes.
#[test]
fn dead_undo_races_waker() {
    check("dead_undo_races_waker", 3, || {
        let set = Arc::new(HeapSet::new(2, 3, 2));
        let host = Arc::new(Deaths::new(3));
        let me = set.register(0, 1);
        let dead = set.register(1, 2);
        setval(&set, &me, 0, 1, &*host);
        semop(&set, &dead, &[Sembuf::new(0, 1, UNDO)], NEVER, &*host).unwrap();
        assert!(semop_then_die(
            &set,
            &dead,
            &[Sembuf::new(1, -1, UNDO)],
            &*host
        ));
        host.kill(dead.slot);
        let (s2, h2) = (set.clone(), host.clone());
        let waker = actor(move || {
            let me = s2.register(2, 3);
            semop(&s2, &me, &[Sembuf::new(1, 1, 0)], NEVER, &*h2)
        });
        gate();
        {
            let v = set.view();
            let mut g = v.lock(&me, &*host);
            g.sweep_dead(&me, &*host, Sweep::Holding);
        }
        waker.join().unwrap().unwrap();
        assert_eq!(
            value(&set, &me, 0, &*host),
            1,
            "undo not applied exactly once"
        );
        assert_eq!(value(&set, &me, 1, &*host), 1, "a unit of sem 1 lost");
        let v = set.view();
        let p = v.proc(dead.slot).unwrap();
        assert_eq!(
            ProcState::from_raw(p.state_gen.load(Ordering::SeqCst)).state(),
            PROC_FREE
        );
        assert_eq!(p.undo_count.load(Ordering::SeqCst), 0);
        for n in 0..2 {
            assert_eq!(v.sem(n).unwrap().nundo.load(Ordering::SeqCst), 0);
        }
        assert_quiescent(&v);
    });
}

/// h. A dead waiter's operation never completes. Process 1 queued
/// sem0 -= 1 (no undo) and was killed (and, in the real world, reaped:
/// its host entry says dead before anyone posts). Two posts race; each
/// may be the one that finds the queued operation runnable. Neither may
/// complete it: the value ends at 2, the slot freed, the dead process's
/// entry freed.
/// Mutant `complete_dead_waiter`: a waker completes a queued operation
/// without checking that its process is alive (assertion: value 1, a unit
/// taken by the dead).
#[test]
fn dead_waiter_never_completes() {
    check("dead_waiter_never_completes", 3, || {
        let set = Arc::new(HeapSet::new(1, 3, 2));
        let host = Arc::new(Deaths::new(3));
        let me = set.register(0, 1);
        let dead = set.register(1, 2);
        assert!(semop_then_die(
            &set,
            &dead,
            &[Sembuf::new(0, -1, 0)],
            &*host
        ));
        host.kill(dead.slot);
        let (s2, h2) = (set.clone(), host.clone());
        let other = actor(move || {
            let me = s2.register(2, 3);
            semop(&s2, &me, &[Sembuf::new(0, 1, 0)], NEVER, &*h2)
        });
        semop(&set, &me, &[Sembuf::new(0, 1, 0)], NEVER, &*host).unwrap();
        other.join().unwrap().unwrap();
        assert_eq!(value(&set, &me, 0, &*host), 2, "a unit taken by the dead");
        let v = set.view();
        let p = v.proc(dead.slot).unwrap();
        assert_eq!(
            ProcState::from_raw(p.state_gen.load(Ordering::SeqCst)).state(),
            PROC_FREE
        );
        assert_quiescent(&v);
    });
}

// ---------------------------------------------------------------------
// Recovery
// ---------------------------------------------------------------------

/// The live state the recovery model compares: values, and the dying
/// process's adjustment on semaphore 0.
fn recovery_state(set: &HeapSet, me: &Me, dead: &Me, host: &dyn Host) -> (i32, i32, i16) {
    let v = set.view();
    let g = v.lock(me, host);
    let adj = v.undo_adj(dead.slot, 0);
    (g.read_one(0).0, g.read_one(1).0, adj)
}

/// One crash point: a process dies after its `k`-th counted write to the
/// set in the middle of a multi-op SEM_UNDO call, racing a live process's
/// op on one of the same semaphores. Whoever next takes the lock (the live
/// process, or the checker) finds it dead, redoes or discards its intent
/// record and repairs. The state is wholly before or wholly after the dead
/// call (values and its adjustment together), the live op is applied
/// exactly once, nothing is left queued or counted. Returns whether some
/// execution got past the whole call (k beyond its last write).
fn recovery_at(k: u64) -> bool {
    // Read after loom's runs, from outside the model: std's atomic on
    // purpose (neither loom's nor the shim's, which is loom's).
    #[allow(clippy::disallowed_types)]
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fin = finished.clone();
    check(&format!("recovery_after_write_{k}"), 2, move || {
        let set = Arc::new(HeapSet::new(2, 3, 2));
        let host = Arc::new(CrashHost);
        let me = set.register(0, 1);
        let dying = set.register(1, 2);
        let live = set.register(2, 3);
        set.view()
            .lock(&me, &*host)
            .setall(&[1, 1], me.pid)
            .unwrap();
        let (s1, h1) = (set.clone(), host.clone());
        let d = actor(move || {
            shmsem::__private::crash_after(k);
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                semop(
                    &s1,
                    &dying,
                    &[Sembuf::new(0, -1, SEM_UNDO as i16), Sembuf::new(1, 1, 0)],
                    NEVER,
                    &*h1,
                )
            }))
            .is_ok()
        });
        let (s2, h2) = (set.clone(), host.clone());
        let l = actor(move || semop(&s2, &live, &[Sembuf::new(1, 1, 0)], NEVER, &*h2));
        gate();
        let completed = d.join().unwrap();
        if completed {
            fin.store(true, std::sync::atomic::Ordering::Relaxed);
            shmsem::__private::crash_after(0);
        }
        // The dead process's entry is only "dead" once it has crashed; a
        // sleeper waiting on its lock sees that after a slice.
        shmsem::__private::advance_clock(shmsem::__private::SWEEP_SLICE_NS);
        l.join().unwrap().unwrap();
        let (v0, v1, adj) = recovery_state(&set, &me, &dying, &*host);
        let before = (1, 2, 0);
        let after = (0, 3, 1);
        assert!(
            (v0, v1, adj) == before || (v0, v1, adj) == after,
            "crash after write {k}: values ({v0}, {v1}) and adjustment {adj} \
             are neither before {before:?} nor after {after:?}"
        );
        assert_quiescent(&set.view());
    });
    finished.load(std::sync::atomic::Ordering::Relaxed)
}

/// A host for the recovery model: the process that crashed (entry 1) is
/// dead; every other is alive.
struct CrashHost;

impl Host for CrashHost {
    fn is_dead(&self, _: &SetView<'_>, slot: u32) -> bool {
        slot == 1 && shmsem::__private::someone_crashed()
    }
}

/// Recovery after a lock holder dies after each of its writes, k = 1, 2,
/// ... until the call completes: see [`recovery_at`]. Mutant
/// `no_redo`: recovery does not redo a committed intent record (a call
/// whose values were half written stays half written).
#[test]
fn recovery_after_each_write() {
    // A model thread's crash is a panic the model catches: keep it quiet.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.payload().is::<shmsem::__private::Crash>() {
            default(info);
        }
    }));
    let mut k = 1;
    while !recovery_at(k) {
        k += 1;
        assert!(k < 200, "the call never completes");
    }
}

// ---------------------------------------------------------------------
// A lock holder that does not let go (stopped, as far as the others can
// tell): a model thread that takes the lock and, before its section goes
// on, joins the thread whose call must return without it.
// ---------------------------------------------------------------------

/// g. A sleeper whose deadline passes while a live process holds the lock
/// and does not let go until the sleeper has returned: the sleeper
/// withdraws its operation without the lock and returns EAGAIN; the
/// holder's section, a V, then finds the withdrawn slot (the sleeper could
/// not discard it), discards it and keeps the unit.
/// Mutant `cancel_waits_for_lock`: the sleeper takes the lock before it
/// decides, as before the withdrawal existed (deadlock: the holder waits
/// for the sleeper, the sleeper for the lock).
#[test]
fn stopped_holder_timeout() {
    check("stopped_holder_timeout", 3, || {
        let set = Arc::new(HeapSet::new(1, 2, 2));
        let p1 = set.register(1, 2);
        // The sleeper's P, queued (by its process) before the holder comes.
        let (slot, st) = {
            let v = set.view();
            let mut g = v.lock(&p1, &NoDeaths);
            match g.semop(&p1, &[Sembuf::new(0, -1, 0)], &NoDeaths) {
                shmsem::__private::SlowOutcome::Queued(slot, st) => (slot, st),
                other => panic!("the P did not queue: {other:?}"),
            }
        };
        let s2 = set.clone();
        let sleeper = actor(move || {
            s2.view()
                .wait(&p1, slot, st, 100, HandlerMark::now(), &NoDeaths)
        });
        let timer = actor(|| advance_clock(1000));
        gate();
        let me = set.register(0, 1);
        let v = set.view();
        let mut g = v.lock(&me, &NoDeaths);
        // "Stopped": the section goes on only once the sleeper returned.
        let r = sleeper.join().unwrap();
        assert_eq!(
            g.semop(&me, &[Sembuf::new(0, 1, 0)], &NoDeaths),
            shmsem::__private::SlowOutcome::Now(Ok(()))
        );
        drop(g);
        timer.join().unwrap();
        assert_eq!(r, Err(Error::WouldBlock), "the sleeper did not time out");
        assert_eq!(
            value(&set, &me, 0, &NoDeaths),
            1,
            "the withdrawn P took the unit"
        );
        assert_quiescent(&v);
    });
}

/// h. A lock wait with a deadline, behind a holder that does not let go
/// until the waiter has returned: the waiter gives up (`None`) once the
/// deadline has passed, leaving no count of itself as taking the lock.
/// Mutant `lock_ignores_deadline`: the wait has no deadline (deadlock).
#[test]
fn lock_deadline_behind_holder() {
    check("lock_deadline_behind_holder", 3, || {
        let set = Arc::new(HeapSet::new(1, 2, 2));
        let s2 = set.clone();
        let waiter = actor(move || {
            let me = s2.register(1, 2);
            let v = s2.view();
            let got = v.lock_until(&me, &NoDeaths, || 100).is_some();
            got
        });
        let timer = actor(|| advance_clock(1000));
        gate();
        let me = set.register(0, 1);
        let v = set.view();
        let g = v.lock(&me, &NoDeaths);
        let got = waiter.join().unwrap();
        drop(g);
        timer.join().unwrap();
        // It may have come before us and had the lock: then it let go.
        let _ = got;
        let pe = v.proc(1).unwrap();
        assert_eq!(
            (
                pe.holding.load(Ordering::SeqCst),
                pe.locking.load(Ordering::SeqCst)
            ),
            (0, 0),
            "the waiter still counts as taking the lock"
        );
        assert_quiescent(&v);
    });
}

/// The committed-state read after one crash point: a process dies after
/// its `k`-th counted write in the middle of a multi-op call moving a unit
/// from semaphore 0 to 1, racing a reader that reads every value without
/// the lock (`SetView::committed_values`, which never waits for the dead
/// holder). The reader sees (1, 0) or (0, 1), never a mix; and never
/// "after" when the recovery that follows leaves "before". Returns whether
/// some execution got past the whole call.
fn committed_read_at(k: u64) -> bool {
    #[allow(clippy::disallowed_types)]
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fin = finished.clone();
    check(&format!("committed_read_after_write_{k}"), 2, move || {
        let set = Arc::new(HeapSet::new(2, 3, 2));
        let host = Arc::new(CrashHost);
        let me = set.register(0, 1);
        let dying = set.register(1, 2);
        set.view()
            .lock(&me, &*host)
            .setall(&[1, 0], me.pid)
            .unwrap();
        let (s1, h1) = (set.clone(), host.clone());
        let d = actor(move || {
            shmsem::__private::crash_after(k);
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                semop(
                    &s1,
                    &dying,
                    &[Sembuf::new(0, -1, 0), Sembuf::new(1, 1, 0)],
                    NEVER,
                    &*h1,
                )
            }))
            .is_ok()
        });
        gate();
        let v = set.view();
        let mut out = [9u16; 2];
        let read = v.committed_values(&mut out, &[]);
        let completed = d.join().unwrap();
        if completed {
            fin.store(true, std::sync::atomic::Ordering::Relaxed);
            shmsem::__private::crash_after(0);
        }
        if read.is_some() {
            assert_eq!(read, Some(true), "the set reads as removed");
            assert!(
                out == [1, 0] || out == [0, 1],
                "crash after write {k}: the reader saw {out:?}, a state that never was"
            );
        }
        // Recovery (if it died), then the state it leaves.
        let g = v.lock(&me, &*host);
        let now = [g.read_one(0).0 as u16, g.read_one(1).0 as u16];
        drop(g);
        if read.is_some() {
            assert!(
                !(out == [0, 1] && now == [1, 0]),
                "crash after write {k}: the reader saw the call done, recovery undid it"
            );
        }
        assert_quiescent(&v);
    });
    finished.load(std::sync::atomic::Ordering::Relaxed)
}

/// i. The committed-state read after each write of a holder that dies in
/// the middle of its update: see [`committed_read_at`].
/// Mutants `committed_no_overlay` (the reader takes the words alone, not
/// the record being applied) and `no_applying_serial` (the serial does not
/// say a record is being applied): a holder dead half-way through its
/// application shows a mix (assertion: the reader saw [0, 0]).
#[test]
fn committed_read_after_each_write() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.payload().is::<shmsem::__private::Crash>() {
            default(info);
        }
    }));
    let mut k = 1;
    while !committed_read_at(k) {
        k += 1;
        assert!(k < 200, "the call never completes");
    }
}
