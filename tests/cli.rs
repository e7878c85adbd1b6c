//! The `shmsem` command, run as its own program against sets that other
//! processes made and use: this test process through the library, and
//! forked children blocked in semop or killed holding SEM_UNDO adjustments.
//! Both outputs are checked: the text a person reads and the JSON a script
//! parses.
#![cfg(feature = "cli")]
// The ban on std atomics, fences and raw futex calls (clippy.toml) keeps them
// inside the library's shim; this program is not the library: its atomics
// are its own (process-local counters, or words of a mapping it made), and
// its raw futex and semtimedop calls are the competitors it measures.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod support;

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use serde_json::Value;
use shmsem::sysv::{SemctlArg, SemidDs, IPC_CREAT, IPC_PRIVATE, IPC_STAT};
use shmsem::{Error, Namespace, Op, SemaphoreSet};
use support::{
    ncnt, output_within, poll_until, vals, wait_ncnt, wait_zcnt, Kids, NsGuard, TestEnv, OK,
};

/// How long one run of the command may take before the test fails.
const CLI_DEADLINE: Duration = Duration::from_secs(20);

/// What one run of the command did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `shmsem ARGS` with `env` added to an environment without
/// SHMSEM_NAMESPACE; kills it and fails if it outlives [`CLI_DEADLINE`].
fn run_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shmsem"));
    cmd.args(args)
        .env_remove("SHMSEM_NAMESPACE")
        .envs(env.iter().copied());
    let out = output_within(&mut cmd, CLI_DEADLINE, "the shmsem binary").unwrap_or_else(|_| {
        panic!(
            "`shmsem {}` still running after {CLI_DEADLINE:?} (hang?)",
            args.join(" ")
        )
    });
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `shmsem --namespace NS ARGS`.
fn run(ns: &Namespace, args: &[&str]) -> Run {
    let mut all = vec!["--namespace", ns.name()];
    all.extend_from_slice(args);
    run_env(&all, &[])
}

/// Runs `shmsem --namespace NS ARGS`, which must succeed; its stdout.
fn ok(ns: &Namespace, args: &[&str]) -> String {
    let r = run(ns, args);
    assert_eq!(
        r.code,
        0,
        "`shmsem {}` failed (exit {}): {}",
        args.join(" "),
        r.code,
        r.stderr
    );
    assert!(
        r.stderr.is_empty(),
        "`shmsem {}` wrote to stderr: {}",
        args.join(" "),
        r.stderr
    );
    r.stdout
}

/// Like [`ok`] with `--json`; the parsed document.
fn json(ns: &Namespace, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ok(ns, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!(
            "`shmsem {}`: output is not JSON ({e}):\n{out}",
            all.join(" ")
        )
    })
}

/// Runs a command that must fail with status 1 and one line on stderr
/// starting with `prefix` (e.g. `shmsem: semop: EAGAIN: `); that line.
fn fails(ns: &Namespace, args: &[&str], prefix: &str) -> String {
    let r = run(ns, args);
    check_failure(&r, args, prefix)
}

fn check_failure(r: &Run, args: &[&str], prefix: &str) -> String {
    assert_eq!(
        r.code,
        1,
        "`shmsem {}`: expected exit status 1, got {}; stderr: {}",
        args.join(" "),
        r.code,
        r.stderr
    );
    assert!(
        r.stdout.is_empty(),
        "`shmsem {}` printed: {}",
        args.join(" "),
        r.stdout
    );
    assert_eq!(
        r.stderr.lines().count(),
        1,
        "`shmsem {}`: expected one line on stderr, got: {:?}",
        args.join(" "),
        r.stderr
    );
    assert!(
        r.stderr.starts_with(prefix) && r.stderr.len() > prefix.len() + 1,
        "`shmsem {}`: expected a message starting with {prefix:?}, got {:?}",
        args.join(" "),
        r.stderr
    );
    r.stderr.trim_end().to_string()
}

/// The cells of the text table line whose first cell is `first`.
fn row<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no line starting with {first:?} in:\n{text}"))
}

/// The lines of the text between the line containing `title` and the
/// next blank line.
fn section<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| !l.contains(title))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

fn values_of(stat: &Value) -> Vec<u64> {
    stat["semaphores"]
        .as_array()
        .expect("semaphores array")
        .iter()
        .map(|s| s["value"].as_u64().expect("value"))
        .collect()
}

fn id_str(set: &SemaphoreSet) -> String {
    set.id().to_string()
}

