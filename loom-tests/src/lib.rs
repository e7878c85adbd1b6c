//! Helpers for the loom models in tests/models.rs. Built only with
//! `--cfg shmsem_loom`; see README.md for the catalogue and the mutants.
#![cfg(shmsem_loom)]

use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::thread::{self, JoinHandle};
use shmsem::__private::{HandlerMark, HeapSet, Host, Me, Ordering, SetView, SlowOutcome};
use shmsem::layout::{GlobalMode, SemWord, SlotStatus, NIL, SEM_UNDO, SLOT_FREE};
use shmsem::sysv::Sembuf;
use shmsem::Result;
use std::time::Instant;

/// A deadline that never passes (an untimed semop).
pub const NEVER: u64 = u64::MAX;

/// Runs `f` under loom with preemption bound `bound` (or the
/// LOOM_MAX_PREEMPTIONS environment variable), unbounded when
/// `LOOM_UNBOUNDED` is set. LOOM_MAX_DURATION and LOOM_MAX_PERMUTATIONS are
/// ignored on purpose: when either is hit loom reports success, so they
/// cannot serve as bounds. Prints the number of executions explored.
pub fn check<F>(name: &str, bound: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let unbounded = std::env::var_os("LOOM_UNBOUNDED").is_some();
    let mut b = loom::model::Builder::new();
    // Builder::new took LOOM_MAX_PREEMPTIONS, if set: it overrides `bound`.
    b.preemption_bound = if unbounded {
        None
    } else {
        Some(b.preemption_bound.unwrap_or(bound))
    };
    b.max_duration = None;
    b.max_permutations = None;
    // Spin-then-sleep loops branch a lot; loom's default of 1000 branches
    // per execution is too few for the unbounded runs.
    b.max_branches = b.max_branches.max(100_000);
    // Counts executions from outside the model, across loom's runs: std's
    // atomic on purpose (neither loom's nor the shim's, which is loom's).
    #[allow(clippy::disallowed_types)]
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    let start = Instant::now();
    b.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    eprintln!(
        "model {name}: {} executions in {:.1?} (preemption bound {})",
        runs.load(std::sync::atomic::Ordering::Relaxed),
        start.elapsed(),
        match b.preemption_bound {
            None => "none".to_string(),
            Some(n) => n.to_string(),
        }
    );
}

loom::lazy_static! {
    static ref GATE: AtomicUsize = AtomicUsize::new(0);
}

/// The first step of every actor of a model (the main thread's too, after
/// it has spawned the others).
///
/// Loom's partial-order reduction remembers only the last access to each
/// atomic (tokio-rs/loom#166): when one thread reads a word and another
/// thread later loads and then writes it, the writer's own load hides the
/// reader's, and the order "writer first" is never tried. Most writes in
/// src/set/ follow a load of the same word, and loom starts a model by
/// running the main thread alone, so without this step whole classes of
/// interleavings go unexplored (a reader racing `fast_op` got one
/// execution). A read-modify-write on a shared gate makes every pair of
/// actors dependent at their start, so loom permutes which actor runs first;
/// from each start, a write that a later read observes is a race loom does
/// detect and reverses.
pub fn gate() {
    GATE.fetch_add(1, Ordering::SeqCst);
}

/// Spawns an actor that passes the [`gate`] first.
pub fn actor<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    thread::spawn(move || {
        gate();
        f()
    })
}

/// One semop call as `Namespace::semtimedop` makes it: the fast path for a
/// single op without SEM_UNDO, else the lock, the slow path and, if
/// queued, the wait until `deadline` (loom clock, absolute).
pub fn semop(
    set: &HeapSet,
    me: &Me,
    sops: &[Sembuf],
    deadline: u64,
    host: &dyn Host,
) -> Result<()> {
    let v = set.view();
    if sops.len() == 1 && sops[0].sem_flg as i32 & SEM_UNDO == 0 {
        if let Some(r) = v.fast_op(sops[0], me.pid) {
            return r;
        }
    }
    let mark = HandlerMark::now();
    let mut g = v.lock(me, host);
    let out = g.semop(me, sops, host);
    drop(g);
    match out {
        SlowOutcome::Now(r) => r,
        SlowOutcome::Queued(slot, st) => v.wait(me, slot, st, deadline, mark, host),
    }
}

