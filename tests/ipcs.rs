//! util-linux's `ipcs`, `ipcmk` and `ipcrm`, unmodified, on shmsem's sets
//! through the preload library, against the same commands on the kernel.
//!
//! One shell script (SCRIPT below) makes sets with `ipcmk -S` and with a
//! small C program (tests/c/ipcs_ops.c: fixed keys, an IPC_PRIVATE set,
//! SETALL, semops with and without SEM_UNDO, a waiter for a decrement and
//! one for zero), then runs `ipcs -s`, `ipcs -s -i ID`, `-t`, `-p`, `-c`,
//! `-u`, `ipcs -l`, `cat` of /proc/sysvipc/sem and /proc/sys/kernel/sem,
//! reads both files through every open call (ipcs_ops `files`), and removes
//! everything with `ipcrm -s ID`, `-S KEY` and `-a`, with two calls that
//! fail (an unknown id, an unknown key). The script runs twice, both times
//! in a private IPC namespace of its own (`unshare --ipc`, which needs
//! root; `ipcrm -a` must not touch the machine's kernel sets):
//!
//! * on the kernel, after writing the test namespace's limits to the
//!   private namespace's /proc/sys/kernel/sem;
//! * on shmsem: LD_PRELOAD=libshmsem_preload.so and SHMSEM_NAMESPACE naming
//!   a namespace of this test's, created with limits unlike the kernel's
//!   defaults (so that `ipcs -l` and /proc/sys/kernel/sem can only match if
//!   they come from the namespace). The private IPC namespace has no kernel
//!   set, so everything the tools show must come from shmsem.
//!
//! The two outputs must be equal after normalising what differs between
//! any two runs: ipcmk's random keys (named by first appearance), times
//! (dates and seconds since the epoch), and pids (named after the program
//! that did the operation). Ids are not normalised: shmsem hands out ids
//! as the kernel does. Column widths are compared exactly, /proc's
//! included. `ipcs -l` also prints the message-queue and shared-memory
//! limits, which both runs get from their kernel namespaces; only its
//! semaphore section is compared.
//!
//! Lines that cannot match: none remain. What the kernel and shmsem do
//! differently with these files is not in the script: opening them for
//! writing (root may on the kernel, and writing /proc/sys/kernel/sem there
//! changes the limits; shmsem's limits are fixed, so the preload library
//! refuses with EACCES: `writes_are_refused`), fstat's size (0 on procfs,
//! the text's length here), a seek to the end (EINVAL or 0 on procfs), and
//! small reads of /proc/sys/kernel/sem past the first (end of file on the
//! kernel).
//!
//! util-linux (`ipcs`, `ipcmk`, `ipcrm`, `unshare`; the Debian and Ubuntu
//! package `util-linux`) must be installed: without it the tests fail and
//! say so. Without gcc they say so and pass vacuously, as tests/preload.rs
//! does. Not as root, the comparison is skipped with a note (it needs
//! `unshare --ipc`).

// The support code (tests/support/) uses std atomics of its own (process-
// local counters, words of mappings it decodes), which clippy.toml keeps
// out of the library: the crate-level allow every test file carries.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use shmsem::sysv::{SemctlArg, Seminfo, SEM_INFO};
use shmsem::{Limits, Namespace};
use support::{
    compile_c, have_gcc, is_root, manifest_dir, ns_files, ns_name, output_within, preload_lib,
    serial, tool_works, NsGuard, ScratchDir, Watchdog,
};

/// How long one run of the script may take.
const DEADLINE: Duration = Duration::from_secs(120);

/// The test namespace's limits (SEMMSL, SEMMNS, SEMOPM, SEMMNI): not the
/// kernel's defaults (32000, 1024000000, 500, 32000).
const LIMITS: (u32, u32, u32, u32) = (250, 32000, 32, 128);

/// The keys the C program uses (ipcs prints them as they are).
const FIXED_KEYS: [u32; 3] = [0, 0x5eed_0001, 0x5eed_0002];

