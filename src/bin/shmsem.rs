//! `shmsem`: see, create, operate and clean up shmsem semaphore sets from
//! the shell, as `ipcs -s`, `ipcmk -S` and `ipcrm -s` do for the kernel's,
//! and more: the pending queue, SEM_UNDO adjustments and dead processes.
//!
//! Built on the library's public API only; everything here is parsing and
//! printing. Every failure prints one line naming the errno and exits with
//! status 1 (2 for a usage error).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use shmsem::sysv::{
    Sembuf, SemctlArg, SemidDs, Seminfo, Timespec, IPC_CREAT, IPC_EXCL, IPC_INFO, IPC_NOWAIT,
    IPC_PRIVATE, IPC_RMID, SEM_STAT_ANY, SEM_UNDO, SETALL, SETVAL,
};
use shmsem::{Error, Namespace, SemaphoreSet, SetReport};

#[path = "shmsem/show.rs"]
mod show;

/// See, create, operate and clean up shmsem semaphore sets.
#[derive(Parser)]
#[command(name = "shmsem", version)]
struct Cli {
    /// The namespace to work in.
    #[arg(
        long,
        short = 'n',
        global = true,
        env = "SHMSEM_NAMESPACE",
        default_value = shmsem::DEFAULT_NAMESPACE
    )]
    namespace: String,
    /// Print JSON instead of text (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the sets of the namespace, like `ipcs -s`.
    ///
    /// Waiters are queued operations; procs are live processes in the set's
    /// table. Reading a set's status (IPC_STAT, SEM_STAT_ANY) first applies
    /// the undo of dead processes holding adjustments on it, so after `ls`,
    /// `stat` no longer shows them.
    Ls {
        /// List the sets of every namespace on this machine.
        #[arg(long, short = 'a')]
        all_namespaces: bool,
    },
    /// Show one set, like `ipcs -s -i`, with its queue and undo.
    ///
    /// Per semaphore its value, sempid, ncnt and zcnt; the pending queue in
    /// FIFO order (pid, operations, how long it has waited); the processes
    /// holding SEM_UNDO adjustments; dead processes not yet swept. Applies
    /// no undo and changes no value.
    Stat(Target),
    /// Create a set, like `ipcmk -S`; prints its id.
    Mk {
        /// Number of semaphores.
        #[arg(long, short = 'S', default_value_t = 1)]
        nsems: i32,
        /// Permission bits, in octal.
        #[arg(long, short = 'p', default_value = "0644", value_parser = parse_mode)]
        mode: u32,
        /// Key (decimal or 0x hex); without it the set is private. A set
        /// with this key must not exist yet.
        #[arg(long, short = 'k', value_parser = parse_key, allow_negative_numbers = true)]
        key: Option<i32>,
    },
    /// Remove a set, like `ipcrm -s ID` / `ipcrm -S KEY`; its sleepers get EIDRM.
    Rm(Target),
    /// Set values: `--val 0=5` (SETVAL, repeatable) or `--all 1,2,3` (SETALL).
    Set {
        #[command(flatten)]
        target: Target,
        /// SEMNUM=VALUE: set one semaphore (repeatable).
        #[arg(long = "val", value_name = "SEMNUM=VALUE", value_parser = parse_assign,
              required_unless_present = "all", conflicts_with = "all")]
        val: Vec<(i32, i32)>,
        /// Every value, comma-separated, one per semaphore.
        #[arg(long, value_name = "V,V,...", value_delimiter = ',', num_args = 1)]
        all: Vec<u16>,
    },
    /// Run one semop, e.g. `shmsem op 3 0-1 1+1`.
    ///
    /// `0-1` waits for and takes 1 from semaphore 0, `1+1`
    /// adds 1 to semaphore 1, `0=0` waits until semaphore 0 is zero. All
    /// operations happen at once or not at all. A suffix `:undo` or
    /// `:nowait` (or `:undo,nowait`) sets flags on one operation. Note that
    /// SEM_UNDO adjustments are undone when this command exits, as the
    /// kernel undoes them when a process exits.
    Op {
        /// The set's id.
        #[arg(value_parser = parse_id)]
        id: i32,
        /// Operations, e.g. `0-1 1+1 2=0`.
        #[arg(required = true, value_parser = parse_op, value_name = "OP")]
        ops: Vec<Sembuf>,
        /// SEM_UNDO on every operation.
        #[arg(long)]
        undo: bool,
        /// IPC_NOWAIT on every operation: fail with EAGAIN instead of waiting.
        #[arg(long)]
        nowait: bool,
        /// Give up with EAGAIN after this long (semtimedop), e.g. 2s, 500ms.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Sweep dead processes and clean up after crashes; prints what it did.
    ///
    /// Applies the undo of dead processes and frees their queue slots and
    /// table entries, finishes sets left half made or half removed by
    /// creators and removers that died (this user's, or anyone's for root),
    /// and unlinks set files nothing names. Never removes a live set.
    Gc {
        /// Clean up every namespace on this machine.
        #[arg(long, short = 'a')]
        all_namespaces: bool,
    },
    /// Namespaces: list those in /dev/shm, remove one.
    #[command(visible_alias = "namespace", subcommand)]
    Ns(NsCmd),
    /// Show a set again and again (as `stat`), for debugging a stuck system.
    ///
    /// With --json, one JSON document per line and frame.
    Watch {
        #[command(flatten)]
        target: Target,
        /// Milliseconds between frames.
        #[arg(long, short = 'i', default_value_t = 1000)]
        interval: u64,
        /// Stop after this many frames.
        #[arg(long, short = 'c')]
        count: Option<u64>,
    },
}

