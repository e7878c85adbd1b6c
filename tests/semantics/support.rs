//! Helpers for the multi-process semantics tests: a namespace that cleans up
//! after itself, forked children that can never return into the test
//! harness, deadline-bounded waits, and a watchdog.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use shmsem::{Namespace, Op, Result, SemaphoreSet};

/// How long any single wait on observable state may take before the test
/// fails. Generous: the machine has two cores and tests may run under load.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How long the tests allow for the undo of a dead process to be applied
/// by whoever notices the death ("a few seconds").
pub const UNDO_DEADLINE: Duration = Duration::from_secs(5);

/// A child's own safety net: it is killed by SIGALRM after this many seconds,
/// so nothing outlives a test run even if the parent dies.
const CHILD_ALARM_SECS: u32 = 60;

/// Child exit code for a successful call.
pub const OK: i32 = 0;
/// Child exit code for a panic inside the child.
pub const PANICKED: i32 = 250;
/// Child exit codes from `CHECK_FAILED` up (below `PANICKED`) report a failed
/// check inside the child; `CHECK_FAILED + k` names check `k` of that child.
pub const CHECK_FAILED: i32 = 200;

/// Tests fork, and forking while another test thread holds a lock inside
/// the library (or std) would leave that lock held for ever in the child.
/// Every test holds this for its whole run, so tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Everything a test needs: the serialisation guard, a watchdog and a
/// namespace that is destroyed when the test ends, pass or fail.
pub struct TestEnv {
    /// The test's own namespace.
    pub ns: Arc<Namespace>,
    // Field order is drop order: destroy the namespace, stop the watchdog,
    // then let the next test run.
    _watchdog: Watchdog,
    _serial: MutexGuard<'static, ()>,
}

impl TestEnv {
    /// Starts a test called `name` with a watchdog of `secs` seconds.
    pub fn new(name: &'static str, secs: u64) -> TestEnv {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let watchdog = Watchdog::start(name, secs);
        let ns_name = format!("sem-{}-{}", name, std::process::id());
        let ns = Namespace::open(&ns_name)
            .unwrap_or_else(|e| panic!("{name}: Namespace::open({ns_name}): {e}"));
        TestEnv {
            ns,
            _watchdog: watchdog,
            _serial: serial,
        }
    }

    /// A new private set of `nsems` semaphores with the given values.
    pub fn set_with(&self, values: &[u16]) -> SemaphoreSet {
        let set = SemaphoreSet::create_private(&self.ns, values.len() as u16, 0o600)
            .expect("create a private set");
        set.set_values(values).expect("SETALL the initial values");
        set
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Err(e) = self.ns.destroy() {
            eprintln!("warning: destroying namespace {}: {e}", self.ns.name());
        }
    }
}

