//! A handled signal is never lost (issue 12, point 4). On the kernel a
//! blocked semop returns EINTR when a handler runs, with or without
//! SA_RESTART; shmsem must too, also when the handler runs while the
//! waiter is in user space: between two futex slices, at the end of a slice
//! that timed out with the signal pending, in the spin.
//!
//! Those moments last microseconds, so the tests make them last: the
//! waiter and a *hog* share one processor, and the hog runs SCHED_FIFO,
//! which the waiter (SCHED_OTHER) cannot preempt. While the hog runs, the
//! waiter cannot, wherever it stands; what the hog sees in /proc (the
//! waiter runnable: its slice timed out; nothing pending) or in the set's
//! segment (the spin claim held) tells where it stands, and the signal is
//! sent or arrives then. The handler runs when the hog lets the waiter go.
//!
//! | test | what |
//! |---|---|
//! | `handler_between_slices_gives_eintr` | the issue's reproduction: SIGUSR1 while the waiter's slice has timed out, handler without SA_RESTART, 3 rounds; the kernel's semop in the same rounds |
//! | `handler_between_slices_with_sa_restart_gives_eintr` | the same with SA_RESTART |
//! | `handler_in_the_spin_gives_eintr` | the signal sent while the waiter holds the set's spin claim (its handler checks it ran there), with and without SA_RESTART |
//! | `handler_calling_handler_ran_gives_eintr` | a Rust program's own handler (`libc::sigaction`) that calls `shmsem::signal::handler_ran()` |
//! | `wrapped_handlers_report_what_was_installed` | `shmsem::signal::sigaction`: queries report the program's handler, SA_RESETHAND, SIG_IGN |
//! | `c_program_queries_see_its_own_handlers` | a C program under the preload library: every glibc call that installs a handler, and what the queries report, equal to the kernel's run |
//! | `c_program_alarm_bounds_semop` | a C program bounding semop with `alarm(1)` (sigaction, SA_RESTART, `signal()`), SIGALRM arriving while its slice has timed out: EINTR as on the kernel |
//! | `perl_alarm_bounds_semop`, `python_alarm_bounds_semop` | the same with Perl's `%SIG` and `semop`, and Python's `signal.signal` with `semop` through ctypes |
//!
//! Without SCHED_FIFO (no privilege) or gcc, perl or python, the tests that
//! need them say so on stderr and pass vacuously; the spin test needs two
//! processors.
// Atomics here are this program's own (handler flags, shared-memory words
// of its mappings), not the library's.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use libc::c_int;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use shmsem::signal::HandlerMark;
use shmsem::{Op, SemaphoreSet};
use support::*;

// ---------------------------------------------------------------------------
// Processors and scheduling
// ---------------------------------------------------------------------------

/// The processors this process may run on.
fn cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set, and
    // sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Runs the calling process on processor `cpu` only.
fn pin(cpu: usize) {
    // SAFETY: as in `cpus`; sched_setaffinity only reads the set.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        r,
        0,
        "sched_setaffinity({cpu}): {}",
        std::io::Error::last_os_error()
    );
}

/// Makes the calling process SCHED_FIFO (priority 1); false if not allowed.
fn become_fifo() -> bool {
    let p = libc::sched_param { sched_priority: 1 };
    // SAFETY: plain system call on this process with a valid parameter.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) == 0 }
}

/// Whether this process may make processes SCHED_FIFO (asked of a child).
fn fifo_allowed(kids: &mut Kids) -> bool {
    let c = kids.spawn(|| if become_fifo() { OK } else { 1 });
    matches!(
        kids.wait(c, "the SCHED_FIFO probe"),
        WaitStatus::Exited(_, OK)
    )
}

/// The signals pending for process `pid` and its threads, as one mask
/// (bit n - 1 for signal n).
fn pending(pid: Pid) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("ShdPnd:")
                .or_else(|| l.strip_prefix("SigPnd:"))
        })
        .filter_map(|v| u64::from_str_radix(v.trim(), 16).ok())
        .fold(0, |a, b| a | b)
}

fn bit(sig: c_int) -> u64 {
    1 << (sig - 1)
}

/// Waits until `pid` is asleep in system call `nr` (x86-64 numbers).
fn wait_asleep_in(pid: Pid, nr: &str) {
    poll_until(&format!("process {pid} asleep in system call {nr}"), || {
        process_state(pid) == Some('S')
            && std::fs::read_to_string(format!("/proc/{pid}/syscall"))
                .map(|s| s.split_whitespace().next() == Some(nr))
                .unwrap_or(true)
    });
}

const SYS_FUTEX: &str = "202";
const SYS_SEMTIMEDOP: &str = "220";

// ---------------------------------------------------------------------------
// Hogs
// ---------------------------------------------------------------------------

