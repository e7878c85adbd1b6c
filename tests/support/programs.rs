//! Other programs: this test binary run again for one test (a process that
//! inherited nothing), and any program run to its end under a deadline.

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A command that runs this test binary again, for test `test` only (which
/// may be an ignored one), on one thread, with its output not captured by
/// the harness.
///
/// `/proc/self/exe`, not `current_exe()`: the running binary even if cargo
/// replaced the file meanwhile (long runs while rebuilding).
pub fn rerun_self(test: &str) -> Command {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args([
        test,
        "--exact",
        "--nocapture",
        "--include-ignored",
        "--test-threads=1",
    ]);
    cmd
}

/// Runs `cmd` (stdin closed, stdout and stderr captured) to its end, for at
/// most `limit`; `what` names it in panics. `Err(pid)`: it was still running
/// at the deadline and has been SIGKILLed.
pub fn output_within(cmd: &mut Command, limit: Duration, what: &str) -> Result<Output, i32> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    // Reads both pipes to their end (so a large output cannot block the
    // program) and reaps it.
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => Ok(r.unwrap_or_else(|e| panic!("waiting for {what}: {e}"))),
        Err(_) => {
            // SAFETY: the pid is our child, not yet reaped (the waiting
            // thread reaps it after the kill).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            Err(pid)
        }
    }
}

/// Whether `program ARGS` runs and exits with status 0.
pub fn tool_works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