#[test]
fn cli_mk_ls_stat_rm_by_key() {
    let env = TestEnv::new("cli_mk", 60);
    let ns = &env.ns;
    let key = 0x5e00_0000 | (std::process::id() as i32 & 0xffff);
    let key_hex = format!("{key:#010x}");

    // Made by the command, seen by this process.
    let out = ok(
        ns,
        &["mk", "--nsems", "3", "--key", &key_hex, "--mode", "640"],
    );
    let id: i32 = out
        .trim()
        .strip_prefix("Semaphore id: ")
        .unwrap_or_else(|| panic!("mk printed {out:?}"))
        .parse()
        .expect("an id");
    assert_eq!(ns.semget(key, 0, 0), Ok(id), "the set mk made, by key");
    let set = SemaphoreSet::from_id(ns, id);
    set.set_values(&[1, 2, 3]).expect("SETALL");
    // The same key again: EEXIST, and the decimal key is the same key.
    fails(
        ns,
        &["mk", "--key", &key.to_string()],
        "shmsem: semget: EEXIST: ",
    );
    let private = json(ns, &["mk", "-S", "1"]);
    assert_eq!(private["key"], 0, "{private}");
    let private_id = private["id"].as_i64().expect("mk --json gives the id") as i32;

    let ls = ok(ns, &["ls"]);
    let line = row(&ls, &key_hex);
    assert_eq!(line[1], id.to_string(), "ls: semid of {key_hex}:\n{ls}");
    assert_eq!(line[3], "640", "ls: perms:\n{ls}");
    assert_eq!(line[4], "3", "ls: nsems:\n{ls}");
    assert_eq!(row(&ls, "0x00000000")[1], private_id.to_string(), "{ls}");
    let ls = json(ns, &["ls"]);
    let sets = ls["sets"].as_array().expect("sets");
    assert_eq!(sets.len(), 2, "{ls}");
    let ours = sets.iter().find(|s| s["id"] == id).expect("the keyed set");
    assert_eq!(ours["key"], key, "{ls}");
    assert_eq!(ours["nsems"], 3, "{ls}");
    assert_eq!(ours["mode"], 0o640, "{ls}");
    assert_eq!(ours["namespace"], ns.name(), "{ls}");
    assert_eq!(ours["waiters"], 0, "{ls}");

    let stat = ok(ns, &["stat", "--key", &key_hex]);
    assert_eq!(row(&stat, "key")[1], key_hex, "{stat}");
    assert_eq!(row(&stat, "mode")[1], "0640", "{stat}");
    assert_eq!(row(&stat, "nsems")[1], "3", "{stat}");
    for (n, v) in [("0", "1"), ("1", "2"), ("2", "3")] {
        assert_eq!(row(&stat, n)[1], v, "stat: value of semaphore {n}:\n{stat}");
        // sempid: this process's SETALL.
        assert_eq!(row(&stat, n)[2], std::process::id().to_string(), "{stat}");
    }
    assert_eq!(section(&stat, "Pending operations"), ["  none"], "{stat}");
    let stat = json(ns, &["stat", &id.to_string()]);
    assert_eq!(values_of(&stat), [1, 2, 3], "{stat}");
    assert_eq!(stat["status"]["key"], key, "{stat}");
    assert_eq!(stat["status"]["nsems"], 3, "{stat}");
    assert_eq!(stat["id"], id, "{stat}");

    // rm by key, then by id; the sets are gone for this process too.
    assert_eq!(ok(ns, &["rm", "--key", &key_hex]), "");
    let mut ds = SemidDs::default();
    assert_eq!(
        ns.semctl(id, 0, IPC_STAT, SemctlArg::StatOut(&mut ds)),
        Err(Error::Invalid)
    );
    ok(ns, &["rm", &private_id.to_string()]);
    assert_eq!(json(ns, &["ls"])["sets"], Value::Array(vec![]));
    assert_eq!(ok(ns, &["ls"]).lines().count(), 1, "only the header");

    // Every failure: status 1 and one line naming the call and the errno.
    fails(ns, &["rm", "--key", &key_hex], "shmsem: semget: ENOENT: ");
    fails(
        ns,
        &["rm", &id.to_string()],
        "shmsem: semctl(IPC_RMID): EINVAL: ",
    );
    fails(ns, &["stat", &id.to_string()], "shmsem: report: EINVAL: ");
    fails(ns, &["stat", "--key", "77"], "shmsem: semget: ENOENT: ");
    let missing = format!("{}-missing", ns.name());
    let r = run_env(&["--namespace", &missing, "ls"], &[]);
    check_failure(
        &r,
        &["ls"],
        &format!("shmsem: namespace {missing}: ENOENT: "),
    );
    assert!(
        !Namespace::names().contains(&missing),
        "reading a namespace must not create it"
    );
    // Usage errors are clap's: status 2.
    assert_eq!(run(ns, &["stat"]).code, 2, "stat without a target");
    assert_eq!(
        run(ns, &["mk", "--mode", "999"]).code,
        2,
        "a mode that is not octal"
    );
}

#[test]
fn cli_set_and_op() {
    let env = TestEnv::new("cli_op", 60);
    let ns = &env.ns;
    let set = env.set_with(&[0, 0]);
    let id = id_str(&set);

    ok(ns, &["set", &id, "--val", "0=5", "--val", "1=1"]);
    assert_eq!(vals(&set), [5, 1], "after set --val");
    ok(ns, &["set", &id, "--all", "2,0"]);
    assert_eq!(vals(&set), [2, 0], "after set --all");
    ok(ns, &["op", &id, "0-1", "1+3"]);
    assert_eq!(vals(&set), [1, 3], "after op 0-1 1+3");
    let cli_pid = set.pid(0).expect("GETPID");
    assert!(
        cli_pid != 0 && cli_pid != std::process::id() as i32,
        "sempid is the command's"
    );

    // All or nothing: 1-5 would block, so 0-1 does not happen either.
    fails(
        ns,
        &["op", &id, "0-1", "1-5", "--nowait"],
        "shmsem: semop: EAGAIN: ",
    );
    fails(
        ns,
        &["op", &id, "0-1", "1-5:nowait"],
        "shmsem: semop: EAGAIN: ",
    );
    fails(
        ns,
        &["op", &id, "1-5", "--timeout", "50ms"],
        "shmsem: semtimedop: EAGAIN: ",
    );
    assert_eq!(vals(&set), [1, 3], "failed ops changed nothing");
    fails(ns, &["op", &id, "7+1"], "shmsem: semop: EFBIG: ");
    fails(
        ns,
        &["set", &id, "--val", "0=70000"],
        "shmsem: semctl(SETVAL): ERANGE: ",
    );
    fails(
        ns,
        &["set", &id, "--all", "1,2,3"],
        "shmsem: semctl(SETALL): EINVAL: ",
    );
    assert_eq!(
        run(ns, &["op", &id, "0*1"]).code,
        2,
        "bad op syntax is a usage error"
    );
    assert_eq!(run(ns, &["op", &id, "0=1"]).code, 2, "only =0 exists");

    // Wait for zero, satisfied at once.
    ok(ns, &["set", &id, "--val", "1=0"]);
    ok(ns, &["op", &id, "1=0", "--nowait"]);

    // SEM_UNDO from the shell: undone when the command exits, as in the
    // kernel; shmsem applies it when someone notices, so `stat` shows the
    // dead command holding it until `gc` applies it.
    ok(ns, &["op", &id, "0+2", "--undo"]);
    let stat = json(ns, &["stat", &id]);
    assert_eq!(values_of(&stat), [3, 0], "{stat}");
    let procs = stat["processes"].as_array().expect("processes");
    let holder: Vec<&Value> = procs
        .iter()
        .filter(|p| p["adjustments"] != Value::Array(vec![]))
        .collect();
    assert_eq!(holder.len(), 1, "one process holds an adjustment: {stat}");
    assert_eq!(holder[0]["alive"], false, "{stat}");
    assert_eq!(holder[0]["adjustments"][0]["num"], 0, "{stat}");
    assert_eq!(holder[0]["adjustments"][0]["adj"], -2, "{stat}");
    let gc = json(ns, &["gc"]);
    assert!(gc["dead_processes"].as_u64() >= Some(1), "{gc}");
    assert_eq!(vals(&set), [1, 0], "gc applied the command's undo");
}