/// A hog's exit codes.
const HOG_SAW_RUNNABLE: i32 = 0;
const HOG_SAW_ASLEEP: i32 = 1;
const HOG_NO_FIFO: i32 = 2;
const HOG_SAW_PENDING: i32 = 3;
const HOG_MISSED: i32 = 4;
const HOG_SENT_IN_SPIN: i32 = 5;

/// In a child: takes processor `cpu` (SCHED_FIFO) and spins until `target`
/// (pinned there, asleep in a timed futex or semop call) is runnable — its
/// slice timed out, and it cannot run while we do — or until `bound`; then
/// sends it SIGUSR1 and leaves. HOG_SAW_RUNNABLE: the signal came while the
/// target was runnable with nothing pending, so its futex call ended by
/// its timeout and the handler runs in user space. With `only_runnable`, a
/// target never seen runnable is not signalled (HOG_SAW_ASLEEP: try again).
fn hog_then_signal(target: Pid, cpu: usize, bound: Duration, only_runnable: bool) -> i32 {
    pin(cpu);
    if !become_fifo() {
        return HOG_NO_FIFO;
    }
    let start = Instant::now();
    let saw = loop {
        if process_state(target) == Some('R') {
            break HOG_SAW_RUNNABLE;
        }
        if start.elapsed() > bound {
            break HOG_SAW_ASLEEP;
        }
    };
    if saw == HOG_SAW_ASLEEP && only_runnable {
        return saw;
    }
    let before = pending(target);
    let _ = kill(target, Signal::SIGUSR1);
    if before != 0 {
        return HOG_SAW_PENDING;
    }
    saw
}

/// In a child: takes processor `cpu` (SCHED_FIFO) from `start_at` on and
/// spins until signal `sig` is pending for `target` (pinned there), or
/// `bound`. HOG_SAW_RUNNABLE: before the signal came, the target was seen
/// runnable with nothing pending (its slice had timed out): the signal
/// arrived while it was in user space.
fn hog_until_pending(
    target: Pid,
    cpu: usize,
    start_at: Instant,
    sig: c_int,
    bound: Duration,
) -> i32 {
    pin(cpu);
    if !become_fifo() {
        return HOG_NO_FIFO;
    }
    std::thread::sleep(start_at.saturating_duration_since(Instant::now()));
    let start = Instant::now();
    let mut saw_runnable = false;
    loop {
        let p = pending(target);
        if p & bit(sig) != 0 {
            return if saw_runnable {
                HOG_SAW_RUNNABLE
            } else {
                HOG_SAW_ASLEEP
            };
        }
        if p == 0 && process_state(target) == Some('R') {
            saw_runnable = true;
        }
        if start.elapsed() > bound {
            return HOG_MISSED;
        }
    }
}

/// In a child: takes processor `cpu` (SCHED_FIFO), tells `ready`, then
/// looks every 20 µs (taking the processor back each time) for the spin
/// claim of a set; when it is held, the spinner — `target`, pinned there
/// and preempted by us in the middle of its spin — gets SIGUSR1.
/// HOG_SENT_IN_SPIN: sent; HOG_MISSED: no spin seen within `bound`.
fn hog_watch_spin(
    target: Pid,
    cpu: usize,
    spinners: &AtomicU32,
    ready: &Signal1,
    bound: Duration,
) -> i32 {
    pin(cpu);
    if !become_fifo() {
        return HOG_NO_FIFO;
    }
    ready.notify();
    let start = Instant::now();
    while start.elapsed() < bound {
        std::thread::sleep(Duration::from_micros(20));
        if spinners.load(Ordering::SeqCst) != 0 {
            let _ = kill(target, Signal::SIGUSR1);
            return HOG_SENT_IN_SPIN;
        }
    }
    HOG_MISSED
}

// ---------------------------------------------------------------------------
// Waiters
// ---------------------------------------------------------------------------

