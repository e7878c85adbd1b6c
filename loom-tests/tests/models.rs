//! Loom models of the real set code (src/set.rs), on a heap-built set.
//! Run: RUSTFLAGS="--cfg shmsem_loom" cargo test -p loom-tests --release
//! The full catalogue of models and their mutants is a later piece of work;
//! this file shows the shim builds and the real code runs under loom.
#![cfg(shmsem_loom)]

use loom::sync::Arc;
use shmsem::__private::{HeapSet, NoDeaths, SlowOutcome};
use shmsem::sysv::Sembuf;

/// A blocking decrement racing an increment: no lost wake-up (loom would
/// report a deadlock) and the final value is 0.
#[test]
fn blocking_p_races_v() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let set = Arc::new(HeapSet::new(1, 2, 2));
        let s2 = set.clone();
        let t = loom::thread::spawn(move || {
            let v = s2.view();
            let me = s2.register(1, 2);
            let mut g = v.lock(&me, &NoDeaths);
            let out = g.semop(&me, &[Sembuf::new(0, -1, 0)], &NoDeaths);
            drop(g);
            match out {
                SlowOutcome::Now(r) => r.unwrap(),
                SlowOutcome::Queued(slot, st) => {
                    v.wait(&me, slot, st, u64::MAX, &NoDeaths).unwrap()
                }
            }
        });
        let v = set.view();
        let me = set.register(0, 1);
        if v.fast_op(Sembuf::new(0, 1, 0), 1).is_none() {
            let mut g = v.lock(&me, &NoDeaths);
            assert_eq!(
                g.semop(&me, &[Sembuf::new(0, 1, 0)], &NoDeaths),
                SlowOutcome::Now(Ok(()))
            );
        }
        t.join().unwrap();
        let g = v.lock(&me, &NoDeaths);
        assert_eq!(g.read_one(0).0, 0);
    });
}