/// The start of a semop whose caller then dies: the slow path only (a dead
/// process never waits). Returns whether it was queued.
pub fn semop_then_die(set: &HeapSet, me: &Me, sops: &[Sembuf], host: &dyn Host) -> bool {
    let v = set.view();
    let mut g = v.lock(me, host);
    let out = g.semop(me, sops, host);
    drop(g);
    match out {
        SlowOutcome::Now(r) => {
            r.unwrap();
            false
        }
        SlowOutcome::Queued(..) => true,
    }
}

/// SETVAL under the lock.
pub fn setval(set: &HeapSet, me: &Me, n: usize, val: i32, host: &dyn Host) {
    let v = set.view();
    let mut g = v.lock(me, host);
    g.setval(n, val, me.pid).unwrap();
}

/// Value of semaphore `n`, read under the lock.
pub fn value(set: &HeapSet, me: &Me, n: usize, host: &dyn Host) -> i32 {
    let v = set.view();
    let g = v.lock(me, host);
    g.read_one(n).0
}

/// The quiescent-state invariants, checked when every thread has finished:
/// no queue slot in use, both FIFOs empty, no waiter counted, no slow bit
/// left on a word without a reason, no value out of range, and each
/// process's queued-slot count back to zero (a slot freed twice would
/// wrap it below zero).
pub fn assert_quiescent(v: &SetView<'_>) {
    for i in 0.. {
        let Some(q) = v.queue_slot(i) else { break };
        let st = q.status.load(Ordering::SeqCst);
        assert_eq!(
            SlotStatus::from_raw(st).state(),
            SLOT_FREE,
            "queue slot {i} not freed: {st:#x}"
        );
    }
    for head in [&v.hdr.alter_head, &v.hdr.const_head] {
        assert_eq!(head.load(Ordering::SeqCst), NIL, "a FIFO is not empty");
    }
    for n in 0..v.nsems() {
        let e = v.sem(n).unwrap();
        assert_eq!(
            e.nwait.load(Ordering::SeqCst),
            0,
            "sem {n}: waiters counted"
        );
        let w = e.word.load(Ordering::SeqCst);
        let word = SemWord::from_raw(w);
        assert!(word.value() <= 32767, "sem {n}: value out of range: {w:#x}");
        if GlobalMode::from_raw(v.hdr.global_mode.load(Ordering::SeqCst)).is_off()
            && e.nundo.load(Ordering::SeqCst) == 0
        {
            assert!(!word.is_slow(), "sem {n}: slow bits left: {w:#x}");
        }
    }
    for p in 0..v.proc_slots() {
        let q = v.proc(p).unwrap().queued.load(Ordering::SeqCst);
        assert_eq!(q, 0, "process {p}: queued count {q}");
    }
}

/// A host whose processes die when a model says so.
pub struct Deaths {
    dead: Vec<AtomicBool>,
}

impl Deaths {
    /// `n` process-table entries, all alive.
    pub fn new(n: usize) -> Deaths {
        Deaths {
            dead: (0..n).map(|_| AtomicBool::new(false)).collect(),
        }
    }
    /// Process-table entry `slot`'s process dies.
    pub fn kill(&self, slot: u32) {
        self.dead[slot as usize].store(true, Ordering::SeqCst);
    }
}

impl Host for Deaths {
    fn is_dead(&self, _: &SetView<'_>, slot: u32) -> bool {
        self.dead
            .get(slot as usize)
            .is_some_and(|d| d.load(Ordering::SeqCst))
    }
}