/// Handlers that ran in this (child) process.
static HANDLED: AtomicU32 = AtomicU32::new(0);
/// The address of a set's spin claim word in a mapping of this process
/// (0: none), and how many handlers found it held.
static SPIN_WORD: AtomicUsize = AtomicUsize::new(0);
static IN_SPIN: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_usr1(_: c_int) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
    let w = SPIN_WORD.load(Ordering::SeqCst);
    if w != 0 {
        // SAFETY: the address of an AtomicU32 in a mapping that lives as
        // long as the process (set before the handler was installed).
        if unsafe { &*(w as *const AtomicU32) }.load(Ordering::SeqCst) != 0 {
            IN_SPIN.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A program's own handler that tells shmsem it ran.
extern "C" fn on_usr1_telling(sig: c_int) {
    shmsem::signal::handler_ran();
    on_usr1(sig);
}

/// How the waiter's SIGUSR1 handler is installed.
#[derive(Clone, Copy, Debug)]
enum How {
    /// `shmsem::signal::sigaction`.
    Wrapped { restart: bool },
    /// `libc::sigaction`, the handler calling `handler_ran`.
    Telling { restart: bool },
}

fn install(how: How) {
    let (handler, restart): (extern "C" fn(c_int), bool) = match how {
        How::Wrapped { restart } => (on_usr1, restart),
        How::Telling { restart } => (on_usr1_telling, restart),
    };
    // SAFETY: sigaction is plain C data; all-zero is a valid value.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler as usize;
    sa.sa_flags = if restart { libc::SA_RESTART } else { 0 };
    // SAFETY: `sa` is a valid action whose handler is async-signal-safe
    // (atomics only); no old action is asked for.
    let r = unsafe {
        libc::sigemptyset(&mut sa.sa_mask);
        match how {
            How::Wrapped { .. } => {
                shmsem::signal::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut())
            }
            How::Telling { .. } => libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()),
        }
    };
    assert_eq!(
        r,
        0,
        "sigaction(SIGUSR1): {}",
        std::io::Error::last_os_error()
    );
}

/// What a waiter blocks on: a shmsem set, or a kernel set (for the
/// comparison), semaphore 0.
#[derive(Clone, Copy)]
enum Backend<'a> {
    Shmsem(&'a SemaphoreSet),
    Kernel(c_int),
}

impl Backend<'_> {
    fn name(&self) -> &'static str {
        match self {
            Backend::Shmsem(_) => "shmsem",
            Backend::Kernel(_) => "kernel",
        }
    }

    /// P on semaphore 0 with a timeout; the errno on failure.
    fn p(&self, t: Duration) -> Result<(), i32> {
        match self {
            Backend::Shmsem(set) => set.op_timeout(&[Op::wait(0, 1)], t).map_err(|e| e.errno()),
            Backend::Kernel(id) => {
                let mut op = libc::sembuf {
                    sem_num: 0,
                    sem_op: -1,
                    sem_flg: 0,
                };
                let ts = libc::timespec {
                    tv_sec: t.as_secs() as libc::time_t,
                    tv_nsec: t.subsec_nanos() as libc::c_long,
                };
                // The libc crate has no semtimedop: the system call.
                // SAFETY: one valid sembuf and a valid timeout.
                if unsafe { libc::syscall(libc::SYS_semtimedop, *id, &mut op, 1, &ts) } == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
                }
            }
        }
    }

    fn ncnt(&self) -> u32 {
        match self {
            Backend::Shmsem(set) => ncnt(set, 0),
            // SAFETY: plain system call with integer arguments.
            Backend::Kernel(id) => (unsafe { libc::semctl(*id, 0, libc::GETNCNT) }) as u32,
        }
    }

    fn val(&self) -> u32 {
        match self {
            Backend::Shmsem(set) => val(set, 0) as u32,
            // SAFETY: plain system call with integer arguments.
            Backend::Kernel(id) => (unsafe { libc::semctl(*id, 0, libc::GETVAL) }) as u32,
        }
    }

    fn post(&self) {
        match self {
            Backend::Shmsem(set) => set.op(&[Op::post(0, 1)]).expect("V"),
            Backend::Kernel(id) => {
                let mut op = libc::sembuf {
                    sem_num: 0,
                    sem_op: 1,
                    sem_flg: 0,
                };
                // SAFETY: one valid sembuf.
                assert_eq!(unsafe { libc::semop(*id, &mut op, 1) }, 0, "kernel V");
            }
        }
    }

    /// The system call a blocked waiter sleeps in.
    fn sleeps_in(&self) -> &'static str {
        match self {
            Backend::Shmsem(_) => SYS_FUTEX,
            Backend::Kernel(_) => SYS_SEMTIMEDOP,
        }
    }
}

/// A kernel set of one semaphore at 0, removed on drop.
struct KernelSet(c_int);

impl KernelSet {
    fn new() -> KernelSet {
        // SAFETY: plain system call with integer arguments.
        let id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, 0o600) };
        assert!(
            id >= 0,
            "kernel semget: {}",
            std::io::Error::last_os_error()
        );
        KernelSet(id)
    }
}

impl Drop for KernelSet {
    fn drop(&mut self) {
        // SAFETY: plain system call; IPC_RMID takes no fourth argument.
        unsafe { libc::semctl(self.0, 0, libc::IPC_RMID) };
    }
}

/// The waiter's exit codes besides OK (EINTR, the handler ran once) and an
/// errno (EAGAIN: the handler ran and the call slept on until its timeout).
const W_EINTR_NO_HANDLER: i32 = CHECK_FAILED + 1;
const W_COMPLETED: i32 = CHECK_FAILED + 2;
const W_EINTR_OUTSIDE_SPIN: i32 = CHECK_FAILED + 3;

