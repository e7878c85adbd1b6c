//! Uncontended micro-benchmarks, run by criterion in the benchmark process.
//!
//! Every routine is timed by criterion through `iter_custom`; the suite
//! keeps each timed batch and fits time = slope × iterations through the
//! origin (criterion's own "slope" estimator), then divides by the number of
//! calls per iteration. So every figure is **ns per call**:
//!
//! | scenario | one iteration | calls |
//! |---|---|---|
//! | single op | P then V of one semaphore, value 1 → 0 → 1 (semop -1, +1; `sem_wait` + `sem_post`; mutex lock + unlock; futex CAS down + add up) | 2 |
//! | single op SEM_UNDO | the same with SEM_UNDO (kernel, shmsem) | 2 |
//! | k-op | one all-or-nothing semop of -1 on k semaphores, then one of +1 on the same k (kernel, shmsem) | 2 |
//! | IPC_NOWAIT failing | one non-blocking P on a semaphore at 0: semop IPC_NOWAIT → EAGAIN, `sem_trywait` → EAGAIN, `pthread_mutex_trylock` of a held mutex → EBUSY, futex: one load that sees 0 | 1 |
//! | GETVAL | semctl GETVAL, `sem_getvalue`, futex: one load | 1 |
//! | GETALL | semctl GETALL of a set of 8 (kernel, shmsem) | 1 |

use std::cell::RefCell;
use std::hint::black_box;
use std::time::Instant;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};

use crate::impls::{Env, Sem};
use crate::report::{Better, Fig, Row, KERNEL, SEMT};

/// Fits time = slope × iterations through the origin (least squares).
fn slope(batches: &[(u64, f64)]) -> Option<f64> {
    let xy: f64 = batches.iter().map(|&(x, y)| x as f64 * y).sum();
    let xx: f64 = batches.iter().map(|&(x, _)| (x as f64) * (x as f64)).sum();
    (xx > 0.0).then(|| xy / xx)
}

/// Benchmarks `body` (one iteration = `calls` calls) as `S::NAME` in group
/// `g`; returns ns per call.
fn bench<S: Sem>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    calls: u64,
    s: &S,
    mut body: impl FnMut(&S),
) -> Fig {
    let batches = RefCell::new(Vec::new());
    g.bench_function(S::NAME, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                body(s);
            }
            let elapsed = start.elapsed();
            batches
                .borrow_mut()
                .push((iters, elapsed.as_nanos() as f64));
            elapsed
        })
    });
    let fitted = slope(&batches.borrow());
    match fitted {
        Some(ns) => Fig::Val(ns / calls as f64),
        None => Fig::NotApplicable, // filtered out on the command line
    }
}

fn single<S: Sem>(g: &mut BenchmarkGroup<'_, WallTime>, env: &Env) -> Fig {
    let s = S::create(env, 1, 1);
    bench(g, 2, &s, |s| {
        s.wait(0);
        s.post(0);
    })
}

fn single_undo<S: Sem>(g: &mut BenchmarkGroup<'_, WallTime>, env: &Env) -> Fig {
    if !S::CAPS.undo {
        return Fig::NotApplicable;
    }
    let s = S::create(env, 1, 1);
    bench(g, 2, &s, |s| {
        s.wait_undo(0);
        s.post_undo(0);
    })
}

fn multi<S: Sem>(g: &mut BenchmarkGroup<'_, WallTime>, env: &Env, n: u16, undo: bool) -> Fig {
    if !S::CAPS.multi || (undo && !S::CAPS.undo) {
        return Fig::NotApplicable;
    }
    let s = S::create(env, n, 1);
    bench(g, 2, &s, |s| {
        s.multi(n, -1, undo);
        s.multi(n, 1, undo);
    })
}

fn nowait<S: Sem>(g: &mut BenchmarkGroup<'_, WallTime>, env: &Env) -> Fig {
    let s = S::create(env, 1, 0);
    bench(g, 1, &s, |s| s.try_wait_fails(0))
}

