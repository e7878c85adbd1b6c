//! The LD_PRELOAD library (`preload/`, `libshmsem_preload.so`): unmodified C
//! programs (tests/c/*.c, compiled here with gcc) and Perl's IPC::Semaphore
//! run on shmsem.
//!
//! Each test builds the library with cargo (same target directory and
//! profile as this test binary), runs programs with `LD_PRELOAD` and a
//! namespace of its own (`SHMSEM_NAMESPACE`), and destroys the namespace at
//! the end. That the calls really reach shmsem and not the kernel is shown
//! with keyed sets: while the program holds its set, the kernel has no set
//! with that key and the test process finds it in the namespace (and, run
//! without the library, the other way round). Programs whose output does
//! not depend on where the set lives are also run against the kernel, and
//! the outputs must be equal.
//!
//! Every child process runs under a deadline (and the C programs under
//! `alarm`): a hang is a failure with the output so far. Without gcc (or
//! perl) the tests that need it say so on stderr and pass vacuously.
// The ban on std atomics, fences and raw futex calls (clippy.toml) keeps them
// inside the library's shim; this program is not the library: its atomics
// are its own (process-local counters, or words of a mapping it made), and
// its raw futex and semtimedop calls are the competitors it measures.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shmsem::sysv::{SemctlArg, GETALL};
use shmsem::{Error, Namespace};
use support::{
    compile_c, have_gcc, manifest_dir, ns_name, preload_lib, tool_works, NsNameGuard, ScratchDir,
};

/// How long any one program may run.
const DEADLINE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// The kernel's sets, and the programs' namespace
// ---------------------------------------------------------------------------

/// Whether the kernel's System V semaphores work here (for the comparison
/// runs without the library).
fn kernel_sysv_works() -> bool {
    // SAFETY: plain system calls with integer arguments.
    unsafe {
        let id = libc::semget(libc::IPC_PRIVATE, 1, 0o600);
        if id < 0 {
            return false;
        }
        libc::semctl(id, 0, libc::IPC_RMID);
        true
    }
}

/// The kernel's set with this key, if any.
fn kernel_set(key: i32) -> Option<i32> {
    // SAFETY: plain system call with integer arguments.
    let id = unsafe { libc::semget(key, 0, 0) };
    (id >= 0).then_some(id)
}

/// A key no kernel set and no other test uses: the test process's pid and
/// a per-test number.
fn unique_key(n: i32) -> i32 {
    let key = 0x1000_0000 | ((std::process::id() as i32 & 0xf_ffff) << 8) | (n & 0xff);
    assert_eq!(
        kernel_set(key),
        None,
        "a kernel set already has key {key:#x}"
    );
    key
}

/// Removes the kernel's set with this key at the end of a test (a program
/// run without the library that failed before removing its set).
struct KernelKeyGuard(i32);

impl Drop for KernelKeyGuard {
    fn drop(&mut self) {
        if let Some(id) = kernel_set(self.0) {
            // SAFETY: plain system call; IPC_RMID takes no fourth argument.
            unsafe { libc::semctl(id, 0, libc::IPC_RMID) };
        }
    }
}

/// One test's namespace and scratch directory; both are removed on drop.
struct Fixture {
    ns_name: String,
    // Field order is drop order: the namespace, then the directory.
    _ns: NsNameGuard,
    dir: ScratchDir,
}

impl Fixture {
    /// None (with a note on stderr) when gcc is not available.
    fn new(test: &str) -> Option<Fixture> {
        if !have_gcc() {
            support::skipped(&format!("{test}: gcc not found"));
            return None;
        }
        let ns_name = ns_name("t-preload", test);
        let dir = ScratchDir::new(&ns_name);
        let _ = preload_lib();
        Some(Fixture {
            _ns: NsNameGuard(ns_name.clone()),
            ns_name,
            dir,
        })
    }

    fn ns(&self) -> Arc<Namespace> {
        Namespace::open(&self.ns_name).expect("open the test's namespace")
    }