/// The timeout of the waiters' P: far longer than the rounds, and no slice
/// is its last when the signal comes.
const P_TIMEOUT: Duration = Duration::from_secs(4);

/// In a child: pinned to `cpu`, SIGUSR1 handled as `how`, P on `b` with
/// [`P_TIMEOUT`].
fn waiter(b: Backend, how: How, cpu: usize) -> i32 {
    pin(cpu);
    install(how);
    waiter_p(b, false)
}

/// The waiter's P and its exit code. With `spin`, EINTR must come from a
/// handler that ran while the spin claim was held.
fn waiter_p(b: Backend, spin: bool) -> i32 {
    match b.p(P_TIMEOUT) {
        Err(libc::EINTR) if HANDLED.load(Ordering::SeqCst) != 1 => W_EINTR_NO_HANDLER,
        Err(libc::EINTR) if spin && IN_SPIN.load(Ordering::SeqCst) != 1 => W_EINTR_OUTSIDE_SPIN,
        Err(libc::EINTR) => OK,
        Ok(()) => W_COMPLETED,
        Err(e) => e,
    }
}

fn exit_code(s: WaitStatus) -> i32 {
    match s {
        WaitStatus::Exited(_, c) => c,
        other => panic!("a child did not exit normally: {other:?}"),
    }
}

fn waiter_describe(code: i32) -> String {
    match code {
        W_EINTR_NO_HANDLER => "EINTR, but the handler did not run once".to_string(),
        W_COMPLETED => "the P completed".to_string(),
        W_EINTR_OUTSIDE_SPIN => "EINTR, but the handler did not run in the spin".to_string(),
        libc::EAGAIN => {
            "EAGAIN: the handler ran and the call slept on until its timeout".to_string()
        }
        c => describe(c),
    }
}

// ---------------------------------------------------------------------------
// Between slices
// ---------------------------------------------------------------------------

/// Three rounds of: a waiter pinned to one processor blocks in P; a hog on
/// that processor spins until the waiter's futex slice has timed out (the
/// waiter runnable, unable to run) and sends SIGUSR1; the waiter must
/// return EINTR. On shmsem, and on the kernel's semop in the same rounds
/// (where the waiter is never runnable: the hog gives up waiting after
/// 200 ms and signals a sleeping waiter).
fn between_slices(name: &str, how: How) {
    let env = TestEnv::new(name, 120);
    let mut kids = Kids::new();
    if !fifo_allowed(&mut kids) {
        support::skipped(&format!("{name}: SCHED_FIFO not allowed here"));
        return;
    }
    let cpu = *cpus().last().expect("a processor");
    let set = env.set_with(&[0]);
    let kernel = KernelSet::new();
    for b in [Backend::Shmsem(&set), Backend::Kernel(kernel.0)] {
        let mut codes = Vec::new();
        for round in 0..3 {
            let w = kids.spawn(|| waiter(b, how, cpu));
            poll_until(&format!("{}: the waiter is counted", b.name()), || {
                b.ncnt() == 1
            });
            // On shmsem the hog must find the waiter runnable (its slice
            // timed out) before it signals. The waiter sleeps again after
            // each slice, so a hog that never saw it runnable sends
            // nothing and another tries: the signal comes with the first
            // hog that saw it runnable, or, after the fifth, the test
            // fails. (On the kernel the hog signals a sleeping waiter.)
            let mut hog = HOG_SAW_ASLEEP;
            for _ in 0..5 {
                wait_asleep_in(w, b.sleeps_in());
                let shmsem = matches!(b, Backend::Shmsem(_));
                let h = kids.spawn(|| hog_then_signal(w, cpu, Duration::from_millis(200), shmsem));
                hog = exit_code(kids.wait(h, "the hog"));
                assert_ne!(hog, HOG_NO_FIFO, "the hog could not become SCHED_FIFO");
                assert_ne!(
                    hog, HOG_SAW_PENDING,
                    "a signal was pending before the hog sent one"
                );
                if hog != HOG_SAW_ASLEEP || matches!(b, Backend::Kernel(_)) {
                    break;
                }
            }
            if let Backend::Shmsem(_) = b {
                assert_eq!(
                    hog, HOG_SAW_RUNNABLE,
                    "{name} round {round}: the waiter's slice did not time out within 200 ms, five times"
                );
            }
            let code = exit_code(kids.wait(w, "the waiter"));
            codes.push(code);
            assert_eq!(b.ncnt(), 0, "{}: the waiter still counts", b.name());
        }
        let eintr = codes.iter().filter(|&&c| c == OK).count();
        assert_eq!(
            eintr,
            3,
            "{name}, {}: EINTR in {eintr} of 3 rounds ({:?})",
            b.name(),
            codes
                .iter()
                .map(|&c| waiter_describe(c))
                .collect::<Vec<_>>()
        );
        // The interrupted waiters took nothing.
        b.post();
        assert_eq!(
            b.val(),
            1,
            "{}: the V went to an interrupted waiter",
            b.name()
        );
    }
}

