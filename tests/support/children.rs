//! Forked children: exit codes, the child's own safety net, forking a body
//! that never returns into the harness, waits with deadlines, the children
//! of one test, polling, pipes, and a process's state in /proc.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// How long any single wait on observable state (or for a child) may take
/// before the test fails. Generous: the machine has two cores and tests may
/// run under load.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The chaos and exhaustion tests' [`DEADLINE`]: their children and
/// sleepers are many.
pub const LONG_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Exit codes
// ---------------------------------------------------------------------------

/// Child exit code for a successful call.
pub const OK: i32 = 0;
/// Child exit code for a panic inside the child.
pub const PANICKED: i32 = 250;
/// Child exit codes from `CHECK_FAILED` up (below `PANICKED`) report a failed
/// check inside the child; `CHECK_FAILED + k` names check `k` of that child.
pub const CHECK_FAILED: i32 = 200;

/// The exit code a child reports for a call's result: 0 for success, the
/// errno for an error.
pub fn rc(r: shmsem::Result<()>) -> i32 {
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

/// A panic's message.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "non-string panic".to_string()
    }
}

// ---------------------------------------------------------------------------
// Forking
// ---------------------------------------------------------------------------

/// A forked child's own safety net, so that nothing outlives a test run
/// even if the test process dies.
#[derive(Clone, Copy, Debug)]
pub struct ChildNet {
    /// The child is killed by SIGALRM after this many seconds.
    pub alarm_secs: u32,
    /// The child dies with SIGKILL when the thread that forked it ends
    /// (PR_SET_PDEATHSIG).
    pub die_with_parent: bool,
}

impl ChildNet {
    /// An alarm of `secs` seconds only.
    pub const fn alarm(secs: u32) -> ChildNet {
        ChildNet {
            alarm_secs: secs,
            die_with_parent: false,
        }
    }

    /// An alarm of `secs` seconds, and death with the parent.
    pub const fn alarm_and_parent_death(secs: u32) -> ChildNet {
        ChildNet {
            alarm_secs: secs,
            die_with_parent: true,
        }
    }

    /// Arms the net in the calling (child) process.
    pub fn arm(self) {
        if self.die_with_parent {
            // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a property of this
            // process.
            unsafe {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                )
            };
        }
        // SAFETY: alarm() only arms a timer for this process.
        unsafe { libc::alarm(self.alarm_secs) };
    }
}