/// The sequence both runs execute: `sh SCRIPT HELPER DIR`. Each command's
/// output is framed by `=== COMMAND` and `--- exit STATUS`; `@id NAME ID`
/// and `@pid NAME PID` lines name the sets and the processes.
const SCRIPT: &str = r#"
set -u
H=$1
DIR=$2
run() { echo "=== $*"; "$@" 2>&1; echo "--- exit $?"; }
mkset() {
    id=$("$H" mk "$2" "$3" "$4") || { echo "mk $1 failed"; exit 1; }
    echo "@id $1 $id"
    eval "$1=\$id"
}
ipcmkset() {
    echo "=== ipcmk -S $2 $3 $4"
    out=$(ipcmk -S "$2" "$3" "$4" 2>&1); st=$?
    echo "$out"; echo "--- exit $st"
    id=${out##*: }
    echo "@id $1 $id"
    eval "$1=\$id"
}

mkset A 0x5eed0001 3 0600
mkset B 0x5eed0002 1 0640
mkset P 0 2 0666
ipcmkset M 4 -p 0644
ipcmkset N 2 -p 0600
run ipcs -s
run ipcs -s -t

"$H" setall setA "$A" 1 2 3
"$H" setall setB "$B" 1
"$H" op opA "$A" 0:-1:u 2:+4
"$H" op undoer "$A" 2:-1:u
"$H" op opN "$N" 1:+7:n
"$H" wait "$A" 1:-3 &
W=$!
echo "@pid waiter $W"
"$H" wait "$B" 0:0 &
Z=$!
echo "@pid zwaiter $Z"
"$H" count "$A" 1 ncnt 1 || exit 1
"$H" count "$B" 0 zcnt 1 || exit 1

run ipcs -s
run ipcs -s -i "$A"
run ipcs -s -i "$B"
run ipcs -s -i "$P"
run ipcs -s -i "$M"
run ipcs -s -i "$N"
run ipcs -s -t
run ipcs -s -p
run ipcs -s -c
run ipcs -s -u
run ipcs -l
run ipcs -s -l
run cat /proc/sys/kernel/sem
run cat /proc/sysvipc/sem

"$H" op post "$A" 1:+1
"$H" op take "$B" 0:-1
wait "$W"; echo "--- waiter exit $?"
wait "$Z"; echo "--- zwaiter exit $?"
run ipcs -s -i "$A"
run ipcs -s -i "$B"
run ipcs -s -t
run "$H" files "$DIR"

run ipcs -s -i 123456
run ipcrm -s "$B"
run ipcrm -S 0x5eed0001
run ipcrm -s 123456
run ipcrm -S 0x7777
run ipcs -s
run cat /proc/sysvipc/sem
run ipcrm -a
run ipcs -s
run ipcs -s -u
run cat /proc/sysvipc/sem
"#;

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

/// Fails (with what to install) if util-linux's tools are missing.
fn require_util_linux() {
    let missing: Vec<&str> = [
        ("ipcs", &["-V"][..]),
        ("ipcmk", &["-V"][..]),
        ("ipcrm", &["-V"][..]),
        ("unshare", &["-V"][..]),
    ]
    .into_iter()
    .filter(|(tool, args)| !tool_works(tool, args))
    .map(|(tool, _)| tool)
    .collect();
    assert!(
        missing.is_empty(),
        "util-linux's {missing:?} not found: these tests run the unmodified tools \
         (Debian/Ubuntu: apt-get install util-linux)"
    );
}

/// The C program, compiled into `dir`.
fn helper(dir: &Path) -> std::path::PathBuf {
    let exe = dir.join("ipcs_ops");
    compile_c(
        &manifest_dir().join("tests").join("c").join("ipcs_ops.c"),
        &exe,
        &[],
    );
    exe
}

/// Runs `cmd` to its end under the deadline; its stdout, or a panic with
/// everything it printed.
fn run(cmd: &mut Command, what: &str) -> String {
    let out: Output = output_within(cmd, DEADLINE, what)
        .unwrap_or_else(|pid| panic!("{what} (pid {pid}) still running after {DEADLINE:?}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The script on the kernel, in a private IPC namespace whose limits are
/// set to LIMITS first.
fn kernel_run(script: &Path, helper: &Path, dir: &Path) -> String {
    let (msl, mns, opm, mni) = LIMITS;
    let mut cmd = Command::new("unshare");
    cmd.args(["--ipc", "--", "sh", "-c"])
        .arg(format!(
            "echo '{msl} {mns} {opm} {mni}' > /proc/sys/kernel/sem || exit 1; exec sh \"$0\" \"$@\""
        ))
        .arg(script)
        .arg(helper)
        .arg(dir)
        .env_remove("LD_PRELOAD")
        .env_remove("SHMSEM_NAMESPACE");
    run(&mut cmd, "the script on the kernel")
}

/// The script on shmsem: every process preloaded, in namespace `ns`, in a
/// private IPC namespace with no kernel set.
fn shmsem_run(script: &Path, helper: &Path, dir: &Path, ns: &str) -> String {
    let mut cmd = Command::new("unshare");
    cmd.args(["--ipc", "--", "sh"])
        .arg(script)
        .arg(helper)
        .arg(dir)
        .env("LD_PRELOAD", preload_lib())
        .env("SHMSEM_NAMESPACE", ns);
    run(&mut cmd, "the script under the preload library")
}

// ---------------------------------------------------------------------------
// Normalising
// ---------------------------------------------------------------------------

/// Whether `s` at byte `i` starts a date as ctime(3) prints it, "Www Mmm
/// dd hh:mm:ss yyyy" (24 bytes).
fn date_at(s: &[u8], i: usize) -> bool {
    const SHAPE: &[u8] = b"Aaa Aaa _9 99:99:99 9999";
    let Some(w) = s.get(i..i + SHAPE.len()) else {
        return false;
    };
    w.iter().zip(SHAPE).all(|(&c, &k)| match k {
        b'A' => c.is_ascii_uppercase(),
        b'a' => c.is_ascii_lowercase(),
        b'9' => c.is_ascii_digit(),
        b'_' => c == b' ' || c.is_ascii_digit(),
        _ => c == k,
    })
}

/// `line` with every date replaced by "<date>" padded to the date's width.
fn dates_out(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if date_at(b, i) {
            out.push_str(&format!("{:<24}", "<date>"));
            i += 24;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The byte ranges of the whitespace-separated tokens of `line`.
fn token_spans(line: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, line.len()));
    }
    spans
}

/// What differs between any two runs, taken out of one run's output.
struct Normaliser {
    /// ipcmk's keys, by first appearance.
    keys: HashMap<u32, String>,
    /// Pids of the script's processes, by the name the script gives them.
    pids: HashMap<String, String>,
}

impl Normaliser {
    fn key_name(&mut self, key: u32) -> Option<String> {
        if FIXED_KEYS.contains(&key) {
            return None;
        }
        let n = self.keys.len() + 1;
        Some(
            self.keys
                .entry(key)
                .or_insert_with(|| format!("random{n:02}"))
                .clone(),
        )
    }

    /// `line` with hexadecimal keys other than the fixed ones named.
    fn hex_keys_out(&mut self, line: &str) -> String {
        let mut out = line.to_string();
        for (s, e) in token_spans(line).into_iter().rev() {
            let tok = &line[s..e];
            let Some(hex) = tok.strip_prefix("0x") else {
                continue;
            };
            if hex.len() != 8 {
                continue;
            }
            let Ok(key) = u32::from_str_radix(hex, 16) else {
                continue;
            };
            if let Some(name) = self.key_name(key) {
                out.replace_range(s..e, &format!("0x{name}"));
            }
        }
        out
    }

    /// A row of /proc/sysvipc/sem: a random key named (the field
    /// right-aligned to the kernel's width of 10, which a long key
    /// overflows alike in both runs) and the two times (10 digits in both
    /// runs; 0 is kept: never operated on) made letters.
    fn proc_row_out(&mut self, line: &str) -> String {
        let spans = token_spans(line);
        if spans.len() != 10 || line.trim_start().starts_with("key") {
            return line.to_string();
        }
        let mut out = line.to_string();
        for &(s, e) in spans[8..].iter().rev() {
            if &line[s..e] != "0" {
                out.replace_range(s..e, &"t".repeat(e - s));
            }
        }
        let (_, key_end) = spans[0];
        let Ok(key) = line[..key_end].trim().parse::<i32>() else {
            return out;
        };
        match self.key_name(key as u32) {
            Some(name) => format!("{name:>10}{}", &out[key_end..]),
            None => out,
        }
    }

    /// A row of `ipcs -s -i`'s table (semnum value ncount zcount pid): the
    /// pid named after the script's process, in the same field width.
    fn pid_row_out(&self, line: &str) -> String {
        let spans = token_spans(line);
        if spans.len() != 5
            || !line[spans[0].0..spans[0].1]
                .bytes()
                .all(|b| b.is_ascii_digit())
        {
            return line.to_string();
        }
        let (s, _) = spans[4];
        let pid = line[s..spans[4].1].to_string();
        if pid == "0" {
            return line.to_string();
        }
        let name = match self.pids.get(&pid) {
            Some(n) => format!("<{n}>"),
            None => "<a pid the script did not name>".to_string(),
        };
        let width = line.len() - s;
        format!("{}{name:<width$}", &line[..s])
    }

    /// One run's output, normalised line by line.
    fn normalise(output: &str) -> Vec<String> {
        let mut n = Normaliser {
            keys: HashMap::new(),
            pids: HashMap::new(),
        };
        for line in output.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if let ["@pid", name, pid] = w[..] {
                n.pids.insert(pid.to_string(), name.to_string());
            }
        }
        let mut out = Vec::new();
        let mut section = String::new();
        let mut limits_part = String::new();
        for line in output.lines() {
            if let Some(cmd) = line.strip_prefix("=== ") {
                section = cmd.to_string();
                limits_part.clear();
                out.push(line.to_string());
                continue;
            }
            let w: Vec<&str> = line.split_whitespace().collect();
            if let ["@pid", name, _] = w[..] {
                out.push(format!("@pid {name}"));
                continue;
            }
            if section == "ipcs -l" {
                // Only the semaphore section: the others are the kernel's
                // in both runs.
                if line.starts_with("------ ") {
                    limits_part = line.to_string();
                }
                if !line.starts_with("--- exit")
                    && !limits_part.contains("Semaphore")
                    && !line.is_empty()
                {
                    continue;
                }
            }
            let mut l = dates_out(line);
            l = n.hex_keys_out(&l);
            if section == "cat /proc/sysvipc/sem" {
                l = n.proc_row_out(&l);
            }
            if section.starts_with("ipcs -s -i") {
                l = n.pid_row_out(&l);
            }
            out.push(l);
        }
        out
    }
}

/// Fails with both outputs side by side from the first difference.
fn assert_same(kernel: &[String], shmsem: &[String]) {
    if kernel == shmsem {
        return;
    }
    let first = kernel
        .iter()
        .zip(shmsem)
        .position(|(a, b)| a != b)
        .unwrap_or(kernel.len().min(shmsem.len()));
    let from = first.saturating_sub(8);
    let mut msg = format!(
        "the tools' output on shmsem differs from the kernel's at normalised line {}:\n",
        first + 1
    );
    for i in from..(first + 12).min(kernel.len().max(shmsem.len())) {
        let k = kernel.get(i).map_or("<none>", String::as_str);
        let s = shmsem.get(i).map_or("<none>", String::as_str);
        let mark = if k == s { ' ' } else { '!' };
        msg.push_str(&format!("{mark} kernel: {k:?}\n{mark} shmsem: {s:?}\n"));
    }
    panic!("{msg}");
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// The whole sequence, on the kernel and on shmsem, compared.
#[test]
fn ipcs_ipcmk_ipcrm_match_the_kernel() {
    let _serial = serial();
    let _watchdog = Watchdog::start("ipcs_ipcmk_ipcrm_match_the_kernel", 600);
    require_util_linux();
    if !have_gcc() {
        support::skipped("ipcs_ipcmk_ipcrm_match_the_kernel: gcc not found");
        return;
    }
    if !is_root() {
        support::skipped(
            "ipcs_ipcmk_ipcrm_match_the_kernel: not root. Both runs need a private \
             IPC namespace (unshare --ipc): the kernel run must not see or remove (ipcrm -a) \
             the machine's sets, and writes its limits there",
        );
        return;
    }
    let name = ns_name("t-ipcs", "match");
    let dir = ScratchDir::new(&name);
    let exe = helper(dir.path());
    let script = dir.path().join("script.sh");
    std::fs::write(&script, SCRIPT).expect("write the script");
    let (semmsl, semmns, semopm, semmni) = LIMITS;
    let limits = Limits {
        semmsl,
        semmns,
        semopm,
        semmni,
        ..Limits::default()
    };
    let ns = NsGuard(Namespace::open_with_limits(&name, limits).expect("create the namespace"));
    let kernel = kernel_run(&script, &exe, dir.path());
    let shmsem = shmsem_run(&script, &exe, dir.path(), &name);
    // Everything was removed by ipcrm.
    let mut info = Seminfo::default();
    ns.0.semctl(0, 0, SEM_INFO, SemctlArg::Info(&mut info))
        .expect("SEM_INFO");
    assert_eq!(info.semusz, 0, "sets left in the namespace after ipcrm -a");
    let (k, s) = (
        Normaliser::normalise(&kernel),
        Normaliser::normalise(&shmsem),
    );
    assert!(
        k.iter().any(|l| l.starts_with("0x5eed0001 ")),
        "the kernel run listed no set:\n{kernel}"
    );
    assert_same(&k, &s);
    drop(ns);
    assert_eq!(
        ns_files(&name),
        Vec::<String>::new(),
        "segments left behind"
    );
}

/// Opening the two files for writing fails with EACCES under the preload
/// library (the kernel lets root open them; a write to
/// /proc/sys/kernel/sem changes its limits, which shmsem cannot honour),
/// and the file stays readable. Nothing is written: the program only opens
/// and closes. As root, it runs in a private IPC namespace anyway.
#[test]
fn writes_are_refused() {
    let _serial = serial();
    let _watchdog = Watchdog::start("writes_are_refused", 300);
    require_util_linux();
    if !have_gcc() {
        support::skipped("writes_are_refused: gcc not found");
        return;
    }
    let name = ns_name("t-ipcs", "writes");
    let dir = ScratchDir::new(&name);
    let exe = helper(dir.path());
    let ns = NsGuard(Namespace::open(&name).expect("create the namespace"));
    let mut cmd = if is_root() {
        let mut c = Command::new("unshare");
        c.args(["--ipc", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.arg("writes")
        .env("LD_PRELOAD", preload_lib())
        .env("SHMSEM_NAMESPACE", &name);
    let out = run(&mut cmd, "ipcs_ops writes under the preload library");
    let l = Limits::default();
    let sysctl_len = format!("{}\t{}\t{}\t{}\n", l.semmsl, l.semmns, l.semopm, l.semmni).len();
    let header_len =
        "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n"
            .len();
    let mut want = String::new();
    for (path, len, append) in [
        // glibc's fopen "a" seeks to the end, which procfs's seq_file
        // refuses (EINVAL) before the library sees the stream.
        (
            "/proc/sysvipc/sem",
            header_len,
            if is_root() { "EINVAL" } else { "EACCES" },
        ),
        ("/proc/sys/kernel/sem", sysctl_len, "EACCES"),
    ] {
        want.push_str(&format!(
            "{path}\n  O_WRONLY: EACCES\n  O_RDWR: EACCES\n  O_WRONLY|O_TRUNC: EACCES\n  \
             O_RDONLY|O_TRUNC: {}\n  creat: EACCES\n  fopen \"w\": EACCES\n  \
             fopen \"r+\": EACCES\n  fopen \"a\": {append}\n  fopen \"we\": EACCES\n  \
             readable afterwards: {len} bytes\n",
            if is_root() { "ok" } else { "EACCES" }
        ));
    }
    assert_eq!(out, want);
    drop(ns);
    assert_eq!(
        ns_files(&name),
        Vec::<String>::new(),
        "segments left behind"
    );
}

#[test]
fn normalising_keeps_widths_and_names_what_varies() {
    let out = "\
@pid opA 4242
=== ipcs -s
0x1234abcd 3          root       644        4         
0x5eed0001 0          root       600        3         
=== cat /proc/sysvipc/sem
       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime
-1703643651          3   644          4     0     0     0     0          0 1796212078
 305441741          4   644          4     0     0     0     0 1796212079 1796212078
=== ipcs -s -i 0
otime = Wed Dec  2 11:47:58 2026  
0          1          0          0          4242      
";
    let n = Normaliser::normalise(out);
    assert_eq!(
        n,
        [
            "@pid opA",
            "=== ipcs -s",
            "0xrandom01 3          root       644        4         ",
            "0x5eed0001 0          root       600        3         ",
            "=== cat /proc/sysvipc/sem",
            "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime",
            "  random02          3   644          4     0     0     0     0          0 tttttttttt",
            "  random01          4   644          4     0     0     0     0 tttttttttt tttttttttt",
            "=== ipcs -s -i 0",
            "otime = <date>                    ",
            "0          1          0          0          <opA>     ",
        ]
    );
}