#[test]
fn handler_between_slices_gives_eintr() {
    between_slices("between_slices", How::Wrapped { restart: false });
}

#[test]
fn handler_between_slices_with_sa_restart_gives_eintr() {
    between_slices("between_slices_restart", How::Wrapped { restart: true });
}

#[test]
fn handler_calling_handler_ran_gives_eintr() {
    between_slices("handler_ran", How::Telling { restart: false });
}

// ---------------------------------------------------------------------------
// In the spin
// ---------------------------------------------------------------------------

/// A waiter pinned to processor A, at the head of its FIFO with a partner
/// awake on processor B, spins before sleeping. A hog on A looks every
/// 20 µs at the set's spin claim; when it sees it held, the waiter is
/// preempted in the middle of its spin, and gets SIGUSR1 there: its handler
/// checks that the claim is still held when it runs. Rounds in which the
/// hog saw no spin (the waiter went to sleep in between) are repeated
/// after a V lets the waiter go; three rounds with a signal in the spin
/// are needed, each must give EINTR.
///
/// One waiter process makes every round (its handler installed again for
/// each, with or without SA_RESTART): the process table keeps the entries
/// of dead processes with the processor they last ran on, and one on A
/// would veto the spin (a partner on the spinner's own processor).
#[test]
fn handler_in_the_spin_gives_eintr() {
    let name = "in_the_spin";
    let env = TestEnv::new(name, 120);
    let mut kids = Kids::new();
    let cpus = cpus();
    if cpus.len() < 2 {
        support::skipped(&format!("{name}: one processor (no spin)"));
        return;
    }
    if !fifo_allowed(&mut kids) {
        support::skipped(&format!("{name}: SCHED_FIFO not allowed here"));
        return;
    }
    let (a, b) = (cpus[cpus.len() - 1], cpus[0]);
    // Semaphore 0: the waiter's; 1: the partner's first sleep.
    let set = env.set_with(&[0, 0]);
    let map = RawMap::open_read_only(&set_path(env.ns.name(), set.id())).expect("map the set");
    let spinners = &map.header().spinners;

    // The partner: sleeps once on processor B (so the set knows where it
    // runs), then stays awake, blocked outside the set.
    let partner_up = Signal1::new();
    let (hold_r, hold_w) = pipe();
    let hold_w_fd = hold_w.as_raw_fd();
    let partner = kids.spawn(|| {
        // SAFETY: closes this child's copy of the write end (so that the
        // parent's close ends the read below); nothing else uses it here.
        unsafe { libc::close(hold_w_fd) };
        pin(b);
        if set.op(&[Op::wait(1, 1)]).is_err() {
            return CHECK_FAILED + 1;
        }
        partner_up.notify();
        let mut byte = [0u8; 1];
        let _ = (&hold_r).read(&mut byte);
        OK
    });
    wait_ncnt(&set, 1, 1);
    wait_asleep_in(partner, SYS_FUTEX);
    set.op(&[Op::post(1, 1)]).expect("V for the partner");
    partner_up.wait("the partner is awake");

    // The waiter: one P per byte on `go` (1: with SA_RESTART), its result
    // as a byte on `results`.
    let (go_r, go_w) = pipe();
    let go_w_fd = go_w.as_raw_fd();
    let (results_r, results_w) = pipe();
    let w = kids.spawn(|| {
        // SAFETY: as for the partner: our copy of the write end, unused here.
        unsafe { libc::close(go_w_fd) };
        SPIN_WORD.store(spinners as *const AtomicU32 as usize, Ordering::SeqCst);
        pin(a);
        let mut byte = [0u8; 1];
        while (&go_r).read(&mut byte).is_ok_and(|n| n == 1) {
            install(How::Wrapped {
                restart: byte[0] == 1,
            });
            HANDLED.store(0, Ordering::SeqCst);
            IN_SPIN.store(0, Ordering::SeqCst);
            let code = waiter_p(Backend::Shmsem(&set), true);
            if (&results_w).write_all(&[code as u8]).is_err() {
                return CHECK_FAILED + 4;
            }
        }
        OK
    });
    let next_result = |what: &str| {
        assert!(
            readable_within(&results_r, DEADLINE),
            "{what}: no result from the waiter within {DEADLINE:?}"
        );
        let mut byte = [0u8; 1];
        assert_eq!(
            (&results_r).read(&mut byte).expect("read a result"),
            1,
            "{what}: the waiter is gone"
        );
        byte[0] as i32
    };
    for restart in [false, true] {
        let mut hits = Vec::new();
        let mut attempts = 0;
        while hits.len() < 3 {
            attempts += 1;
            assert!(
                attempts <= 30,
                "restart {restart}: only {} of {attempts} rounds saw the waiter spin",
                hits.len()
            );
            let hog_ready = Signal1::new();
            let h =
                kids.spawn(|| hog_watch_spin(w, a, spinners, &hog_ready, Duration::from_secs(1)));
            hog_ready.wait("the hog is ready");
            (&go_w)
                .write_all(&[restart as u8])
                .expect("tell the waiter to go");
            let hog = exit_code(kids.wait(h, "the hog"));
            assert_ne!(hog, HOG_NO_FIFO, "the hog could not become SCHED_FIFO");
            if hog != HOG_SENT_IN_SPIN {
                // The waiter spun unseen, or not at all: let it go.
                wait_ncnt(&set, 0, 1);
                set.op(&[Op::post(0, 1)]).expect("V");
                let code = next_result("a waiter let go");
                assert_eq!(
                    code,
                    W_COMPLETED,
                    "a waiter no signal reached: {}",
                    waiter_describe(code)
                );
                continue;
            }
            hits.push(next_result("a waiter signalled in its spin"));
            assert_eq!(ncnt(&set, 0), 0, "the interrupted waiter still counts");
            assert_eq!(val(&set, 0), 0);
        }
        assert!(
            hits.iter().all(|&c| c == OK),
            "restart {restart}: a handler that ran in the spin: {:?} (after {attempts} rounds)",
            hits.iter().map(|&c| waiter_describe(c)).collect::<Vec<_>>()
        );
        eprintln!("{name}: restart {restart}: 3 signals in the spin in {attempts} rounds");
    }
    drop(go_w);
    kids.expect_exit(w, OK, "the waiter");
    drop(hold_w);
    kids.expect_exit(partner, OK, "the partner");
}