/// `shmsem ns ...`.
#[derive(Subcommand)]
enum NsCmd {
    /// List every namespace in /dev/shm.
    ///
    /// Per namespace: its live sets, the bytes its own files (limits and
    /// hints) take in /dev/shm (st_blocks × 512), the set files named after
    /// it and their bytes, the limits file's owner and mode. Reads the files without
    /// opening, locking or changing any namespace; a file that cannot be
    /// read (another user's, garbage, another layout version) is listed
    /// with `-` and reported on stderr (status 1).
    #[command(visible_alias = "list")]
    Ls,
    /// Remove a namespace: its limits and hints files (and crash
    /// leftovers, as gc).
    ///
    /// Refused (ENOTEMPTY) while sets remain, unless --force: then every
    /// set is removed first, as by IPC_RMID (its sleepers get EIDRM), which
    /// needs the right to remove each one. A process that still has the
    /// namespace open gets EIDRM from its next semget or IPC_RMID in it;
    /// opening the name again makes a fresh namespace.
    #[command(visible_alias = "remove")]
    Rm {
        /// The namespace's name.
        name: String,
        /// Remove its sets too.
        #[arg(long, short = 'f')]
        force: bool,
    },
}

/// A set named by id or by key.
#[derive(Args, Clone, Copy)]
#[group(required = true, multiple = false)]
struct Target {
    /// The set's id.
    #[arg(value_parser = parse_id)]
    id: Option<i32>,
    /// The set's key (decimal or 0x hex).
    #[arg(long, short = 'k', value_parser = parse_key, allow_negative_numbers = true)]
    key: Option<i32>,
}

/// A failure: the call (or step) that failed, its error, and optionally a
/// more precise text than the error's own.
struct Failure {
    what: String,
    err: Error,
    detail: Option<String>,
    /// Already printed (by a command that lists what it could).
    reported: bool,
}

impl Failure {
    fn new(what: impl Into<String>, err: Error) -> Failure {
        Failure {
            what: what.into(),
            err,
            detail: None,
            reported: false,
        }
    }

