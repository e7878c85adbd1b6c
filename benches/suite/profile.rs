//! Profile mode: one scenario's loop, nothing else, for `valgrind
//! --tool=callgrind` or `strace -c` (benches/profile.sh drives it).
//!
//! `SHMSEM_BENCH_PROFILE=SCENARIO` (single, undo, 2op, 2op_undo, 8op,
//! 8op_undo, nowait, getval, getall, pingpong), `SHMSEM_BENCH_PROFILE_IMPL`
//! (shmsem (default), kernel, sem_t, mutex, futex),
//! `SHMSEM_BENCH_PROFILE_ITERS` (default 100000). With ITERS=0 the run does
//! everything but the loop: the difference between two runs is the loop.

use std::hint::black_box;

use crate::impls::{Env, Futex, Kernel, Mutex, PosixSem, Sem, Shmsem};

fn run_one<S: Sem>(env: &Env, which: &str, iters: u64) -> Result<(), String> {
    let need = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("{} has no {what}", S::NAME))
        }
    };
    match which {
        "single" => {
            let s = S::create(env, 1, 1);
            for _ in 0..iters {
                s.wait(0);
                s.post(0);
            }
        }
        "undo" => {
            need(S::CAPS.undo, "SEM_UNDO")?;
            let s = S::create(env, 1, 1);
            for _ in 0..iters {
                s.wait_undo(0);
                s.post_undo(0);
            }
        }
        "2op" | "2op_undo" | "8op" | "8op_undo" => {
            need(S::CAPS.multi, "multi-op calls")?;
            let n = if which.starts_with('2') { 2 } else { 8 };
            let undo = which.ends_with("undo");
            let s = S::create(env, n, 1);
            for _ in 0..iters {
                s.multi(n, -1, undo);
                s.multi(n, 1, undo);
            }
        }
        "nowait" => {
            let s = S::create(env, 1, 0);
            for _ in 0..iters {
                s.try_wait_fails(0);
            }
        }
        "getval" => {
            need(S::CAPS.getval, "GETVAL")?;
            let s = S::create(env, 1, 1);
            for _ in 0..iters {
                black_box(s.getval(0));
            }
        }
        "getall" => {
            need(S::CAPS.getall, "GETALL")?;
            let s = S::create(env, 8, 1);
            let mut buf = [0u16; 8];
            for _ in 0..iters {
                s.getall(&mut buf);
                black_box(&buf);
            }
        }
        "pingpong" => {
            need(S::CAPS.handoff, "hand-off")?;
            let cpus = crate::multiproc::allowed_cpus();
            let pair = (cpus[0], *cpus.get(1).unwrap_or(&cpus[0]));
            match crate::multiproc::ping_pong::<S>(env, pair, iters.max(1)) {
                crate::report::Fig::Val(ns) => eprintln!("{ns:.0} ns per round trip"),
                other => return Err(format!("{other:?}")),
            }
        }
        other => return Err(format!("unknown scenario {other}")),
    }
    Ok(())
}

/// Under valgrind the vDSO is not mapped, but `prctl(PR_GET_AUXV)` still
/// reports its address; rustix (which shmsem uses for clocks) reads the ELF
/// header there and crashes. With `SHMSEM_BENCH_VALGRIND=1` (profile.sh sets
/// it) a zero page is mapped at that address when nothing is mapped there,
/// so rustix finds no valid vDSO and falls back to the clock system call
/// (a few dozen instructions of the real vDSO path are then missing from
/// the counts).
fn hide_missing_vdso() {
    const PR_GET_AUXV: libc::c_int = 0x4155_5856;
    let mut auxv = [0usize; 128];
    // SAFETY: PR_GET_AUXV copies at most the given number of bytes.
    let n = unsafe {
        libc::prctl(
            PR_GET_AUXV,
            auxv.as_mut_ptr(),
            std::mem::size_of_val(&auxv),
            0,
            0,
        )
    };
    if n <= 0 {
        return;
    }
    let Some(addr) = auxv
        .chunks(2)
        .find(|kv| kv[0] == libc::AT_SYSINFO_EHDR as usize)
        .map(|kv| kv[1])
    else {
        return;
    };
    let page = 4096;
    let mut vec = [0u8; 1];
    // SAFETY: mincore only reports whether the page is mapped (ENOMEM if not).
    let mapped = unsafe { libc::mincore(addr as *mut libc::c_void, page, vec.as_mut_ptr()) } == 0;
    if !mapped {
        // SAFETY: maps fresh zero pages only where nothing is mapped
        // (MAP_FIXED_NOREPLACE never replaces an existing mapping).
        unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                2 * page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
    }
}

/// Runs the profile mode; returns the process's exit code.
pub fn run(which: &str) -> i32 {
    if std::env::var_os("SHMSEM_BENCH_VALGRIND").is_some() {
        hide_missing_vdso();
    }
    let imp = std::env::var("SHMSEM_BENCH_PROFILE_IMPL").unwrap_or_else(|_| "shmsem".into());
    let iters: u64 = std::env::var("SHMSEM_BENCH_PROFILE_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let env = Env::new();
    let r = match imp.as_str() {
        "shmsem" => run_one::<Shmsem>(&env, which, iters),
        "kernel" => run_one::<Kernel>(&env, which, iters),
        "sem_t" => run_one::<PosixSem>(&env, which, iters),
        "mutex" => run_one::<Mutex>(&env, which, iters),
        "futex" => run_one::<Futex>(&env, which, iters),
        other => Err(format!("unknown implementation {other}")),
    };
    drop(env);
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("profile mode: {e}");
            2
        }
    }
}