// ---------------------------------------------------------------------------
// The wrapping, seen from a Rust program
// ---------------------------------------------------------------------------

extern "C" fn on_usr2(_: c_int) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn on_usr2_info(_: c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    HANDLED.fetch_add(10, Ordering::SeqCst);
}

/// `shmsem::signal::sigaction` installs a wrapper and reports the
/// program's handler: the old action, a query, SA_RESETHAND (SIG_DFL
/// after the handler ran once), SA_SIGINFO, SIG_IGN passed through; a
/// wrapped handler moves the thread's handler count.
#[test]
fn wrapped_handlers_report_what_was_installed() {
    let _env = TestEnv::new("wrapped_report", 60);
    let mut kids = Kids::new();
    let c = kids.spawn(|| {
        use shmsem::signal::sigaction;
        let query = || {
            // SAFETY: all-zero is a valid sigaction; the query writes it.
            let mut o: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: a query: no new action, a valid out-buffer.
            assert_eq!(
                unsafe { sigaction(libc::SIGUSR2, std::ptr::null(), &mut o) },
                0
            );
            o
        };
        let set = |h: usize, flags: c_int| {
            // SAFETY: as above.
            let mut a: libc::sigaction = unsafe { std::mem::zeroed() };
            a.sa_sigaction = h;
            a.sa_flags = flags;
            let mut o: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: a valid action with an async-signal-safe handler.
            assert_eq!(unsafe { sigaction(libc::SIGUSR2, &a, &mut o) }, 0);
            o
        };
        let raise = || {
            let mark = HandlerMark::now();
            // SAFETY: raise has no preconditions.
            unsafe { libc::raise(libc::SIGUSR2) };
            mark.ran_since()
        };
        let plain = on_usr2 as extern "C" fn(c_int) as usize;
        let info =
            on_usr2_info as extern "C" fn(c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize;
        let checks = [
            set(plain, libc::SA_RESTART).sa_sigaction == libc::SIG_DFL,
            query().sa_sigaction == plain && query().sa_flags & libc::SA_RESTART != 0,
            raise() && HANDLED.load(Ordering::SeqCst) == 1,
            set(info, libc::SA_SIGINFO).sa_sigaction == plain,
            query().sa_sigaction == info && query().sa_flags & libc::SA_SIGINFO != 0,
            raise() && HANDLED.load(Ordering::SeqCst) == 11,
            set(plain, libc::SA_RESETHAND).sa_sigaction == info,
            raise() && HANDLED.load(Ordering::SeqCst) == 12,
            query().sa_sigaction == libc::SIG_DFL,
            set(libc::SIG_IGN, 0).sa_sigaction == libc::SIG_DFL,
            !raise() && query().sa_sigaction == libc::SIG_IGN,
        ];
        match checks.iter().position(|ok| !ok) {
            None => OK,
            Some(i) => CHECK_FAILED + i as i32,
        }
    });
    kids.expect_exit(c, OK, "the wrapped handlers and their queries");
}

// ---------------------------------------------------------------------------
// Programs under the preload library
// ---------------------------------------------------------------------------

/// A program running with stdout read line by line; killed on drop.
struct Program {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    what: String,
}

impl Program {
    fn spawn(mut cmd: Command, what: &str) -> Program {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Program {
            child,
            lines,
            seen: Vec::new(),
            what: what.to_string(),
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// The next line, or None at the end of the output; fails the test if
    /// none comes within [`DEADLINE`].
    fn next(&mut self) -> Option<String> {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(l) => {
                self.seen.push(l.clone());
                Some(l)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                panic!(
                    "{}: no output within {DEADLINE:?} (a semop slept on after its handler ran?)\n\
                     output so far:\n{}",
                    self.what,
                    self.seen.join("\n")
                )
            }
        }
    }

    /// Waits for the exit (it must be 0) and returns the whole output.
    fn finish(mut self) -> Vec<String> {
        while self.next().is_some() {}
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    assert!(
                        st.success(),
                        "{} exited with {st}:\n{}",
                        self.what,
                        self.seen.join("\n")
                    );
                    return std::mem::take(&mut self.seen);
                }
                Ok(None) if start.elapsed() < DEADLINE => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => panic!("{} did not exit", self.what),
            }
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `cmd` with the preload library and namespace `ns`, or with neither.
fn prepared(mut cmd: Command, preload: Option<&str>) -> Command {
    match preload {
        Some(ns) => {
            cmd.env("LD_PRELOAD", preload_lib())
                .env("SHMSEM_NAMESPACE", ns);
        }
        None => {
            cmd.env_remove("LD_PRELOAD").env_remove("SHMSEM_NAMESPACE");
        }
    }
    cmd
}

/// Runs a program that prints "armed" after each `alarm(1)` and a line
/// starting with "round" after each semop it bounds. Pinned to processor
/// `cpu`; for each round a hog takes that processor 120 ms before the
/// alarm and holds it until SIGALRM is pending. Returns the round lines
/// and how many rounds the hog saw the program runnable (its slice timed
/// out) before the signal came.
fn alarm_rounds(cmd: Command, cpu: usize, kids: &mut Kids, what: &str) -> (Vec<String>, usize) {
    let mut cmd = cmd;
    // SAFETY: the closure only calls sched_setaffinity (async-signal-safe)
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
            Ok(())
        });
    }
    let mut p = Program::spawn(cmd, what);
    let pid = p.pid();
    let mut rounds = Vec::new();
    let mut in_user_space = 0;
    while let Some(line) = p.next() {
        if line == "armed" {
            let at = Instant::now() + Duration::from_millis(880);
            let h = kids.spawn(|| {
                hog_until_pending(pid, cpu, at, libc::SIGALRM, Duration::from_millis(500))
            });
            match exit_code(kids.wait(h, "the hog")) {
                HOG_NO_FIFO => panic!("the hog could not become SCHED_FIFO"),
                HOG_SAW_RUNNABLE => in_user_space += 1,
                _ => {}
            }
        } else if line.starts_with("round") {
            rounds.push(line);
        }
    }
    p.finish();
    (rounds, in_user_space)
}