    fn reported(err: Error) -> Failure {
        Failure {
            reported: true,
            ..Failure::new("", err)
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Failure {
        self.detail = Some(detail.into());
        self
    }
}

impl std::fmt::Display for Failure {
    /// `semop: EAGAIN: the operation would block, or its timeout expired`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = show::errno_name(self.err.errno());
        let text = match &self.detail {
            Some(d) => d.clone(),
            None => {
                // The library's messages end with the errno's name in
                // parentheses; it is printed first here.
                let s = self.err.to_string();
                s.strip_suffix(&format!(" ({name})"))
                    .map(str::to_string)
                    .unwrap_or(s)
            }
        };
        write!(f, "{}: {}: {}", self.what, name, text)
    }
}

type Res<T> = std::result::Result<T, Failure>;

/// Adds the call's name to a library error.
trait Context<T> {
    fn ctx(self, what: &str) -> Res<T>;
}

impl<T> Context<T> for shmsem::Result<T> {
    fn ctx(self, what: &str) -> Res<T> {
        self.map_err(|e| Failure::new(what, e))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    let r = run(&cli, &mut out).and_then(|()| out.flush().map_err(write_failure));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`shmsem ls | head`) is not worth a message.
        Err(f) if f.what == "write" && f.err.errno() == libc::EPIPE => ExitCode::FAILURE,
        Err(f) if f.reported => ExitCode::FAILURE,
        Err(f) => {
            eprintln!("shmsem: {f}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli, out: &mut dyn Write) -> Res<()> {
    match &cli.cmd {
        Cmd::Ls { all_namespaces } => ls(cli, *all_namespaces, out),
        Cmd::Stat(t) => {
            let ns = existing(&cli.namespace)?;
            let id = resolve(&ns, t)?;
            let v = inspect(&ns, id, t.key)?;
            print(out, cli.json, || v.json(), || v.human())
        }
        Cmd::Mk { nsems, mode, key } => {
            let ns = Namespace::open(&cli.namespace).map_err(|e| ns_failure(&cli.namespace, e))?;
            let key = key.unwrap_or(IPC_PRIVATE);
            let flags = IPC_CREAT | IPC_EXCL | (*mode & 0o777) as i32;
            let id = ns.semget(key, *nsems, flags).ctx("semget")?;
            let j = || json!({ "namespace": ns.name(), "id": id, "key": key });
            print(out, cli.json, j, || format!("Semaphore id: {id}\n"))
        }
        Cmd::Rm(t) => {
            let ns = existing(&cli.namespace)?;
            let id = resolve(&ns, t)?;
            ns.semctl(id, 0, IPC_RMID, SemctlArg::None)
                .ctx("semctl(IPC_RMID)")?;
            Ok(())
        }
        Cmd::Set { target, val, all } => set(cli, target, val, all),
        Cmd::Op {
            id,
            ops,
            undo,
            nowait,
            timeout,
        } => op(cli, *id, ops, *undo, *nowait, *timeout),
        Cmd::Gc { all_namespaces } => gc(cli, *all_namespaces, out),
        Cmd::Ns(NsCmd::Ls) => ns_ls(cli, out),
        Cmd::Ns(NsCmd::Rm { name, force }) => ns_rm(cli, name, *force, out),
        Cmd::Watch {
            target,
            interval,
            count,
        } => watch(cli, target, *interval, *count, out),
    }
}

/// `set`: SETVAL for each `--val`, or SETALL of `--all`.
fn set(cli: &Cli, target: &Target, val: &[(i32, i32)], all: &[u16]) -> Res<()> {
    let ns = existing(&cli.namespace)?;
    let id = resolve(&ns, target)?;
    if all.is_empty() {
        for &(num, v) in val {
            ns.semctl(id, num, SETVAL, SemctlArg::Val(v))
                .ctx("semctl(SETVAL)")?;
        }
        return Ok(());
    }
    // IPC_STAT (which, as in the library, first applies the undo of dead
    // processes that hold adjustments on the set).
    let nsems = SemaphoreSet::from_id(&ns, id)
        .status()
        .ctx("semctl(IPC_STAT)")?
        .nsems;
    if all.len() as u64 != nsems {
        return Err(
            Failure::new("semctl(SETALL)", Error::Invalid).detail(format!(
                "{} values given for a set of {} semaphores",
                all.len(),
                nsems
            )),
        );
    }
    ns.semctl(id, 0, SETALL, SemctlArg::SetAll(all))
        .ctx("semctl(SETALL)")?;
    Ok(())
}

/// `op`: one semop (semtimedop with `--timeout`), the flags added to every
/// operation.
fn op(
    cli: &Cli,
    id: i32,
    ops: &[Sembuf],
    undo: bool,
    nowait: bool,
    timeout: Option<Duration>,
) -> Res<()> {
    let ns = existing(&cli.namespace)?;
    let mut ops = ops.to_vec();
    for o in &mut ops {
        o.sem_flg |=
            if undo { SEM_UNDO as i16 } else { 0 } | if nowait { IPC_NOWAIT as i16 } else { 0 };
    }
    match timeout {
        None => ns.semop(id, &ops).ctx("semop"),
        Some(d) => {
            let ts = Timespec::from_duration(d);
            ns.semtimedop(id, &ops, Some(&ts)).ctx("semtimedop")
        }
    }
}

/// Writes `json()` (pretty) or `human()`.
fn print(
    out: &mut dyn Write,
    as_json: bool,
    json: impl FnOnce() -> Value,
    human: impl FnOnce() -> String,
) -> Res<()> {
    let text = if as_json {
        let mut s = serde_json::to_string_pretty(&json()).expect("a Value always serialises");
        s.push('\n');
        s
    } else {
        human()
    };
    write_all(out, &text)
}

fn write_all(out: &mut dyn Write, text: &str) -> Res<()> {
    out.write_all(text.as_bytes()).map_err(write_failure)
}

/// A failed write to the output.
fn write_failure(e: std::io::Error) -> Failure {
    Failure::new("write", Error::from_errno(e.raw_os_error().unwrap_or(0)))
}

fn ns_failure(name: &str, e: Error) -> Failure {
    let f = Failure::new(format!("namespace {name}"), e);
    match e {
        Error::NotFound => f.detail("no such namespace"),
        Error::Invalid => f.detail("a namespace name is 1 to 64 of A-Z a-z 0-9 _ -"),
        _ => f,
    }
}

/// Opens a namespace that must exist: reading never creates one.
fn existing(name: &str) -> Res<Arc<Namespace>> {
    Namespace::open_existing(name).map_err(|e| ns_failure(name, e))
}

/// The id of the set a [`Target`] names.
fn resolve(ns: &Namespace, t: &Target) -> Res<i32> {
    match (t.id, t.key) {
        (Some(id), _) => Ok(id),
        (None, Some(key)) => ns.semget(key, 0, 0).ctx("semget"),
        (None, None) => unreachable!("clap requires one of id and --key"),
    }
}

/// Everything `stat` shows of one set, read without changing it.
fn inspect(ns: &Namespace, id: i32, key: Option<i32>) -> Res<show::SetView> {
    let report: SetReport = ns.report(id).ctx("report")?;
    let me = std::process::id() as i32;
    // The report's status is IPC_STAT's without its sweep: `stat` shows
    // dead processes as they are instead of reaping them.
    let status = Some(report.status);
    Ok(show::SetView {
        namespace: ns.name().to_string(),
        id,
        key: status.map(|s| s.perm.key).or(key),
        status,
        report,
        me,
        now_ns: show::monotonic_ns(),
    })
}

/// The sets of a namespace, in index order, with their ids (from
/// SEM_STAT_ANY, by index up to the highest that IPC_INFO reports). A set
/// that cannot be read is a failure in `bad`; the others are still listed.
fn sets_of(ns: &Namespace, bad: &mut Vec<Failure>) -> Vec<(i32, SemidDs)> {
    let mut info = Seminfo::default();
    let max = match ns.semctl(0, 0, IPC_INFO, SemctlArg::Info(&mut info)) {
        Ok(max) => max,
        Err(e) => {
            bad.push(Failure::new(
                format!("namespace {}: semctl(IPC_INFO)", ns.name()),
                e,
            ));
            return Vec::new();
        }
    };
    let mut sets = Vec::new();
    for idx in 0..=max {
        let mut ds = SemidDs::default();
        match ns.semctl(idx, 0, SEM_STAT_ANY, SemctlArg::StatOut(&mut ds)) {
            Ok(id) => sets.push((id, ds)),
            // A free index, or a set removed meanwhile.
            Err(Error::Invalid) | Err(Error::Removed) => {}
            Err(e) => bad.push(Failure::new(
                format!("namespace {}: semctl({idx}, SEM_STAT_ANY)", ns.name()),
                e,
            )),
        }
    }
    sets
}

/// The namespaces a command works on. With `all`, one that cannot be
/// opened is a failure in `bad` and the others are still worked on.
fn namespaces(cli: &Cli, all: bool, bad: &mut Vec<Failure>) -> Res<Vec<Arc<Namespace>>> {
    if !all {
        return Ok(vec![existing(&cli.namespace)?]);
    }
    let mut v = Vec::new();
    for name in Namespace::names() {
        match Namespace::open_existing(&name) {
            Ok(ns) => v.push(ns),
            // Destroyed since it was listed.
            Err(Error::NotFound) => {}
            Err(e) => bad.push(ns_failure(&name, e)),
        }
    }
    Ok(v)
}

/// Ends a command that printed what it could: the failures met on the way,
/// one line each, and status 1 if there were any (as `ls(1)` does).
fn partial(bad: Vec<Failure>) -> Res<()> {
    if bad.is_empty() {
        return Ok(());
    }
    for f in &bad {
        eprintln!("shmsem: {f}");
    }
    Err(Failure::reported(bad[0].err))
}

fn failures_json(bad: &[Failure]) -> Value {
    Value::Array(
        bad.iter()
            .map(|f| {
                json!({
                    "what": f.what,
                    "errno": show::errno_name(f.err.errno()),
                    "message": f.to_string(),
                })
            })
            .collect(),
    )
}

fn ls(cli: &Cli, all: bool, out: &mut dyn Write) -> Res<()> {
    let me = std::process::id() as i32;
    let mut bad = Vec::new();
    let mut rows = Vec::new();
    for ns in namespaces(cli, all, &mut bad)? {
        for (id, ds) in sets_of(&ns, &mut bad) {
            // The report needs read permission; a set the caller may not
            // read is listed without its waiters and processes.
            let report = match ns.report(id) {
                Ok(r) => Some(r),
                Err(Error::PermissionDenied) | Err(Error::Invalid) | Err(Error::Removed) => None,
                Err(e) => {
                    bad.push(Failure::new(
                        format!("namespace {}: report({id})", ns.name()),
                        e,
                    ));
                    None
                }
            };
            rows.push(show::ListRow {
                namespace: ns.name().to_string(),
                id,
                ds,
                waiters: report.as_ref().map(|r| r.pending.len()),
                live: report.as_ref().map(|r| {
                    r.processes
                        .iter()
                        .filter(|p| p.alive && p.pid != me)
                        .count()
                }),
            });
        }
    }
    print(
        out,
        cli.json,
        || {
            let mut j = show::list_json(&rows);
            j["errors"] = failures_json(&bad);
            j
        },
        || show::list_human(&rows, all),
    )?;
    partial(bad)
}

fn gc(cli: &Cli, all: bool, out: &mut dyn Write) -> Res<()> {
    let mut bad = Vec::new();
    let mut done = Vec::new();
    for ns in namespaces(cli, all, &mut bad)? {
        match ns.gc() {
            Ok(r) => done.push((ns.name().to_string(), r)),
            Err(e) => bad.push(Failure::new(format!("namespace {}: gc", ns.name()), e)),
        }
    }
    print(
        out,
        cli.json,
        || {
            let mut j = show::gc_json(&done, all);
            if all {
                j["errors"] = failures_json(&bad);
            }
            j
        },
        || show::gc_human(&done),
    )?;
    partial(bad)
}

/// `ns ls`: the survey; each namespace that could not be read is also a
/// line on stderr.
fn ns_ls(cli: &Cli, out: &mut dyn Write) -> Res<()> {
    let found = Namespace::survey();
    let bad: Vec<Failure> = found
        .iter()
        .filter_map(|n| {
            let (err, why) = n.problem.as_ref()?;
            Some(Failure::new(format!("namespace {}", n.name), *err).detail(why.clone()))
        })
        .collect();
    print(
        out,
        cli.json,
        || {
            let mut j = show::namespaces_json(&found);
            j["errors"] = failures_json(&bad);
            j
        },
        || show::namespaces_human(&found),
    )?;
    partial(bad)
}

/// `ns rm NAME [--force]`.
fn ns_rm(cli: &Cli, name: &str, force: bool, out: &mut dyn Write) -> Res<()> {
    let ns = existing(name).map_err(|f| match f.err {
        // Without a limits file it can read, the command cannot know the
        // namespace's limits: a person decides.
        Error::Corrupt => f.detail(format!(
            "not a limits file this shmsem can read (see `shmsem ns ls`); \
             if no process uses it, remove /dev/shm/shmsem.{name} and its sets' files by hand"
        )),
        _ => f,
    })?;
    let what = format!("namespace {name}");
    let r = ns.remove_namespace(force).map_err(|e| {
        let f = Failure::new(what.clone(), e);
        match e {
            Error::Os(libc::ENOTEMPTY) => {
                let n = sets_of(&ns, &mut Vec::new()).len();
                f.detail(if n == 1 {
                    "1 set remains (remove it with `shmsem rm`, or use --force)".to_string()
                } else {
                    format!("{n} sets remain (remove them with `shmsem rm`, or use --force)")
                })
            }
            Error::NotPermitted => f.detail(
                "only the limits file's owner or root may remove a namespace, \
                 and --force needs the right to IPC_RMID every set",
            ),
            Error::PermissionDenied => f.detail("a set of it is one this process cannot open"),
            Error::Removed => f.detail("the namespace was removed meanwhile"),
            _ => f,
        }
    })?;
    print(
        out,
        cli.json,
        || show::removal_json(name, &r),
        || show::removal_human(name, &r),
    )
}

fn watch(cli: &Cli, t: &Target, interval: u64, count: Option<u64>, out: &mut dyn Write) -> Res<()> {
    let ns = existing(&cli.namespace)?;
    let id = resolve(&ns, t)?;
    let clear = !cli.json && std::io::stdout().is_terminal();
    let mut frame = 0u64;
    loop {
        frame += 1;
        let v = inspect(&ns, id, t.key)?;
        let text = if cli.json {
            let mut j = v.json();
            j["frame"] = json!(frame);
            let mut s = serde_json::to_string(&j).expect("a Value always serialises");
            s.push('\n');
            s
        } else {
            let head = format!(
                "shmsem watch: frame {frame}, every {interval} ms, at {}\n\n",
                show::clock_now()
            );
            let sep = if clear {
                "\x1b[H\x1b[2J"
            } else if frame > 1 {
                "\n"
            } else {
                ""
            };
            format!("{sep}{head}{}", v.human())
        };
        write_all(out, &text)?;
        out.flush().map_err(write_failure)?;
        if count.is_some_and(|c| frame >= c) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(interval));
    }
}

// ---------------------------------------------------------------------
// Argument parsers
// ---------------------------------------------------------------------

/// A key: decimal (possibly negative) or 0x hex up to 32 bits.
fn parse_key(s: &str) -> Result<i32, String> {
    let bad = || format!("`{s}` is not a key (decimal or 0x hex, 32 bits)");
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16)
            .map(|k| k as i32)
            .map_err(|_| bad())
    } else {
        s.parse::<i32>().map_err(|_| bad())
    }
}