/// Turns a hang into a failure with a message: if the test is still running
/// after its time, the whole test binary aborts (children die by their own
/// alarm).
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(name: &'static str, secs: u64) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs))
            {
                eprintln!("WATCHDOG: test `{name}` still running after {secs}s: hang; aborting");
                std::process::abort();
            }
        });
        Watchdog {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The exit code a child reports for a call's result: 0 for success, the
/// errno for an error.
pub fn rc(r: Result<()>) -> i32 {
    match r {
        Ok(()) => OK,
        Err(e) => e.errno(),
    }
}

/// A child exit code in words, for failure messages.
pub fn describe(code: i32) -> String {
    match code {
        OK => "0 (success)".to_string(),
        PANICKED => format!("{code} (the child panicked)"),
        c if c >= CHECK_FAILED => {
            format!("{c} (check #{} inside the child failed)", c - CHECK_FAILED)
        }
        c => format!("{c} ({})", shmsem::Error::from_errno(c)),
    }
}

/// The forked children of one test. Dropping it SIGKILLs and reaps any child
/// not yet reaped, so a failing test leaves no process behind.
#[derive(Default)]
pub struct Kids {
    live: Vec<Pid>,
}

impl Kids {
    pub fn new() -> Kids {
        Kids::default()
    }

    /// Forks a child that runs `body` and exits with the code it returns
    /// (through `_exit`: no exit handlers, no return into the harness). A
    /// panic becomes exit code [`PANICKED`]. `body` may itself end the
    /// process, e.g. with `std::process::exit` for a normal exit.
    pub fn spawn(&mut self, body: impl FnOnce() -> i32) -> Pid {
        // SAFETY: tests run one at a time (SERIAL), so no other test thread is
        // inside the library or holds a lock the child could need; the child
        // only runs `body` (shmsem calls and plain Rust) and then ends the
        // process with `_exit`, never returning into the harness.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Parent { child } => {
                self.live.push(child);
                child
            }
            ForkResult::Child => {
                // SAFETY: alarm() only arms a timer for this process.
                unsafe { libc::alarm(CHILD_ALARM_SECS) };
                let code = catch_unwind(AssertUnwindSafe(body)).unwrap_or(PANICKED);
                // SAFETY: _exit ends the process at once; nothing of the
                // parent's state (the harness, the guards) runs in the child.
                unsafe { libc::_exit(code) }
            }
        }
    }

    /// Waits (with the deadline) for `pid` to end and returns how it ended.
    pub fn wait(&mut self, pid: Pid, what: &str) -> WaitStatus {
        self.wait_within(pid, DEADLINE, what)
    }

    /// Like [`Kids::wait`] with an explicit deadline.
    pub fn wait_within(&mut self, pid: Pid, limit: Duration, what: &str) -> WaitStatus {
        let start = Instant::now();
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => {
                    self.live.retain(|p| *p != pid);
                    return status;
                }
                Err(e) => panic!("{what}: waitpid({pid}): {e}"),
            }
            if start.elapsed() > limit {
                panic!("{what}: child {pid} still running after {limit:?} (hang?)");
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for `pid` and checks that it exited with `code`.
    pub fn expect_exit(&mut self, pid: Pid, code: i32, what: &str) {
        match self.wait(pid, what) {
            WaitStatus::Exited(_, got) => assert_eq!(
                got,
                code,
                "{what}: expected exit code {}, got {}",
                describe(code),
                describe(got)
            ),
            other => panic!(
                "{what}: expected exit code {}, got {other:?}",
                describe(code)
            ),
        }
    }

    /// True if `pid` has not ended yet (it is not reaped by this call unless
    /// it has ended, in which case its status is returned as Err).
    pub fn running(&mut self, pid: Pid) -> std::result::Result<(), WaitStatus> {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => Ok(()),
            Ok(status) => {
                self.live.retain(|p| *p != pid);
                Err(status)
            }
            Err(e) => panic!("waitpid({pid}): {e}"),
        }
    }

    /// Sends `sig` to a child.
    pub fn signal(&self, pid: Pid, sig: Signal) {
        kill(pid, sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for pid in self.live.drain(..) {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Polls `cond` until it holds; fails the test with `what` after the deadline.
pub fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    poll_until_within(DEADLINE, what, &mut cond)
}

/// Like [`poll_until`] with an explicit deadline.
pub fn poll_until_within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// GETNCNT, unwrapped.
pub fn ncnt(set: &SemaphoreSet, n: u16) -> u32 {
    set.ncnt(n).expect("GETNCNT")
}

/// GETZCNT, unwrapped.
pub fn zcnt(set: &SemaphoreSet, n: u16) -> u32 {
    set.zcnt(n).expect("GETZCNT")
}

/// GETVAL, unwrapped.
pub fn val(set: &SemaphoreSet, n: u16) -> u16 {
    set.value(n).expect("GETVAL")
}

/// GETALL, unwrapped.
pub fn vals(set: &SemaphoreSet) -> Vec<u16> {
    set.values().expect("GETALL")
}

/// GETPID, unwrapped.
pub fn sempid(set: &SemaphoreSet, n: u16) -> i32 {
    set.pid(n).expect("GETPID")
}

/// Waits until semaphore `n` has exactly `count` processes in GETNCNT.
pub fn wait_ncnt(set: &SemaphoreSet, n: u16, count: u32) {
    poll_until(&format!("GETNCNT({n}) == {count}"), || {
        ncnt(set, n) == count
    });
}

/// Waits until semaphore `n` has exactly `count` processes in GETZCNT.
pub fn wait_zcnt(set: &SemaphoreSet, n: u16, count: u32) {
    poll_until(&format!("GETZCNT({n}) == {count}"), || {
        zcnt(set, n) == count
    });
}

/// Takes one unit of semaphore `n` (no undo), waiting at most
/// [`UNDO_DEADLINE`]: used to see that a dead process's undo, which gives the
/// unit back, has been applied.
pub fn take_within_undo_deadline(set: &SemaphoreSet, n: u16, what: &str) {
    if let Err(e) = set.op_timeout(&[Op::wait(n, 1)], UNDO_DEADLINE) {
        panic!("{what}: P on semaphore {n} did not get its unit within {UNDO_DEADLINE:?}: {e}");
    }
}

/// The one-letter state of a process from /proc (R, S, T, Z...).
pub fn process_state(pid: Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state is the first field after the parenthesised command name.
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
}

/// Waits until `pid` is asleep in a futex system call (so a signal sent now
/// interrupts the wait itself, not the code leading to it).
pub fn wait_asleep_in_futex(pid: Pid) {
    const SYS_FUTEX: &str = "202"; // x86-64
    poll_until(&format!("process {pid} asleep in futex()"), || {
        if process_state(pid) != Some('S') {
            return false;
        }
        match std::fs::read_to_string(format!("/proc/{pid}/syscall")) {
            Ok(s) => s.split_whitespace().next() == Some(SYS_FUTEX),
            // Not readable here: the sleeping state has to do.
            Err(_) => true,
        }
    });
}

/// Wall-clock seconds now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Waits until the wall clock is well into a second later than `t` (50 ms
/// past the boundary, so a coarse clock has caught up too) and returns the
/// new second.
pub fn next_second_after(t: i64) -> i64 {
    poll_until("the wall clock to pass a second boundary", || {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        d.as_secs() as i64 > t && d.subsec_millis() >= 50
    });
    now_secs()
}

/// A pipe a child uses to tell the parent it reached a point.
pub struct Signal1 {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
}

impl Signal1 {
    pub fn new() -> Signal1 {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        Signal1 { read, write }
    }

    /// In the child: says "reached".
    pub fn notify(&self) {
        let _ = nix::unistd::write(&self.write, b"!");
    }

    /// In the parent: waits (with the deadline) for the child's notice.
    pub fn wait(&self, what: &str) {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd that lives across the call.
        let n = unsafe { libc::poll(&mut pfd, 1, DEADLINE.as_millis() as libc::c_int) };
        assert!(
            n == 1,
            "{what}: no notice from the child within {DEADLINE:?}"
        );
        let mut b = [0u8; 1];
        let got = nix::unistd::read(&self.read, &mut b).expect("read the notice");
        assert_eq!(got, 1, "{what}: the child closed the pipe without a notice");
    }
}