/// An alarm program on the kernel and under the preload library: EINTR
/// in every round of both, and at least one preloaded round where SIGALRM
/// came while the program was in user space.
fn alarm_program(name: &str, program: impl Fn() -> Command, expected: &[&str]) {
    let _env = TestEnv::new(name, 120);
    let mut kids = Kids::new();
    if !fifo_allowed(&mut kids) {
        support::skipped(&format!("{name}: SCHED_FIFO not allowed here"));
        return;
    }
    let cpu = *cpus().last().expect("a processor");
    let ns = unique_ns_name("t-signals", name);
    let _ns = NsNameGuard(ns.clone());
    let (kernel, _) = alarm_rounds(
        prepared(program(), None),
        cpu,
        &mut kids,
        &format!("{name} on the kernel"),
    );
    assert_eq!(kernel, expected, "{name} on the kernel");
    let (shmsem, user_space) = alarm_rounds(
        prepared(program(), Some(&ns)),
        cpu,
        &mut kids,
        &format!("{name} under the preload library"),
    );
    assert_eq!(
        shmsem, kernel,
        "{name}: under the preload library, unlike the kernel"
    );
    assert!(
        user_space >= 1,
        "{name}: in no round did SIGALRM come while the program was in user space"
    );
}

fn c_program(dir: &ScratchDir) -> std::path::PathBuf {
    let exe = dir.path().join("signals");
    compile_c(
        &manifest_dir().join("tests").join("c").join("signals.c"),
        &exe,
        &[],
    );
    exe
}

