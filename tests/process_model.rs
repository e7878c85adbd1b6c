//! What a process is, judged as programs judge it (issue #8): unmodified C
//! programs (tests/c/process_model.c) run with the preload library and,
//! for comparison, on the kernel.
//!
//! * A waiter killed and reaped takes nothing: the post after waitpid
//!   leaves the value at 1, whether it is a semop, SETVAL or a 2-op call,
//!   and with SEM_UNDO on the waiter, or a child of the waiter still alive.
//! * A process holds a constant number of descriptors whatever the number
//!   of sets it has touched, and its own open() keeps working under a low
//!   `ulimit -n`.
//! * A daemon that closes every descriptor while it holds a SEM_UNDO mutex
//!   is still alive (nobody else enters), and IPC_SET never touches the
//!   files it opened on the freed numbers.
//! * A root program that execs an unprivileged helper hands it no
//!   descriptor of a set.
//!
//! Each program runs under a deadline: a hang is a failure with its output.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::{
    compile_c, have_gcc, is_root, manifest_dir, ns_name, output_within, preload_lib, NsNameGuard,
    ScratchDir,
};

const DEADLINE: Duration = Duration::from_secs(120);

/// One test's namespace (destroyed on drop) and the compiled program.
struct Fixture {
    ns_name: String,
    exe: PathBuf,
    _ns: NsNameGuard,
    _dir: ScratchDir,
}

impl Fixture {
    fn new(test: &str) -> Option<Fixture> {
        if !have_gcc() {
            support::skipped(&format!("{test}: gcc not found"));
            return None;
        }
        let ns_name = ns_name("t-proc", test);
        let dir = ScratchDir::new(&ns_name);
        let exe = dir.path().join("process_model");
        let src = manifest_dir().join("tests/c/process_model.c");
        compile_c(&src, &exe, &[]);
        let _ = preload_lib();
        Some(Fixture {
            _ns: NsNameGuard(ns_name.clone()),
            ns_name,
            exe,
            _dir: dir,
        })
    }

    /// `process_model ARGS` (through `sh -c` when `shell` is given, e.g. a
    /// ulimit before it), with or without the library; its stdout lines,
    /// and its stderr.
    fn run(&self, preload: bool, shell: Option<&str>, args: &[&str]) -> (Vec<String>, String) {
        let mut cmd = match shell {
            Some(pre) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("{pre}; exec \"$0\" \"$@\""))
                    .arg(&self.exe)
                    .args(args);
                c
            }
            None => {
                let mut c = Command::new(&self.exe);
                c.args(args);
                c
            }
        };
        if preload {
            cmd.env("LD_PRELOAD", preload_lib())
                .env("SHMSEM_NAMESPACE", &self.ns_name);
        } else {
            cmd.env_remove("LD_PRELOAD").env_remove("SHMSEM_NAMESPACE");
        }
        let what = format!("process_model {args:?} (preload: {preload})");
        let out = output_within(&mut cmd, DEADLINE, &what)
            .unwrap_or_else(|pid| panic!("{what} (pid {pid}) hung"));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "{what} failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
        (stdout.lines().map(str::to_string).collect(), stderr)
    }

    /// The program's output with the library, checked equal to the
    /// kernel's.
    fn same_as_kernel(&self, shell: Option<&str>, args: &[&str]) -> Vec<String> {
        let (ours, _) = self.run(true, shell, args);
        let (kernel, _) = self.run(false, shell, args);
        assert_eq!(ours, kernel, "shmsem (left) and the kernel (right) differ");
        ours
    }
}

#[test]
fn a_killed_and_reaped_waiter_takes_nothing() {
    let Some(f) = Fixture::new("dead_waiter") else {
        return;
    };
    for mode in ["v", "setval", "twoop", "undo", "forked"] {
        let out = f.same_as_kernel(None, &["dead_waiter", mode, "20"]);
        assert!(
            out.last().unwrap().ends_with(": 0 of 20"),
            "{mode}: {out:?}"
        );
    }
}

#[test]
fn descriptors_stay_constant_over_5000_sets() {
    let Some(f) = Fixture::new("fd_loop") else {
        return;
    };
    let out = f.same_as_kernel(Some("ulimit -n 64"), &["fd_loop", "5000"]);
    assert_eq!(out, ["descriptors: grew by 0 from cycle 10 to cycle 5000"]);
    // How many: the kernel's count, and at most one more (the namespace's
    // liveness descriptor).
    let count = |preload| {
        let (_, err) = f.run(preload, Some("ulimit -n 16"), &["fd_loop", "100"]);
        err.lines()
            .find_map(|l| l.strip_prefix("open descriptors: "))
            .and_then(|n| n.parse::<i32>().ok())
            .unwrap_or_else(|| panic!("no count in {err:?}"))
    };
    let (ours, kernel) = (count(true), count(false));
    assert!(
        ours <= kernel + 1,
        "shmsem holds {} descriptors (kernel run: {kernel})",
        ours - kernel
    );
}

#[test]
fn a_daemon_that_closes_its_descriptors_is_alive() {
    let Some(f) = Fixture::new("daemon") else {
        return;
    };
    let out = f.same_as_kernel(None, &["daemon"]);
    assert_eq!(
        out,
        [
            "daemon: others that entered the mutex it holds: 0",
            "daemon: GETVAL while held 0",
            "daemon: its own file's mode after IPC_SET 600",
            "daemon: GETVAL after release 1",
        ]
    );
}

#[test]
fn an_exec_ed_unprivileged_helper_inherits_no_set_descriptor() {
    if !is_root() {
        support::skipped("an_exec_ed_unprivileged_helper_inherits_no_set_descriptor: needs root (setuid to 65534 before the exec)");
        return;
    }
    let Some(f) = Fixture::new("exec_helper") else {
        return;
    };
    let (out, _) = f.run(true, None, &["exec_helper"]);
    assert_eq!(out, ["shmsem descriptors inherited: 0"], "{out:?}");
}