fn getval<S: Sem>(g: &mut BenchmarkGroup<'_, WallTime>, env: &Env) -> Fig {
    if !S::CAPS.getval {
        return Fig::NotApplicable;
    }
    let s = S::create(env, 1, 1);
    bench(g, 1, &s, |s| {
        black_box(s.getval(0));
    })
}

fn getall<S: Sem>(g: &mut BenchmarkGroup<'_, WallTime>, env: &Env) -> Fig {
    if !S::CAPS.getall {
        return Fig::NotApplicable;
    }
    let s = S::create(env, 8, 1);
    let mut buf = [0u16; 8];
    bench(g, 1, &s, |s| {
        s.getall(&mut buf);
        black_box(&buf);
    })
}

/// Runs every micro-benchmark; returns the table's rows.
pub fn run(c: &mut Criterion, env: &Env) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut group =
        |name: &str, row: Row, f: &mut dyn FnMut(&mut BenchmarkGroup<'_, WallTime>) -> [Fig; 5]| {
            let mut g = c.benchmark_group(name);
            let figs = f(&mut g);
            g.finish();
            let mut row = row;
            row.figs = figs;
            rows.push(row);
        };

    group(
        "single_op",
        Row::new("single op (P+V pair / 2)", "ns/call", Better::Lower)
            .target(KERNEL, 10.0, "≥10× kernel")
            .target(SEMT, 1.0 / 1.5, "within 1.5× of sem_t"),
        &mut |g| each_impl!(single(g, env)),
    );
    group(
        "single_op_undo",
        Row::new("single op SEM_UNDO", "ns/call", Better::Lower).target(KERNEL, 5.0, "≥5× kernel"),
        &mut |g| each_impl!(single_undo(g, env)),
    );
    for n in [2u16, 8] {
        group(
            &format!("{n}_op"),
            Row::new(format!("{n}-op all-or-nothing"), "ns/call", Better::Lower).target(
                KERNEL,
                4.0,
                "≥4× kernel",
            ),
            &mut |g| each_impl!(multi(g, env, n, false)),
        );
        group(
            &format!("{n}_op_undo"),
            Row::new(
                format!("{n}-op all-or-nothing SEM_UNDO"),
                "ns/call",
                Better::Lower,
            )
            .target(KERNEL, 4.0, "≥4× kernel"),
            &mut |g| each_impl!(multi(g, env, n, true)),
        );
    }
    group(
        "nowait_fail",
        Row::new("IPC_NOWAIT failing (EAGAIN)", "ns/call", Better::Lower),
        &mut |g| each_impl!(nowait(g, env)),
    );
    group(
        "getval",
        Row::new("GETVAL", "ns/call", Better::Lower).target(KERNEL, 20.0, "≥20× kernel"),
        &mut |g| each_impl!(getval(g, env)),
    );
    group(
        "getall_8",
        Row::new("GETALL of 8", "ns/call", Better::Lower),
        &mut |g| each_impl!(getall(g, env)),
    );
    rows
}

/// Two machine references, timed by hand (median of batches): a null
/// system call and an uncontended compare-and-swap. For the notes.
pub fn references(quick: bool) -> Vec<String> {
    let budget = crate::budget(quick, 200, 1000);
    let syscall = crate::time_per_iter(budget, |n| {
        for _ in 0..n {
            // SAFETY: getppid has no preconditions.
            black_box(unsafe { libc::getppid() });
        }
    });
    let word = std::sync::atomic::AtomicU64::new(0);
    let cas = crate::time_per_iter(budget, |n| {
        for k in 0..n {
            let _ = black_box(&word).compare_exchange(
                k,
                k + 1,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    });
    vec![format!(
        "machine references in this run: null system call (getppid) {syscall:.1} ns; uncontended compare-and-swap {cas:.1} ns"
    )]
}