/// An id: decimal or 0x hex, not negative.
fn parse_id(s: &str) -> Result<i32, String> {
    match parse_key(s) {
        Ok(id) if id >= 0 => Ok(id),
        _ => Err(format!("`{s}` is not a set id")),
    }
}

/// Permission bits in octal (`600`, `0600`, `0o600`).
fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("`{s}` is not an octal mode (at most 0777)")),
    }
}

/// `SEMNUM=VALUE`.
fn parse_assign(s: &str) -> Result<(i32, i32), String> {
    let bad = || format!("`{s}` is not SEMNUM=VALUE");
    let (n, v) = s.split_once('=').ok_or_else(bad)?;
    Ok((n.parse().map_err(|_| bad())?, v.parse().map_err(|_| bad())?))
}

/// One operation: `N-K`, `N+K` or `N=0`, optionally `:undo`, `:nowait`,
/// `:undo,nowait`.
fn parse_op(s: &str) -> Result<Sembuf, String> {
    let bad = |why: &str| format!("`{s}`: {why} (write N-K, N+K or N=0, optionally :undo,nowait)");
    let (body, flags) = match s.split_once(':') {
        Some((b, f)) => (b, Some(f)),
        None => (s, None),
    };
    let pos = body
        .find(['-', '+', '='])
        .ok_or_else(|| bad("no -, + or ="))?;
    let num: u16 = body[..pos]
        .parse()
        .map_err(|_| bad("the semaphore number is not 0..65535"))?;
    let amount: i16 = body[pos + 1..]
        .parse()
        .map_err(|_| bad("the amount is not 0..32767"))?;
    let op = match &body[pos..pos + 1] {
        "-" if amount >= 0 => -amount,
        "+" if amount >= 0 => amount,
        "=" if amount == 0 => 0,
        "=" => return Err(bad("only =0 (wait for zero) exists")),
        _ => return Err(bad("the amount is not 0..32767")),
    };
    let mut flg = 0i16;
    for f in flags.into_iter().flat_map(|f| f.split(',')) {
        flg |= match f {
            "undo" | "u" => SEM_UNDO as i16,
            "nowait" | "n" => IPC_NOWAIT as i16,
            _ => return Err(bad(&format!("unknown flag `{f}`"))),
        };
    }
    Ok(Sembuf::new(num, op, flg))
}

/// A duration: `2s`, `1.5s`, `500ms`, `250us`, `1m`; a bare number is seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration (e.g. 2s, 1.5s, 500ms, 1m)");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "ns" => n / 1e9,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}
