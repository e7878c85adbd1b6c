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
use shmsem::sysv::{SemctlArg, SemidDs, IPC_CREAT, IPC_STAT};
use shmsem::{Error, Namespace, Op, SemaphoreSet};
use support::{output_within, poll_until, vals, wait_ncnt, wait_zcnt, Kids, NsGuard, TestEnv, OK};

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