/// Forks a child that arms `net`, runs `body` and ends with `_exit(code)`
/// (no exit handlers, no return into the harness); a panic becomes
/// [`PANICKED`]. `body` may itself end the process, e.g. with
/// `std::process::exit` for a normal exit.
///
/// The caller must be the only thread that uses the library or holds a
/// lock the child needs (tests hold [`crate::support::exclusive`] through
/// [`crate::support::TestEnv`]; child processes are single threaded).
pub fn fork_child(net: ChildNet, body: impl FnOnce() -> i32) -> Pid {
    // SAFETY: see the function's contract: no other thread of this process
    // is inside the library or holds a lock the child could need; the child
    // only runs `body` (shmsem calls and plain Rust) and then ends with
    // `_exit`, never returning.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            net.arm();
            let code = catch_unwind(AssertUnwindSafe(body)).unwrap_or(PANICKED);
            // SAFETY: _exit ends the process at once; none of the parent's
            // state (harness, guards) runs in the child.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Why [`try_wait_for`] has no status.
#[derive(Debug)]
pub enum WaitError {
    /// Still running at the deadline.
    TimedOut,
    /// waitpid failed.
    Failed(nix::Error),
}

/// Waits for `pid` to end, polling, until `limit`.
pub fn try_wait_for(pid: Pid, limit: Duration) -> Result<WaitStatus, WaitError> {
    let start = Instant::now();
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => return Ok(status),
            Err(e) => return Err(WaitError::Failed(e)),
        }
        if start.elapsed() > limit {
            return Err(WaitError::TimedOut);
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Waits for `pid` with a deadline and returns how it ended; fails the test
/// with `what` if it does not end in time.
pub fn wait_for(pid: Pid, limit: Duration, what: &str) -> WaitStatus {
    match try_wait_for(pid, limit) {
        Ok(status) => status,
        Err(WaitError::Failed(e)) => panic!("{what}: waitpid({pid}): {e}"),
        Err(WaitError::TimedOut) => {
            panic!("{what}: child {pid} still running after {limit:?} (hang?)")
        }
    }
}

/// SIGKILLs our child `pid` and reaps it (errors ignored: it may be gone).
pub fn kill_and_reap(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
}

/// The forked children of one test. Dropping it SIGKILLs and reaps every
/// child not yet reaped, so a failing test leaves no process behind.
pub struct Kids {
    live: Vec<Pid>,
    deadline: Duration,
    net: ChildNet,
}

impl Default for Kids {
    fn default() -> Kids {
        Kids::new()
    }
}

impl Kids {
    /// Children with an alarm at 60 s, waited for up to [`DEADLINE`].
    pub fn new() -> Kids {
        Kids::with(DEADLINE, ChildNet::alarm(60))
    }

    /// The chaos and exhaustion tests' children: waited for up to
    /// [`LONG_DEADLINE`]; an alarm at 120 s, and death with the parent.
    pub fn long() -> Kids {
        Kids::with(LONG_DEADLINE, ChildNet::alarm_and_parent_death(120))
    }

    /// Children with safety net `net`, each waited for up to `deadline`.
    pub fn with(deadline: Duration, net: ChildNet) -> Kids {
        Kids {
            live: Vec::new(),
            deadline,
            net,
        }
    }

    /// Forks a child running `body` (see [`fork_child`]).
    pub fn spawn(&mut self, body: impl FnOnce() -> i32) -> Pid {
        let pid = fork_child(self.net, body);
        self.live.push(pid);
        pid
    }

    /// Waits (with the deadline) for `pid` to end and returns how it ended.
    pub fn wait(&mut self, pid: Pid, what: &str) -> WaitStatus {
        self.wait_within(pid, self.deadline, what)
    }

    /// Like [`Kids::wait`] with an explicit deadline.
    pub fn wait_within(&mut self, pid: Pid, limit: Duration, what: &str) -> WaitStatus {
        let status = wait_for(pid, limit, what);
        self.live.retain(|p| *p != pid);
        status
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

    /// `Ok` if `pid` has not ended yet; if it has, it is reaped and its
    /// status is returned as `Err`.
    pub fn running(&mut self, pid: Pid) -> Result<(), WaitStatus> {
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

    /// SIGKILLs `pid` and reaps it.
    pub fn kill(&mut self, pid: Pid, what: &str) {
        kill(pid, Signal::SIGKILL).unwrap_or_else(|e| panic!("{what}: kill({pid}): {e}"));
        match self.wait(pid, what) {
            WaitStatus::Signaled(_, Signal::SIGKILL, _) => {}
            other => panic!("{what}: expected death by SIGKILL, got {other:?}"),
        }
    }

    /// Children not yet reaped.
    pub fn live(&self) -> &[Pid] {
        &self.live
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for pid in self.live.drain(..) {
            kill_and_reap(pid);
        }
    }
}

// ---------------------------------------------------------------------------
// Waiting for observable state
// ---------------------------------------------------------------------------

/// Polls `cond` until it holds; fails the test with `what` after
/// [`DEADLINE`].
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

// ---------------------------------------------------------------------------
// Pipes
// ---------------------------------------------------------------------------

/// A pipe (read end, write end), both close-on-exec.
pub fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 just returned these two descriptors; each is owned once.
    unsafe {
        (
            File::from(OwnedFd::from_raw_fd(fds[0])),
            File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

/// Whether `fd` becomes readable (or reaches end of file) within `limit`.
pub fn readable_within(fd: &impl AsRawFd, limit: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = limit.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfd` is one valid pollfd that lives across the call.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

/// A pipe a child uses to tell the parent it reached a point.
pub struct Signal1 {
    read: File,
    write: File,
}

impl Default for Signal1 {
    fn default() -> Signal1 {
        Signal1::new()
    }
}

impl Signal1 {
    pub fn new() -> Signal1 {
        let (read, write) = pipe();
        Signal1 { read, write }
    }

    /// In the child: says "reached".
    pub fn notify(&self) {
        let _ = (&self.write).write(b"!");
    }

    /// In the parent: waits (with the deadline) for the child's notice.
    pub fn wait(&self, what: &str) {
        assert!(
            readable_within(&self.read, DEADLINE),
            "{what}: no notice from the child within {DEADLINE:?}"
        );
        let mut b = [0u8; 1];
        let got = (&self.read).read(&mut b).expect("read the notice");
        assert_eq!(got, 1, "{what}: the child closed the pipe without a notice");
    }
}

// ---------------------------------------------------------------------------
// A process's state
// ---------------------------------------------------------------------------

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