#[test]
fn cli_stat_shows_blocked_processes() {
    let env = TestEnv::new("cli_blocked", 60);
    let ns = &env.ns;
    let set = env.set_with(&[0, 1]);
    let id = id_str(&set);
    let mut kids = Kids::new();

    // Three sleepers, in this order: two on semaphore 0 (one of them a
    // two-op call), one waiting for semaphore 1 to be zero.
    let a = kids.spawn(|| support::rc(set.op(&[Op::wait(0, 2)])));
    wait_ncnt(&set, 0, 1);
    let b = kids.spawn(|| support::rc(set.op(&[Op::wait(0, 1), Op::post(1, 1).undo()])));
    wait_ncnt(&set, 0, 2);
    let c = kids.spawn(|| support::rc(set.op(&[Op::zero(1)])));
    wait_zcnt(&set, 1, 1);

    let stat = json(ns, &["stat", &id]);
    let pending = stat["pending"].as_array().expect("pending");
    let pids: Vec<i64> = pending
        .iter()
        .map(|p| p["pid"].as_i64().expect("pid"))
        .collect();
    assert_eq!(
        pids,
        [a.as_raw() as i64, b.as_raw() as i64, c.as_raw() as i64],
        "FIFO order: {stat}"
    );
    let ops = |i: usize| -> Vec<&str> {
        pending[i]["ops"]
            .as_array()
            .expect("ops")
            .iter()
            .map(|o| o["text"].as_str().expect("text"))
            .collect()
    };
    assert_eq!(ops(0), ["0-2"]);
    assert_eq!(ops(1), ["0-1", "1+1:undo"]);
    assert_eq!(ops(2), ["1=0"]);
    assert_eq!(pending[1]["ops"][1]["op"], 1);
    assert_eq!(pending[1]["ops"][1]["flags"], serde_json::json!(["undo"]));
    assert!(pending.iter().all(|p| p["waited_ms"].is_u64()), "{stat}");
    assert_eq!(stat["semaphores"][0]["ncnt"], 2, "{stat}");
    assert_eq!(stat["semaphores"][0]["zcnt"], 0, "{stat}");
    assert_eq!(stat["semaphores"][1]["ncnt"], 0, "{stat}");
    assert_eq!(stat["semaphores"][1]["zcnt"], 1, "{stat}");
    for pid in [a, b, c] {
        let p = stat["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .find(|p| p["pid"] == pid.as_raw())
            .unwrap_or_else(|| panic!("sleeper {pid} not among the processes: {stat}"));
        assert_eq!(p["alive"], true, "{stat}");
        assert_eq!(p["queued"], 1, "{stat}");
    }

    let text = ok(ns, &["stat", &id]);
    let sem0 = row(&text, "0");
    assert_eq!(sem0[1], "0", "value of semaphore 0:\n{text}");
    assert_eq!(sem0[3..], ["2", "0"], "ncnt, zcnt of semaphore 0:\n{text}");
    assert_eq!(row(&text, "1")[3..], ["0", "1"], "semaphore 1:\n{text}");
    let queue = section(&text, "Pending operations");
    assert_eq!(queue.len(), 4, "a header and three sleepers:\n{text}");
    for (line, (pid, ops)) in queue[1..]
        .iter()
        .zip([(a, "0-2"), (b, "0-1 1+1:undo"), (c, "1=0")])
    {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], pid.to_string(), "{text}");
        assert!(line.ends_with(ops), "ops of {pid}: {line:?}");
    }
    let holding = section(&text, "Processes holding").join("\n");
    for pid in [a, b, c] {
        let cells = row(&holding, &pid.to_string());
        assert_eq!(cells[1..], ["alive", "1", "-"], "{text}");
    }

    let ls = json(ns, &["ls"]);
    assert_eq!(ls["sets"][0]["waiters"], 3, "{ls}");
    assert!(ls["sets"][0]["live_processes"].as_u64() >= Some(3), "{ls}");
    let ls = ok(ns, &["ls"]);
    assert_eq!(row(&ls, "0x00000000")[7], "3", "waiters column:\n{ls}");

    // watch: K frames, as text and as one JSON document per line.
    let frames = ok(ns, &["watch", &id, "--count", "2", "--interval", "10"]);
    assert_eq!(
        frames.matches("shmsem watch: frame ").count(),
        2,
        "{frames}"
    );
    assert_eq!(frames.matches("Pending operations").count(), 2, "{frames}");
    let frames = ok(
        ns,
        &["watch", &id, "--count", "3", "--interval", "10", "--json"],
    );
    let docs: Vec<Value> = frames
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON document"))
        .collect();
    assert_eq!(docs.len(), 3, "{frames}");
    for (i, d) in docs.iter().enumerate() {
        assert_eq!(d["frame"], i as u64 + 1);
        assert_eq!(d["pending"].as_array().map(Vec::len), Some(3), "{d}");
    }

    // Release them from the shell: a gets 2 units, b one (and adds one to
    // semaphore 1), then c sees semaphore 1 at zero once it is set so.
    ok(ns, &["op", &id, "0+3"]);
    kids.expect_exit(a, OK, "first sleeper");
    kids.expect_exit(b, OK, "second sleeper");
    // (b's undo of its 1+1 is applied whenever someone notices its exit.)
    assert_eq!(set.value(0), Ok(0));
    ok(ns, &["set", &id, "--val", "1=0"]);
    kids.expect_exit(c, OK, "zero waiter");
    let stat = json(ns, &["stat", &id]);
    assert_eq!(stat["pending"], Value::Array(vec![]), "{stat}");
}