    /// Compiles tests/c/NAME.c into the scratch directory.
    fn compile(&self, name: &str) -> PathBuf {
        let src = manifest_dir()
            .join("tests")
            .join("c")
            .join(format!("{name}.c"));
        let exe = self.dir.path().join(name);
        compile_c(&src, &exe, &["-pthread"]);
        exe
    }

    /// A command for `program`, with the library preloaded and the test's
    /// namespace, or (`preload == false`) with neither: the kernel's calls.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>, preload: bool) -> Command {
        let mut cmd = Command::new(program);
        if preload {
            cmd.env("LD_PRELOAD", preload_lib())
                .env("SHMSEM_NAMESPACE", &self.ns_name);
        } else {
            cmd.env_remove("LD_PRELOAD").env_remove("SHMSEM_NAMESPACE");
        }
        cmd
    }
}

// ---------------------------------------------------------------------------
// Running programs under a deadline
// ---------------------------------------------------------------------------

/// A running program whose stdout arrives line by line.
struct Running {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
    started: Instant,
    /// Set once the program is reaped.
    status: Option<ExitStatus>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let what = format!("{:?}", cmd.get_program());
        // Its own process group, so that a failure kills the forked
        // grandchildren too.
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Running {
            what,
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
            started: Instant::now(),
            status: None,
        }
    }

    fn remaining(&self) -> Duration {
        DEADLINE.saturating_sub(self.started.elapsed())
    }

    /// Whether the program has exited, without reaping it: until it is
    /// reaped its pid, which is also its process group's id, cannot be
    /// reused, so signalling the group reaches only what it started.
    fn has_exited(&self) -> bool {
        // SAFETY: siginfo_t is plain C data; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer; WNOWAIT leaves the child
        // waitable.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: waitid filled `info` (si_pid stays 0 if nothing exited).
        r == 0 && unsafe { info.si_pid() } != 0
    }

    /// SIGKILLs whatever is left of the program's process group (forked
    /// grandchildren of a program that failed), then reaps the program.
    fn kill_all(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            // SAFETY: plain system call; the program is not reaped yet, so
            // the group id is still the one it leads.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
            self.status = self.child.wait().ok();
        }
        self.status
    }

    /// Kills the program and fails with everything it said.
    fn fail(&mut self, why: &str) -> ! {
        self.kill_all();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        panic!(
            "{}: {why}\nstdout so far:\n{}\nstderr:\n{stderr}",
            self.what,
            self.seen.join("\n")
        );
    }

    /// Waits for the next line starting with `prefix` and returns the rest.
    fn expect(&mut self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(self.remaining()) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.fail(&format!("no line {prefix:?} within {DEADLINE:?}"))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.fail(&format!("stdout closed before a line {prefix:?}"))
                }
            }
        }
    }

    /// Lets a program waiting at its handshake continue.
    fn go(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"go\n");
        }
    }

    /// Closes stdin, waits for the exit (within the deadline), and returns
    /// the exit status, all of stdout and all of stderr.
    fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        self.stdin = None;
        while !self.has_exited() {
            if self.started.elapsed() > DEADLINE {
                self.fail(&format!("still running after {DEADLINE:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let Some(status) = self.kill_all() else {
            self.fail("wait failed")
        };
        // The reader ends at EOF, once every line is in.
        while let Ok(line) = self.lines.recv_timeout(self.remaining()) {
            self.seen.push(line);
        }
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status, std::mem::take(&mut self.seen), stderr)
    }

    /// Like `finish`, but the program must exit with status 0; returns
    /// stdout.
    fn finish_ok(self) -> Vec<String> {
        let what = self.what.clone();
        let (status, lines, stderr) = self.finish();
        assert!(
            status.success(),
            "{what} exited with {status}\nstdout:\n{}\nstderr:\n{stderr}",
            lines.join("\n")
        );
        lines
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Runs a program to completion with stdin closed; it must exit with 0.
fn run_ok(cmd: Command) -> Vec<String> {
    Running::spawn(cmd).finish_ok()
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// Ping-pong between two forked C children with blocking semop (strict
/// alternation checked in shared memory), then a bounded buffer between a
/// producer and a consumer child (multi-op semop and semtimedop). The set
/// is keyed: while it exists the kernel has no set with that key, and the
/// namespace has it under the id the program printed.
#[test]
fn forked_c_children_ping_pong_and_bounded_buffer() {
    let Some(fx) = Fixture::new("pingpong") else {
        return;
    };
    let exe = fx.compile("pingpong");
    let key = unique_key(1);
    let _kernel_guard = KernelKeyGuard(key);
    let ns = fx.ns();

    let mut cmd = fx.command(&exe, true);
    cmd.arg(key.to_string()).arg("3000");
    let mut prog = Running::spawn(cmd);
    let id: i32 = prog.expect("ready set ").parse().expect("set id");
    assert_eq!(kernel_set(key), None, "the kernel has the program's set");
    assert_eq!(
        ns.semget(key, 0, 0),
        Ok(id),
        "shmsem lacks the program's set"
    );
    prog.go();
    let out = prog.finish_ok();
    assert_eq!(
        out[1..],
        lines(&["pingpong 6000", "buffer 3000 8 0 1", "done"])[..]
    );
    assert_eq!(ns.semget(key, 0, 0), Err(Error::NotFound));
}

/// SEM_UNDO of C children that die without exit code: killed with SIGKILL
/// while the parent is blocked on the semaphore, leaving through _exit(),
/// and through exit(). The parent must get the semaphore back each time
/// (it waits with a 30 s semtimedop, so a lost undo is EAGAIN, not a hang).
#[test]
fn sem_undo_of_killed_and_exited_c_children() {
    let Some(fx) = Fixture::new("undo") else {
        return;
    };
    let exe = fx.compile("undo_kill");
    let expected = lines(&[
        "phase 1: semtimedop 0 0 holder killed killer 0 value 0",
        "phase 2: semtimedop 0 0 holder exited value 0",
        "phase 3: semtimedop 0 0 holder exited value 0",
        "done",
    ]);
    let out = run_ok(fx.command(&exe, true));
    assert_eq!(out, expected, "with LD_PRELOAD");
    // The program itself is right: the kernel gives the same.
    if kernel_sysv_works() {
        let out = run_ok(fx.command(&exe, false));
        assert_eq!(out, expected, "against the kernel");
    }
}

/// syscall(SYS_semget / SYS_semop / SYS_semtimedop / SYS_semctl, ...) go to
/// shmsem; other numbers (getpid, gettid, six-argument mmap, munmap, close
/// with its errno, write) pass through to the real syscall. Run without the
/// library, the same program's set is the kernel's instead.
#[test]
fn raw_syscalls_go_to_shmsem_and_others_pass_through() {
    let Some(fx) = Fixture::new("rawsys") else {
        return;
    };
    let exe = fx.compile("rawsys");
    let key = unique_key(2);
    let _kernel_guard = KernelKeyGuard(key);
    let ns = fx.ns();

    let mut cmd = fx.command(&exe, true);
    cmd.arg(key.to_string());
    let mut prog = Running::spawn(cmd);
    assert_eq!(prog.expect("values "), "5 2 0");
    let id: i32 = prog.expect("ready set ").parse().expect("set id");
    assert_eq!(kernel_set(key), None, "the kernel has the program's set");
    assert_eq!(
        ns.semget(key, 0, 0),
        Ok(id),
        "shmsem lacks the program's set"
    );
    let mut values = [0u16; 3];
    ns.semctl(id, 0, GETALL, SemctlArg::GetAll(&mut values))
        .expect("GETALL of the program's set");
    assert_eq!(values, [5, 2, 0]);
    prog.go();
    let out = prog.finish_ok();
    assert_eq!(out[2..], lines(&["passthrough ok", "done"])[..]);
    assert_eq!(ns.semget(key, 0, 0), Err(Error::NotFound));

    // Without the library the set is the kernel's, and shmsem never sees it.
    if kernel_sysv_works() {
        let mut cmd = fx.command(&exe, false);
        cmd.arg(key.to_string());
        let mut prog = Running::spawn(cmd);
        assert_eq!(prog.expect("values "), "5 2 0");
        let id: i32 = prog.expect("ready set ").parse().expect("set id");
        assert_eq!(kernel_set(key), Some(id), "the kernel lacks the set");
        assert_eq!(ns.semget(key, 0, 0), Err(Error::NotFound));
        prog.go();
        let out = prog.finish_ok();
        assert_eq!(out[2..], lines(&["passthrough ok", "done"])[..]);
        assert_eq!(kernel_set(key), None);
    }
}

/// Bad pointers (sops, timeout, IPC_STAT/IPC_SET/GETALL/SETALL/IPC_INFO
/// buffers, a sops array running into a PROT_NONE page, read-only output
/// buffers) give EFAULT without a crash, in the kernel's order relative to
/// E2BIG/EINVAL and lookup errors; unknown semctl commands (-1, 4, 10, 21,
/// 99, IPC_64|GETVAL...) give EINVAL, also through syscall(SYS_semctl). The
/// output must equal the kernel's line for line.
#[test]
fn bad_pointers_unknown_commands_and_check_order_match_the_kernel() {
    let Some(fx) = Fixture::new("errors") else {
        return;
    };
    let exe = fx.compile("errors");
    let out = run_ok(fx.command(&exe, true));
    // A few lines spelled out, so that the test does not rest on the
    // kernel comparison alone.
    for line in [
        "semop NULL,0: EINVAL",
        "semop bad,1: EFAULT",
        "semop bad,semopm+1: E2BIG",
        "semop -1 bad: EFAULT",
        "semop straddling: EFAULT",
        "thread semop off stack top: EFAULT",
        "thread semtimedop timeout off stack top: EFAULT",
        "semtimedop bad timeout: EFAULT",
        "semtimedop bad timeout,0 ops: EFAULT",
        "IPC_STAT bad: EFAULT",
        "IPC_STAT stale bad: EINVAL",
        "IPC_STAT readonly: EFAULT",
        "IPC_SET bad: EFAULT",
        "GETALL bad: EFAULT",
        "SETALL bad: EFAULT",
        "IPC_INFO bad: EFAULT",
        "cmd -1: EINVAL",
        "cmd 99: EINVAL",
        "cmd IPC_64|GETVAL: EINVAL",
        "setval -1 40000: EINVAL",
        "setval 40000: ERANGE",
        "SYS_semop bad: EFAULT",
        "SYS_semctl IPC_STAT bad: EFAULT",
        "SYS_semctl IPC_64|GETVAL: EINVAL",
        "values: 2 6",
        "stat: mode=640",
        "done",
    ] {
        assert!(
            out.iter().any(|l| l == line),
            "missing line {line:?} in:\n{}",
            out.join("\n")
        );
    }
    if kernel_sysv_works() {
        let kernel = run_ok(fx.command(&exe, false));
        let diff: Vec<String> = kernel
            .iter()
            .zip(out.iter())
            .filter(|(k, p)| k != p)
            .map(|(k, p)| format!("kernel: {k}\nshmsem: {p}"))
            .collect();
        assert!(
            diff.is_empty() && kernel.len() == out.len(),
            "differences from the kernel:\n{}",
            diff.join("\n")
        );
    }
}

/// semop and semctl(IPC_RMID) from atexit handlers (which glibc runs after
/// destroying thread-local storage), one registered before the program's
/// first semaphore call so that it runs after anything registered later.
#[test]
fn ipc_rmid_from_an_atexit_handler() {
    let Some(fx) = Fixture::new("atexit") else {
        return;
    };
    let exe = fx.compile("atexit_rmid");
    let key = unique_key(3);
    let _kernel_guard = KernelKeyGuard(key);
    let ns = fx.ns();

    let mut cmd = fx.command(&exe, true);
    cmd.arg(key.to_string());
    let mut prog = Running::spawn(cmd);
    let id: i32 = prog.expect("ready set ").parse().expect("set id");
    assert_eq!(kernel_set(key), None, "the kernel has the program's set");
    assert_eq!(
        ns.semget(key, 0, 0),
        Ok(id),
        "shmsem lacks the program's set"
    );
    prog.go();
    let out = prog.finish_ok();
    assert_eq!(
        out[1..],
        lines(&[
            "atexit rmid private 0 0",
            "atexit semop 0 0",
            "atexit getval 1 0",
            "atexit rmid 0 0",
            "atexit getval after rmid -1 EINVAL",
        ])[..]
    );
    assert_eq!(ns.semget(key, 0, 0), Err(Error::NotFound));
    let mut info = shmsem::sysv::Seminfo::default();
    ns.semctl(0, 0, shmsem::sysv::SEM_INFO, SemctlArg::Info(&mut info))
        .expect("SEM_INFO");
    assert_eq!(info.semusz, 0, "sets left in the namespace");
}

/// Perl's IPC::Semaphore (semget/semop/semctl of the C library) on shmsem:
/// create, setall, op, getall, setval, stat, getncnt, getpid, a would-block
/// IPC_NOWAIT op, remove.
#[test]
fn perl_ipc_semaphore() {
    if !tool_works("perl", &["-MIPC::Semaphore", "-e", "1"]) {
        support::skipped("perl_ipc_semaphore: perl with IPC::Semaphore not found");
        return;
    }
    let Some(fx) = Fixture::new("perl") else {
        return;
    };
    let key = unique_key(4);
    let _kernel_guard = KernelKeyGuard(key);
    let ns = fx.ns();
    let script = manifest_dir().join("tests/c/ipc_semaphore.pl");

    let mut cmd = fx.command("perl", true);
    cmd.arg(&script).arg(format!("{key:x}"));
    let mut prog = Running::spawn(cmd);
    let id: i32 = prog.expect("ready set ").parse().expect("set id");
    assert_eq!(kernel_set(key), None, "the kernel has perl's set");
    assert_eq!(ns.semget(key, 0, 0), Ok(id), "shmsem lacks perl's set");
    let mut values = [0u16; 3];
    ns.semctl(id, 0, GETALL, SemctlArg::GetAll(&mut values))
        .expect("GETALL of perl's set");
    assert_eq!(values, [0, 4, 9]);
    prog.go();
    let out = prog.finish_ok();
    assert_eq!(
        out,
        lines(&[
            "values 0 4 3",
            "val2 9",
            "nsems 3 mode 600",
            "ncnt 0 pid_is_me 1",
            "nowait EAGAIN",
            &format!("ready set {id}"),
            "removed yes",
        ])
    );
    assert_eq!(ns.semget(key, 0, 0), Err(Error::NotFound));
}

/// Permission checks seen by an unprivileged process (a child of the
/// program that switches from root to uid/gid 65534), and their order
/// relative to EFAULT: SETALL on a write-only set works (the library learns
/// the set's size without read permission), SETALL from a bad buffer on a
/// read-only set is EACCES, GETALL into a bad buffer on a readable set is
/// EFAULT, IPC_RMID/IPC_SET by a stranger is EPERM, SEM_STAT_ANY needs no
/// permission. The output must equal the kernel's. Needs root.
#[test]
fn permission_checks_and_their_order_match_the_kernel() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        support::skipped("permission_checks_and_their_order_match_the_kernel: needs root");
        return;
    }
    let Some(fx) = Fixture::new("perms") else {
        return;
    };
    let exe = fx.compile("perms");
    let out = run_ok(fx.command(&exe, true));
    for line in [
        "wo SETALL: ok",
        "wo SETALL bad: EFAULT",
        "wo GETALL bad: EACCES",
        "ro SETALL bad: EACCES",
        "ro GETALL bad: EFAULT",
        "none SETALL bad: EACCES",
        "wo values: 4 2",
        "done",
    ] {
        assert!(
            out.iter().any(|l| l == line),
            "missing line {line:?} in:\n{}",
            out.join("\n")
        );
    }
    if kernel_sysv_works() {
        let kernel = run_ok(fx.command(&exe, false));
        let diff: Vec<String> = kernel
            .iter()
            .zip(out.iter())
            .filter(|(k, p)| k != p)
            .map(|(k, p)| format!("kernel: {k}\nshmsem: {p}"))
            .collect();
        assert!(
            diff.is_empty() && kernel.len() == out.len(),
            "differences from the kernel:\n{}",
            diff.join("\n")
        );
    }
}