#[test]
fn c_program_alarm_bounds_semop() {
    if !have_gcc() {
        support::skipped("c_program_alarm_bounds_semop: gcc not found");
        return;
    }
    let dir = ScratchDir::new(&ns_name("t-signals-c-alarm", "c"));
    let exe = c_program(&dir);
    alarm_program(
        "c_alarm",
        || {
            let mut c = Command::new(&exe);
            c.arg("alarm");
            c
        },
        &[
            "round 0: semop -1 EINTR, handler ran 1",
            "round 1: semop -1 EINTR, handler ran 1",
            "round 2: semop -1 EINTR, handler ran 1",
        ],
    );
}

#[test]
fn c_program_queries_see_its_own_handlers() {
    if !have_gcc() {
        support::skipped("c_program_queries_see_its_own_handlers: gcc not found");
        return;
    }
    let _env = TestEnv::new("c_queries", 60);
    let dir = ScratchDir::new(&ns_name("t-signals-c-query", "c"));
    let exe = c_program(&dir);
    let ns = unique_ns_name("t-signals", "c_queries");
    let _ns = NsNameGuard(ns.clone());
    let run = |preload: Option<&str>| {
        let mut c = Command::new(&exe);
        c.arg("query");
        Program::spawn(prepared(c, preload), "signals query").finish()
    };
    let kernel = run(None);
    assert!(
        kernel.len() > 30,
        "the query program said little:\n{}",
        kernel.join("\n")
    );
    let preloaded = run(Some(&ns));
    assert_eq!(
        preloaded.join("\n"),
        kernel.join("\n"),
        "what the queries report under the preload library"
    );
}

const PERL_ALARM: &str = r#"
use strict;
use IPC::SysV qw(IPC_PRIVATE S_IRUSR S_IWUSR IPC_RMID);
$| = 1;
my $id = semget(IPC_PRIVATE, 1, S_IRUSR | S_IWUSR) // die "semget: $!";
for my $round (0 .. 2) {
    my $ran = 0;
    local $SIG{ALRM} = sub { $ran++ };
    alarm 1;
    print "armed\n";
    my $ok = semop($id, pack("s!3", 0, -1, 0));
    my $err = $ok ? "0" : ($!{EINTR} ? "EINTR" : "errno " . ($! + 0));
    print "round $round: semop ", ($ok ? 0 : -1), " $err, handler ran $ran\n";
}
semctl($id, 0, IPC_RMID, 0) or die "IPC_RMID: $!";
"#;

#[test]
fn perl_alarm_bounds_semop() {
    if !tool_works("perl", &["-MIPC::SysV", "-e", "1"]) {
        support::skipped("perl_alarm_bounds_semop: perl with IPC::SysV not found");
        return;
    }
    alarm_program(
        "perl_alarm",
        || {
            let mut c = Command::new("perl");
            c.args(["-e", PERL_ALARM]);
            c
        },
        &[
            "round 0: semop -1 EINTR, handler ran 1",
            "round 1: semop -1 EINTR, handler ran 1",
            "round 2: semop -1 EINTR, handler ran 1",
        ],
    );
}

const PYTHON_ALARM: &str = r#"
import ctypes, errno, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
class Sembuf(ctypes.Structure):
    _fields_ = [("num", ctypes.c_ushort), ("op", ctypes.c_short), ("flg", ctypes.c_short)]
semid = libc.semget(0, 1, 0o600)
assert semid >= 0, ctypes.get_errno()
ran = [0]
def on_alarm(sig, frame):
    ran[0] += 1
signal.signal(signal.SIGALRM, on_alarm)
for rnd in range(3):
    ran[0] = 0
    signal.alarm(1)
    print("armed", flush=True)
    op = Sembuf(0, -1, 0)
    r = libc.semop(semid, ctypes.byref(op), 1)
    e = ctypes.get_errno()
    name = "0" if r == 0 else errno.errorcode.get(e, str(e))
    print("round %d: semop %d %s, handler ran %d" % (rnd, r, name, ran[0]), flush=True)
libc.semctl(semid, 0, 0)
"#;

#[test]
fn python_alarm_bounds_semop() {
    // The interpreter itself, not a wrapper script that would run it as
    // another process (the hog watches the pid it is given).
    let python = Command::new("python3")
        .args(["-c", "import ctypes, signal, sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(python) = python.filter(|p| !p.is_empty()) else {
        support::skipped("python_alarm_bounds_semop: python3 with ctypes not found");
        return;
    };
    alarm_program(
        "python_alarm",
        || {
            let mut c = Command::new(&python);
            c.args(["-c", PYTHON_ALARM]);
            c
        },
        &[
            "round 0: semop -1 EINTR, handler ran 1",
            "round 1: semop -1 EINTR, handler ran 1",
            "round 2: semop -1 EINTR, handler ran 1",
        ],
    );
}