#[test]
fn cli_stat_and_gc_with_a_process_killed_holding_undo() {
    let env = TestEnv::new("cli_killed", 60);
    let ns = &env.ns;
    let set = env.set_with(&[0, 5]);
    let id = id_str(&set);
    let mut kids = Kids::new();

    let victim = kids.spawn(|| {
        if set
            .op(&[Op::post(0, 3).undo(), Op::wait(1, 1).undo()])
            .is_err()
        {
            return support::CHECK_FAILED + 1;
        }
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    poll_until("the victim's semop", || vals(&set) == [3, 4]);
    kids.signal(victim, Signal::SIGKILL);
    assert!(matches!(
        kids.wait(victim, "victim"),
        WaitStatus::Signaled(_, Signal::SIGKILL, _)
    ));
    // From here on only the command touches the set (any IPC_STAT or
    // semop on it here would apply the undo before the command sees it).

    let stat = json(ns, &["stat", &id]);
    assert_eq!(values_of(&stat), [3, 4], "undo not applied yet: {stat}");
    let p = stat["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"] == victim.as_raw())
        .unwrap_or_else(|| panic!("the killed process is not shown: {stat}"));
    assert_eq!(p["alive"], false, "{stat}");
    assert_eq!(p["undo_record"], true, "{stat}");
    assert_eq!(
        p["adjustments"],
        serde_json::json!([{ "num": 0, "adj": -3 }, { "num": 1, "adj": 1 }]),
        "{stat}"
    );
    // stat read it without sweeping it: a second look still shows it.
    let text = ok(ns, &["stat", &id]);
    let line = row(&text, &victim.to_string());
    assert_eq!(line[1..], ["DEAD", "0", "0:-3", "1:+1"], "{text}");
    let dead = text
        .lines()
        .find(|l| l.starts_with("Dead processes not yet swept: "))
        .unwrap_or_else(|| panic!("no dead-process line:\n{text}"));
    assert!(dead.contains(&victim.to_string()), "{dead}");
    assert_eq!(row(&text, "0")[1], "3", "{text}");

    let gc = ok(ns, &["gc"]);
    assert!(
        gc.starts_with(&format!("namespace {}: 1 set checked; ", ns.name())),
        "{gc}"
    );
    let reaped: usize = gc
        .split("; ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("gc output: {gc}"));
    assert!(reaped >= 1, "the killed process is reaped: {gc}");

    let stat = json(ns, &["stat", &id]);
    assert_eq!(values_of(&stat), [0, 5], "undo applied: {stat}");
    assert_eq!(stat["semaphores"][0]["sempid"], victim.as_raw(), "{stat}");
    assert!(
        stat["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .all(|p| p["pid"] != victim.as_raw()),
        "the killed process is gone: {stat}"
    );
    assert!(stat["status"]["otime"].as_i64() > Some(0), "{stat}");
    let gc = json(ns, &["gc"]);
    assert_eq!(gc["sets"], 1, "{gc}");
    assert_eq!(vals(&set), [0, 5]);
}

#[test]
fn cli_namespace_from_env_and_all_namespaces() {
    let env = TestEnv::new("cli_env", 60);
    let a = &env.ns;
    let b_name = format!("{}-b", a.name());
    let b = NsGuard(Namespace::open(&b_name).expect("second namespace"));
    a.semget(0x11, 1, IPC_CREAT | 0o600).expect("set in a");
    b.0.semget(0x22, 2, IPC_CREAT | 0o600).expect("set in b");

    let keys = |v: &Value| -> Vec<i64> {
        v["sets"]
            .as_array()
            .expect("sets")
            .iter()
            .map(|s| s["key"].as_i64().expect("key"))
            .collect()
    };
    let parse = |r: Run| -> Value {
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str(&r.stdout).expect("JSON")
    };
    let from_env = parse(run_env(
        &["ls", "--json"],
        &[("SHMSEM_NAMESPACE", a.name())],
    ));
    assert_eq!(keys(&from_env), [0x11]);
    let flag_wins = parse(run_env(
        &["ls", "--json", "--namespace", &b_name],
        &[("SHMSEM_NAMESPACE", a.name())],
    ));
    assert_eq!(keys(&flag_wins), [0x22]);
    assert_eq!(flag_wins["sets"][0]["namespace"], b_name.as_str());

    // Every namespace (other tests' too): ours are among them. Another
    // test's namespace may be unreadable (hostile tests corrupt theirs):
    // then the rest is listed, each failure is one line on stderr and in
    // "errors", and the status is 1.
    let all_namespaces = |args: &[&str]| -> Run {
        let r = run_env(args, &[]);
        assert!(
            r.code == 0 || r.code == 1,
            "`shmsem {}`: {}",
            args.join(" "),
            r.stderr
        );
        assert_eq!(r.code == 1, !r.stderr.is_empty(), "{}", r.stderr);
        for line in r.stderr.lines() {
            assert!(line.starts_with("shmsem: namespace "), "{line}");
            assert!(
                !line.contains(a.name()),
                "our namespaces are readable: {line}"
            );
        }
        r
    };
    let r = all_namespaces(&["ls", "--all-namespaces", "--json"]);
    let all: Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert_eq!(
        all["errors"].as_array().map(Vec::len),
        Some(r.stderr.lines().count()),
        "{all}"
    );
    let ours: Vec<(String, i64)> = all["sets"]
        .as_array()
        .expect("sets")
        .iter()
        .filter(|s| s["namespace"] == a.name() || s["namespace"] == b_name.as_str())
        .map(|s| {
            (
                s["namespace"].as_str().unwrap().to_string(),
                s["key"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ours, [(a.name().to_string(), 0x11), (b_name.clone(), 0x22)]);
    let text = all_namespaces(&["ls", "-a"]);
    assert_eq!(row(&text.stdout, "namespace")[1], "key", "{}", text.stdout);
    assert_eq!(
        row(&text.stdout, a.name())[1],
        "0x00000011",
        "{}",
        text.stdout
    );
    assert_eq!(
        row(&text.stdout, &b_name)[1],
        "0x00000022",
        "{}",
        text.stdout
    );
}

// ---------------------------------------------------------------------
// Namespaces: `shmsem ns ls`, `shmsem ns rm`
// ---------------------------------------------------------------------

/// `shmsem ns ls --json`, parsed. Namespaces of other tests and other
/// programs on this machine are listed too, and some may be unreadable
/// (hostile tests corrupt theirs; other builds use another layout): then
/// the status is 1 with one line each on stderr, none of which may name a
/// namespace in `readable`.
fn ns_list(readable: &[&str]) -> Value {
    ns_list_as(None, readable)
}

/// [`ns_list`], run as user `uid` (group `uid`) if given.
fn ns_list_as(uid: Option<u32>, readable: &[&str]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shmsem"));
    cmd.args(["ns", "ls", "--json"])
        .env_remove("SHMSEM_NAMESPACE");
    if let Some(uid) = uid {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(uid);
    }
    let out = output_within(&mut cmd, CLI_DEADLINE, "shmsem ns ls")
        .unwrap_or_else(|_| panic!("`shmsem ns ls` still running after {CLI_DEADLINE:?}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "`shmsem ns ls`: {:?}: {stderr}",
        out.status
    );
    assert_eq!(code == Some(1), !stderr.is_empty(), "{stderr}");
    for line in stderr.lines() {
        assert!(line.starts_with("shmsem: namespace "), "{line}");
        for name in readable {
            assert!(
                !line.starts_with(&format!("shmsem: namespace {name}: ")),
                "{name} must be readable: {line}"
            );
        }
    }
    let j: Value = serde_json::from_slice(&out.stdout).expect("ns ls --json prints JSON");
    assert_eq!(
        j["errors"].as_array().map(Vec::len),
        Some(stderr.lines().count()),
        "{j}"
    );
    j
}

/// The entry of namespace `name` in a `ns ls --json` document.
fn ns_entry<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|n| n["namespace"] == name)
}

/// st_blocks × 512 of a file: what it takes in /dev/shm.
fn bytes_used(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {path}: {e}"))
        .blocks()
        * 512
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

#[test]
fn cli_ns_ls_counts_sets_and_rm_refuses_until_empty() {
    let env = TestEnv::new("cli_ns_rm", 60);
    let ns = &env.ns;
    let name = ns.name().to_string();
    let lim = support::limits_path(&name);
    let own = || bytes_used(&lim) + bytes_used(&support::hints_path(&name));
    let a = env.set_with(&[1]);
    let key = 0x5e10_0000 | (std::process::id() as i32 & 0xffff);
    let b = ns.semget(key, 2, IPC_CREAT | 0o600).expect("a keyed set");

    // Listed, with its two sets and what its own files take.
    let list = ns_list(&[&name]);
    let me = ns_entry(&list, &name).unwrap_or_else(|| panic!("{name} not listed: {list}"));
    assert_eq!(me["sets"], 2, "{me}");
    assert_eq!(me["segments"], 2, "{me}");
    assert_eq!(me["ns_bytes"], own(), "{me}");
    assert_eq!(
        me["limits_size"],
        std::fs::metadata(&lim).unwrap().len(),
        "{me}"
    );
    // SAFETY: geteuid has no preconditions.
    assert_eq!(me["uid"], unsafe { libc::geteuid() }, "{me}");
    assert_eq!(me["mode"], 0o644, "{me}");
    assert_eq!(me["problem"], Value::Null, "{me}");
    let text = run_env(&["ns", "ls"], &[]);
    let line = row(&text.stdout, &name);
    assert_eq!(
        line[1..5],
        [
            "2",
            &own().to_string(),
            "2",
            &me["segment_bytes"].to_string()
        ],
        "{}",
        text.stdout
    );
    assert_eq!(line[6], "644", "{}", text.stdout);

    // Refused while sets remain: status 1, one line, nothing changed.
    let r = run_env(&["ns", "rm", &name], &[]);
    let msg = check_failure(
        &r,
        &["ns", "rm"],
        &format!("shmsem: namespace {name}: ENOTEMPTY: "),
    );
    assert!(msg.contains("2 sets remain"), "{msg}");
    assert!(msg.contains("--force"), "{msg}");
    assert_eq!(a.value(0), Ok(1), "the sets are untouched");
    assert_eq!(ns.semget(key, 0, 0), Ok(b));
    assert_eq!(
        set_files(&name).len(),
        7,
        "limits, hints, two set files, two index claims, one key claim"
    );

    // One set removed by IPC_RMID here, one by the command: still refused
    // after the first.
    a.remove().expect("IPC_RMID");
    let r = run_env(&["ns", "rm", &name], &[]);
    let msg = check_failure(
        &r,
        &["ns", "rm"],
        &format!("shmsem: namespace {name}: ENOTEMPTY: "),
    );
    assert!(msg.contains("1 set remains"), "{msg}");
    ok(ns, &["rm", &b.to_string()]);
    assert_eq!(ns_entry(&ns_list(&[&name]), &name).unwrap()["sets"], 0);

    // Empty: removed, and nothing of it is left in /dev/shm.
    let r = run_env(&["ns", "rm", &name, "--json"], &[]);
    assert_eq!(r.code, 0, "ns rm of an empty namespace: {}", r.stderr);
    let done: Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert_eq!(done["removed"], true, "{done}");
    assert_eq!(done["sets_removed"], 0, "{done}");
    assert_eq!(support::ns_files(&name), Vec::<String>::new());
    assert!(ns_entry(&ns_list(&[]), &name).is_none(), "still listed");
    check_failure(
        &run_env(&["ns", "rm", &name], &[]),
        &["ns", "rm"],
        &format!("shmsem: namespace {name}: ENOENT: "),
    );
    // This process had it open: the namespace is gone for it too.
    assert_eq!(
        ns.semget(IPC_PRIVATE, 1, IPC_CREAT | 0o600),
        Err(Error::Removed)
    );
    assert_eq!(support::ns_files(&name), Vec::<String>::new());
    assert_eq!(
        run_env(&["ns", "rm"], &[]).code,
        2,
        "ns rm without a name is a usage error"
    );
}

/// A process that has the namespace mapped (and has used its registry
/// lock) when the namespace is removed by another: its next semget is
/// EIDRM, keyed or private, and creates nothing (no segment file, no set
/// anyone could find); opening the name again gives it a fresh namespace.
#[test]
fn cli_ns_rm_then_a_process_that_had_it_open_gets_eidrm() {
    let env = TestEnv::new("cli_ns_stale", 60);
    let ns = &env.ns;
    let name = ns.name().to_string();
    let _fresh = support::NsNameGuard(name.clone());
    let ready = support::Signal1::new();
    let go = support::Signal1::new();
    let mut kids = Kids::new();
    let child = kids.spawn(|| {
        // The registry lock, taken once: its descriptor is open here.
        let Ok(id) = ns.semget(IPC_PRIVATE, 1, IPC_CREAT | 0o600) else {
            return support::CHECK_FAILED + 1;
        };
        if SemaphoreSet::from_id(ns, id).remove().is_err() {
            return support::CHECK_FAILED + 2;
        }
        ready.notify();
        go.wait("the removal");
        if ns.semget(IPC_PRIVATE, 1, IPC_CREAT | 0o600) != Err(Error::Removed) {
            return support::CHECK_FAILED + 3;
        }
        if ns.semget(0x77, 1, IPC_CREAT | 0o600) != Err(Error::Removed) {
            return support::CHECK_FAILED + 4;
        }
        if !support::ns_files(&name).is_empty() {
            return support::CHECK_FAILED + 5;
        }
        let Ok(fresh) = Namespace::open(&name) else {
            return support::CHECK_FAILED + 6;
        };
        if std::sync::Arc::ptr_eq(&fresh, ns) {
            return support::CHECK_FAILED + 7;
        }
        match fresh.semget(0x77, 1, IPC_CREAT | 0o600) {
            Ok(_) => OK,
            Err(e) => e.errno(),
        }
    });
    ready.wait("the child's first semget");
    let r = run_env(&["ns", "rm", &name], &[]);
    assert_eq!(r.code, 0, "ns rm: {}", r.stderr);
    assert!(
        r.stdout
            .starts_with(&format!("namespace {name} removed; 0 sets removed")),
        "{}",
        r.stdout
    );
    assert_eq!(support::ns_files(&name), Vec::<String>::new());
    go.notify();
    kids.expect_exit(child, OK, "the process that had the namespace open");
    // The child's set is in the fresh namespace, where everyone sees it.
    let list = ns_list(&[&name]);
    assert_eq!(ns_entry(&list, &name).expect("fresh")["sets"], 1, "{list}");
    let fresh = Namespace::open_existing(&name).expect("the fresh namespace");
    assert!(fresh.semget(0x77, 0, 0).is_ok(), "the child's keyed set");
    // This process had the old one open: EIDRM for it too.
    assert_eq!(ns.semget(0x77, 0, 0), Err(Error::Removed));
}

#[test]
fn cli_ns_rm_then_a_process_that_never_took_its_lock_gets_eidrm() {
    // Forked before the removal, idle until after it: such a process has
    // no descriptor of the registry of its own yet, and its first call
    // opens one by the name, which is gone (the first child) or names the
    // fresh namespace's registry (the second): EIDRM both times, never a
    // set made in either registry.
    let env = TestEnv::new("cli_ns_idle", 60);
    let ns = &env.ns;
    let name = ns.name().to_string();
    let _fresh = support::NsNameGuard(name.clone());
    let gone = support::Signal1::new();
    let again = support::Signal1::new();
    let idle = |signal: &support::Signal1, what: &str| {
        signal.wait(what);
        match ns.semget(0x1d1e, 1, IPC_CREAT | 0o600) {
            Err(Error::Removed) => OK,
            Ok(_) => support::CHECK_FAILED + 1,
            Err(e) => e.errno(),
        }
    };
    let mut kids = Kids::new();
    let first = kids.spawn(|| idle(&gone, "the removal"));
    let second = kids.spawn(|| idle(&again, "the name made again"));
    let r = run_env(&["ns", "rm", &name], &[]);
    assert_eq!(r.code, 0, "ns rm: {}", r.stderr);
    gone.notify();
    kids.expect_exit(first, OK, "the idle process, the name gone");
    assert_eq!(support::ns_files(&name), Vec::<String>::new());
    let fresh = Namespace::open(&name).expect("the namespace made again");
    again.notify();
    kids.expect_exit(second, OK, "the idle process, the name made again");
    assert_eq!(fresh.semget(0x1d1e, 0, 0), Err(Error::NotFound));
}

#[test]
fn cli_ns_rm_force_removes_sets_and_wakes_sleepers_with_eidrm() {
    let env = TestEnv::new("cli_ns_force", 60);
    let ns = &env.ns;
    let name = ns.name().to_string();
    let set = env.set_with(&[0, 1]);
    ns.semget(0x5e11, 3, IPC_CREAT | 0o600)
        .expect("a keyed set");
    let mut kids = Kids::new();
    let sleeper = kids.spawn(|| support::rc(set.op(&[Op::wait(0, 1).undo()])));
    wait_ncnt(&set, 0, 1);
    let zero = kids.spawn(|| support::rc(set.op(&[Op::zero(1)])));
    wait_zcnt(&set, 1, 1);

    // Not the limits file's owner (it is this process's euid): refused,
    // and nothing is removed.
    if support::is_root() {
        let files = set_files(&name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shmsem"));
        {
            use std::os::unix::process::CommandExt;
            cmd.args(["ns", "rm", &name, "--force"])
                .uid(65534)
                .gid(65534);
        }
        let out = output_within(&mut cmd, CLI_DEADLINE, "ns rm as nobody").expect("ran");
        let r = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        check_failure(
            &r,
            &["ns", "rm", "--force"],
            &format!("shmsem: namespace {name}: EPERM: "),
        );
        assert_eq!(ncnt(&set, 0), 1, "the sleeper still sleeps");
        assert_eq!(set_files(&name), files);
    }

    let out = ok(ns, &["ns", "rm", &name, "--force"]);
    assert!(
        out.starts_with(&format!("namespace {name} removed; 2 sets removed")),
        "{out}"
    );
    kids.expect_exit(sleeper, libc::EIDRM, "the sleeper, woken by the removal");
    kids.expect_exit(zero, libc::EIDRM, "the zero-waiter, woken by the removal");
    assert_eq!(support::ns_files(&name), Vec::<String>::new());
    assert!(ns_entry(&ns_list(&[]), &name).is_none());
    assert_eq!(set.value(0), Err(Error::Invalid), "the set is gone");
}

/// A namespace's own files (limits and hints) cost two pages of /dev/shm
/// whatever its history: there is no table of SEMMNI entries any more (it
/// was 2,052,096 bytes with the default SEMMNI of 32000, then two pages at
/// rest with more reserved as sets were made). Ids still follow the
/// kernel's window: 100 sets at once take indices below 99 × 3/2 = 148.
#[test]
fn cli_ns_files_at_rest_cost_two_pages() {
    let env = TestEnv::new("cli_ns_rest", 90);
    let ns = &env.ns;
    let name = ns.name().to_string();
    let own = || bytes_used(&support::limits_path(&name)) + bytes_used(&support::hints_path(&name));
    let bound = 2 * page_size() as u64;

    assert!(own() <= bound, "a new namespace takes {} bytes", own());
    // A peak of 40 sets at once, then 150 create/remove cycles (the cycle
    // of 64 indices wraps twice).
    let sets: Vec<SemaphoreSet> = (0..40).map(|_| env.set_with(&[0])).collect();
    for s in sets {
        s.remove().expect("IPC_RMID");
    }
    for _ in 0..150 {
        env.set_with(&[0]).remove().expect("IPC_RMID");
    }
    let at_rest = own();
    assert!(
        at_rest <= bound,
        "at rest the namespace's files take {at_rest} bytes in /dev/shm (bound {bound})"
    );
    let me = ns_entry(&ns_list(&[&name]), &name)
        .cloned()
        .expect("listed");
    assert_eq!(me["ns_bytes"], at_rest, "{me}");
    assert_eq!(me["sets"], 0, "{me}");
    assert_eq!(
        me["limits_size"],
        shmsem::layout::LIMITS_FILE_SIZE as u64,
        "{me}"
    );

    // 100 at once: the 100th took an index below 99 × 3/2 = 148; the
    // namespace's own files did not grow.
    let sets: Vec<SemaphoreSet> = (0..100).map(|_| env.set_with(&[0])).collect();
    let highest = sets.iter().map(|s| s.id() & 0x7fff).max().unwrap() as usize;
    assert!(highest < 148, "index {highest}");
    assert_eq!(own(), at_rest, "100 sets");
    for s in sets {
        s.remove().expect("IPC_RMID");
    }
    assert_eq!(own(), at_rest);
    ok(ns, &["ns", "rm", &name]);
    assert_eq!(support::ns_files(&name), Vec::<String>::new());
}

/// Namespace `name`'s files in /dev/shm but the presence files of the uids
/// that use it: its limits and hints, set files and claims.
fn set_files(name: &str) -> Vec<String> {
    support::ns_files(name)
        .into_iter()
        .filter(|n| !n.contains(".p."))
        .collect()
}

/// Files removed on drop.
struct ShmFiles(Vec<String>);

impl Drop for ShmFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir(p));
        }
    }
}

/// A limits file's bytes: magic, version, semmni (the other limits valid),
/// cut or padded to `len`.
fn limits_bytes(version: u32, semmni: u32, len: usize) -> Vec<u8> {
    use shmsem::layout::{LimitsRecord, LIMITS_MAGIC};
    let d = shmsem::Limits::default();
    let rec = LimitsRecord {
        magic: LIMITS_MAGIC,
        version,
        semmsl: d.semmsl,
        semmns: d.semmns,
        semopm: d.semopm,
        semmni,
        queue_slots: d.queue_slots,
        proc_slots: d.proc_slots,
    };
    let mut b = rec.to_bytes().to_vec();
    b.resize(len, 0);
    b
}

/// Garbage in /dev/shm under names a namespace could have, and files this
/// user may not read: `ns ls` lists each with what it could read and the
/// reason, one line each on stderr, status 1; it never crashes, blocks or
/// follows a link, and the real namespaces are still listed right.
#[test]
fn cli_ns_ls_survives_garbage_and_unreadable_files() {
    use shmsem::layout::{LAYOUT_VERSION, LIMITS_FILE_SIZE};
    let env = TestEnv::new("cli_ns_garbage", 60);
    let name = env.ns.name().to_string();
    env.set_with(&[0]);
    let g = |what: &str| format!("{name}-{what}");
    let path = |what: &str| support::limits_path(&g(what));
    let mut files = ShmFiles(Vec::new());
    let mut links = Vec::new();
    let mut write = |what: &str, bytes: &[u8]| {
        files.0.push(path(what));
        std::fs::write(path(what), bytes).expect("write a garbage file");
    };
    write("magic", &[0xa5; 100]);
    write("empty", &[]);
    write("v4", &limits_bytes(4, 64, LIMITS_FILE_SIZE));
    write(
        "sizes",
        &limits_bytes(LAYOUT_VERSION, u32::MAX, LIMITS_FILE_SIZE),
    );
    write("short", &limits_bytes(LAYOUT_VERSION, 64, 100));
    // A limits file that looks right, with hostile claims: index 3 names
    // a set file of the same owner (counted), index 9 one that is gone,
    // index 63 a file of another namespace, and a key claim names garbage.
    let ok_limits = limits_bytes(LAYOUT_VERSION, 64, LIMITS_FILE_SIZE);
    write("hostile", &ok_limits);
    let h = g("hostile");
    write("hostile.s.3.7", &[0u8; 10]);
    for (link, target) in [
        (format!("shmsem.{h}.i.3"), format!("shmsem.{h}.s.3.7")),
        (format!("shmsem.{h}.i.9"), format!("shmsem.{h}.s.9.1")),
        (format!("shmsem.{h}.i.63"), format!("shmsem.{name}.s.0.0")),
        (format!("shmsem.{h}.k.00000001"), "/etc/passwd".to_string()),
    ] {
        links.push(format!("/dev/shm/{link}"));
        std::os::unix::fs::symlink(target, format!("/dev/shm/{link}")).unwrap();
    }
    // A private limits file (root's, 0600; only a check as another user).
    write("private", &ok_limits);
    std::fs::set_permissions(
        path("private"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    files.0.extend(links);
    // Not regular files.
    files.0.push(path("dir"));
    std::fs::create_dir(path("dir")).unwrap();
    files.0.push(path("fifo"));
    nix::unistd::mkfifo(
        path("fifo").as_str(),
        nix::sys::stat::Mode::from_bits_truncate(0o666),
    )
    .unwrap();
    files.0.push(path("link"));
    std::os::unix::fs::symlink("/etc/passwd", path("link")).unwrap();
    // Not a namespace's name at all.
    files.0.push(format!("/dev/shm/shmsem.{name} bad!"));
    std::fs::write(format!("/dev/shm/shmsem.{name} bad!"), b"x").unwrap();

    let expect: &[(&str, Option<u64>, Option<&str>)] = &[
        ("magic", None, Some("bad magic")),
        ("empty", None, Some("header cannot be read")),
        ("v4", None, Some("layout version 4")),
        ("sizes", None, Some("bad sizes")),
        ("short", None, Some("bad sizes")),
        ("hostile", Some(1), None),
        ("private", Some(0), None),
        ("dir", None, Some("not a regular file")),
        ("fifo", None, Some("not a regular file")),
        ("link", None, Some("not a regular file")),
    ];
    let list = ns_list(&[&name, &g("hostile"), &g("private")]);
    assert_eq!(ns_entry(&list, &name).expect("ours")["sets"], 1, "{list}");
    let errors = list["errors"].as_array().unwrap();
    for &(what, sets, why) in expect {
        let e = ns_entry(&list, &g(what)).unwrap_or_else(|| panic!("{what} not listed: {list}"));
        assert_eq!(e["sets"].as_u64(), sets, "{what}: {e}");
        match why {
            None => assert_eq!(e["problem"], Value::Null, "{what}: {e}"),
            Some(why) => {
                assert_eq!(e["problem"]["errno"], "EUCLEAN", "{what}: {e}");
                let msg = e["problem"]["message"].as_str().unwrap();
                assert!(msg.contains(why), "{what}: {msg}");
                let line = format!("namespace {}: EUCLEAN: ", g(what));
                assert!(
                    errors
                        .iter()
                        .any(|x| x["message"].as_str().unwrap().starts_with(&line)),
                    "{what}: no error {line:?} in {list}"
                );
            }
        }
    }
    assert!(
        ns_entry(&list, &format!("{name} bad!")).is_none(),
        "not a namespace's name"
    );
    let text = run_env(&["ns", "ls"], &[]);
    assert_eq!(row(&text.stdout, &g("magic"))[1], "-", "{}", text.stdout);
    assert_eq!(row(&text.stdout, &g("hostile"))[1], "1", "{}", text.stdout);
    assert!(
        text.stderr
            .lines()
            .any(|l| l.starts_with(&format!("shmsem: namespace {}: EUCLEAN: ", g("fifo")))),
        "{}",
        text.stderr
    );

    // Another user cannot read root's 0600 file: EACCES for it, and the
    // rest as before.
    if support::is_root() {
        let list = ns_list_as(Some(65534), &[&name, &g("hostile")]);
        assert_eq!(ns_entry(&list, &name).expect("ours")["sets"], 1, "{list}");
        let p = ns_entry(&list, &g("private")).expect("private");
        assert_eq!(p["sets"], Value::Null, "{p}");
        assert_eq!(p["problem"]["errno"], "EACCES", "{p}");
        assert_eq!(p["uid"], 0, "{p}");
        assert_eq!(p["mode"], 0o600, "{p}");
    }
}

/// Exit code of the /dev/shm child when it cannot set up its tmpfs.
const SKIPPED: i32 = 77;

/// On a full /dev/shm a semget that needs a page is ENOSPC and makes
/// nothing (no half-made set, no claim), never a SIGBUS or a set written
/// where no other process sees it; the sets made once there is room are
/// seen by every process. In a private mount namespace
/// (the machine's /dev/shm is untouched) a 1 MiB tmpfs is mounted on
/// /dev/shm. Needs CAP_SYS_ADMIN; without it the test says so and checks
/// nothing.
#[test]
fn cli_ns_a_full_dev_shm_is_enospc_and_makes_nothing() {
    let env = TestEnv::new("cli_ns_full", 120);
    let mut kids = Kids::long();
    let child = kids.spawn(full_dev_shm_makes_nothing);
    match kids.wait(child, "the /dev/shm child") {
        WaitStatus::Exited(_, OK) => {}
        WaitStatus::Exited(_, SKIPPED) => {
            eprintln!("cli_ns_full: SKIPPED: cannot unshare the mount namespace (not root?)")
        }
        WaitStatus::Exited(_, c) => panic!("the /dev/shm child: {}", support::describe(c)),
        other => panic!("the /dev/shm child: {other:?}"),
    }
    drop(env);
}

/// Allocates all that is left of /dev/shm to `file`, to the page.
fn fill_dev_shm(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    let st = nix::sys::statvfs::statvfs("/dev/shm").expect("statvfs");
    let free = st.blocks_available() as i64 * st.fragment_size() as i64;
    let len = file.metadata().unwrap().len() as i64;
    let alloc = |off: i64, n: i64| {
        // SAFETY: fallocate on a descriptor we own, no pointers.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, off, n) } == 0 {
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap()
        }
    };
    if free > 0 {
        assert_eq!(alloc(len, free), 0, "filling /dev/shm with {free} bytes");
    }
    assert_eq!(
        alloc(len + free, page_size() as i64),
        libc::ENOSPC,
        "/dev/shm is full to the page"
    );
}

/// Gives one page of `file` (see [`fill_dev_shm`]) back to /dev/shm.
fn free_one_page(file: &std::fs::File) {
    let len = file.metadata().unwrap().len();
    file.set_len(len - page_size() as u64)
        .expect("truncate the filler");
}

/// Panics (exit code PANICKED, message on stderr) on a failed check.
fn full_dev_shm_makes_nothing() -> i32 {
    use shmsem::layout::IPC_EXCL;
    use shmsem::Limits;
    // SAFETY: unshare(CLONE_NEWNS) only changes this (single-threaded,
    // forked) process's mount namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return SKIPPED;
    }
    let none = c"none";
    // SAFETY: valid NUL-terminated strings; makes every mount of this new
    // namespace private, so nothing below propagates to the host.
    let r = unsafe {
        libc::mount(
            none.as_ptr(),
            c"/".as_ptr(),
            core::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            core::ptr::null(),
        )
    };
    assert_eq!(r, 0, "make / private: {}", std::io::Error::last_os_error());
    // SAFETY: valid NUL-terminated strings; mounts a tmpfs over /dev/shm in
    // this private mount namespace only.
    let r = unsafe {
        libc::mount(
            none.as_ptr(),
            c"/dev/shm".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=1m,mode=1777".as_ptr().cast(),
        )
    };
    assert_eq!(r, 0, "mount tmpfs: {}", std::io::Error::last_os_error());

    // One-page sets, so that a page of /dev/shm is a set (its claims are
    // short symbolic links, kept in their inodes: no page).
    let limits = Limits {
        semmni: 256,
        queue_slots: 1,
        proc_slots: 1,
        ..Limits::default()
    };
    let name = format!("full-{}", std::process::id());
    let ns = Namespace::open_with_limits(&name, limits).unwrap();
    let own = || bytes_used(&support::limits_path(&name)) + bytes_used(&support::hints_path(&name));
    let two_pages = 2 * page_size() as u64;
    assert_eq!(own(), two_pages, "a new namespace");
    let key = |i: i32| 0x8600 + i;
    let mk = |i: i32| ns.semget(key(i), 1, IPC_CREAT | IPC_EXCL | 0o600);
    let filler = std::fs::File::create("/dev/shm/filler").unwrap();

    for i in 0..86 {
        mk(i).unwrap_or_else(|e| panic!("set {i}: {e}"));
    }
    assert_eq!(own(), two_pages, "86 sets");
    fill_dev_shm(&filler);
    let files = support::ns_files(&name);
    // Twice: a failed attempt leaves nothing in the way of the next.
    for attempt in 1..=2 {
        assert_eq!(
            mk(86),
            Err(Error::NoSpace),
            "a full /dev/shm, try {attempt}"
        );
        assert_eq!(
            support::ns_files(&name),
            files,
            "nothing made, try {attempt}"
        );
    }
    assert_eq!(ns.semget(key(86), 0, 0), Err(Error::NotFound));
    free_one_page(&filler);
    mk(86).expect("one page free: the set's");
    assert_eq!(own(), two_pages);

    // Up to index 126, then full again: the set at index 127.
    filler.set_len(0).unwrap();
    for i in 87..127 {
        mk(i).unwrap_or_else(|e| panic!("set {i}: {e}"));
    }
    fill_dev_shm(&filler);
    assert_eq!(mk(127), Err(Error::NoSpace), "a full /dev/shm, again");
    free_one_page(&filler);
    let id = mk(127).expect("one page free: the set's");
    assert_eq!(id & 0x7fff, 127, "the next index");
    assert_eq!(own(), two_pages);

    // Other processes (run afresh: nothing of this one's memory) see all
    // 128 sets, the last one included.
    let list = ns_list(&[&name]);
    assert_eq!(
        ns_entry(&list, &name).expect("listed")["sets"],
        128,
        "{list}"
    );
    let r = run_env(
        &[
            "--namespace",
            &name,
            "stat",
            "--key",
            &key(127).to_string(),
            "--json",
        ],
        &[],
    );
    assert_eq!(r.code, 0, "stat of the last set: {}", r.stderr);
    let stat: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(stat["id"], id, "{stat}");

    drop(filler);
    std::fs::remove_file("/dev/shm/filler").unwrap();
    ns.remove_namespace(true).expect("remove the namespace");
    let left: Vec<_> = std::fs::read_dir("/dev/shm").unwrap().flatten().collect();
    assert!(left.is_empty(), "left in the private /dev/shm: {left:?}");
    OK
}
