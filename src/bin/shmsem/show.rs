//! Printing: the text tables and the JSON documents of the read commands.

use serde_json::{json, Value};
use shmsem::sysv::{Sembuf, SemidDs, IPC_NOWAIT, SEM_UNDO};
use shmsem::{GcReport, NamespaceInfo, NamespaceRemoval, PendingOp, ProcessReport, SetReport};

/// The name of an errno (`EAGAIN`), or `errno N` for an unknown one.
pub fn errno_name(e: i32) -> String {
    match nix::errno::Errno::from_raw(e) {
        nix::errno::Errno::UnknownErrno => format!("errno {e}"),
        n => format!("{n:?}"),
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds (the clock of `queued_at_ns`).
pub fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always readable");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Whether a process-table entry holds anything a sweep would give back.
pub fn holds(p: &ProcessReport) -> bool {
    !p.adjustments.is_empty() || p.undo_record || p.queued > 0
}

/// Seconds since the epoch as local time, `2024-05-01T12:00:00` (one word,
/// for awk); 0 is "not set", as ipcs says.
pub fn time(secs: i64) -> String {
    if secs == 0 {
        return "not set".to_string();
    }
    // SAFETY: an all-zero `tm` is a valid value (integers and a null zone
    // pointer); localtime_r only writes it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let t: libc::time_t = secs as libc::time_t;
    // SAFETY: both pointers are to live locals of the right types.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return format!("@{secs}");
    }
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// The wall-clock time of day, `12:00:00`.
pub fn clock_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time(secs)
        .split_once('T')
        .map(|(_, t)| t.to_string())
        .unwrap_or_default()
}

fn user(uid: u32) -> String {
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

fn group(gid: u32) -> String {
    match nix::unistd::Group::from_gid(gid.into()) {
        Ok(Some(g)) => g.name,
        _ => gid.to_string(),
    }
}

fn key_hex(key: i32) -> String {
    format!("{:#010x}", key as u32)
}

/// A waiting time: `850ms`, `2.350s`, `3m12s`.
fn waited(ns: u64) -> String {
    let ms = ns / 1_000_000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    } else {
        format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60)
    }
}

/// One operation as `shmsem op` takes it: `0-1`, `1+2:undo`, `2=0:nowait`.
pub fn op_text(o: &Sembuf) -> String {
    let mut s = match o.sem_op {
        0 => format!("{}=0", o.sem_num),
        x if x < 0 => format!("{}{}", o.sem_num, x),
        x => format!("{}+{}", o.sem_num, x),
    };
    let flags = op_flags(o);
    if !flags.is_empty() {
        s.push(':');
        s.push_str(&flags.join(","));
    }
    s
}

fn op_flags(o: &Sembuf) -> Vec<&'static str> {
    let mut v = Vec::new();
    if o.sem_flg & SEM_UNDO as i16 != 0 {
        v.push("undo");
    }
    if o.sem_flg & IPC_NOWAIT as i16 != 0 {
        v.push("nowait");
    }
    v
}

fn ops_text(ops: &[Sembuf]) -> String {
    ops.iter().map(op_text).collect::<Vec<_>>().join(" ")
}

fn adjustments_text(p: &ProcessReport) -> String {
    if p.adjustments.is_empty() {
        return "-".to_string();
    }
    p.adjustments
        .iter()
        .map(|(n, a)| format!("{n}:{a:+}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Left-aligned columns, two spaces apart, each line indented by `indent`.
fn table(head: &[&str], rows: &[Vec<String>], indent: &str) -> String {
    let mut width: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = indent.to_string();
        for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(head.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

// ---------------------------------------------------------------------
// stat and watch
// ---------------------------------------------------------------------

/// One set as `stat` shows it.
pub struct SetView {
    pub namespace: String,
    pub id: i32,
    /// The key, when known (from the status, or given by the user).
    pub key: Option<i32>,
    /// IPC_STAT's data; `None` when reading it would have swept the dead
    /// processes this view shows.
    pub status: Option<SemidDs>,
    pub report: SetReport,
    /// This process's pid: its own table entry (made by reading the
    /// report) is not shown.
    pub me: i32,
    /// CLOCK_MONOTONIC when the report was read.
    pub now_ns: u64,
}

impl SetView {
    fn processes(&self) -> impl Iterator<Item = &ProcessReport> {
        self.report.processes.iter().filter(|p| p.pid != self.me)
    }

    fn waited_ns(&self, p: &PendingOp) -> u64 {
        self.now_ns.saturating_sub(p.queued_at_ns)
    }

    pub fn human(&self) -> String {
        let mut s = format!("Set {} in namespace {}\n", self.id, self.namespace);
        s += &self.status_human();
        s += "\n";
        s += &self.semaphores_human();
        s += &self.pending_human();
        s += &self.holding_human();
        s += &self.table_human();
        s
    }

    /// Key, owner, creator, mode, size and times.
    fn status_human(&self) -> String {
        let key = self.key.map(key_hex).unwrap_or_else(|| "?".to_string());
        let Some(ds) = &self.status else {
            let mut s = String::new();
            if self.key.is_some() {
                s += &format!("key    {key}\n");
            }
            s += "(key, owner, mode and times not shown: reading them (IPC_STAT) would\n\
                  first apply the undo of the dead processes below)\n";
            return s;
        };
        let p = &ds.perm;
        table(
            &["key", &key],
            &[
                vec!["owner".into(), format!("{}:{}", user(p.uid), group(p.gid))],
                vec![
                    "creator".into(),
                    format!("{}:{}", user(p.cuid), group(p.cgid)),
                ],
                vec!["mode".into(), format!("{:04o}", p.mode)],
                vec!["nsems".into(), ds.nsems.to_string()],
                vec!["otime".into(), time(ds.otime)],
                vec!["ctime".into(), time(ds.ctime)],
            ],
            "",
        )
    }

    /// Per semaphore: value, sempid, ncnt, zcnt.
    fn semaphores_human(&self) -> String {
        let r = &self.report;
        let rows: Vec<Vec<String>> = (0..r.values.len())
            .map(|i| {
                vec![
                    i.to_string(),
                    r.values[i].to_string(),
                    r.sempids[i].to_string(),
                    r.ncnt[i].to_string(),
                    r.zcnt[i].to_string(),
                ]
            })
            .collect();
        table(&["semnum", "value", "sempid", "ncnt", "zcnt"], &rows, "")
    }

    /// The pending queue in FIFO order.
    fn pending_human(&self) -> String {
        let mut s = "\nPending operations (FIFO order):\n".to_string();
        if self.report.pending.is_empty() {
            s += "  none\n";
            return s;
        }
        let rows: Vec<Vec<String>> = self
            .report
            .pending
            .iter()
            .map(|p| {
                vec![
                    p.pid.to_string(),
                    waited(self.waited_ns(p)),
                    ops_text(&p.ops),
                ]
            })
            .collect();
        s += &table(&["pid", "waiting", "ops"], &rows, "  ");
        s
    }

    /// The processes holding undo adjustments or queue slots.
    fn holding_human(&self) -> String {
        let mut s = "\nProcesses holding SEM_UNDO adjustments or queue slots:\n".to_string();
        let holding: Vec<&ProcessReport> = self.processes().filter(|p| holds(p)).collect();
        if holding.is_empty() {
            s += "  none\n";
            return s;
        }
        let rows: Vec<Vec<String>> = holding
            .iter()
            .map(|p| {
                vec![
                    p.pid.to_string(),
                    if p.alive { "alive" } else { "DEAD" }.to_string(),
                    p.queued.to_string(),
                    adjustments_text(p),
                ]
            })
            .collect();
        s += &table(&["pid", "state", "queued", "adjustments"], &rows, "  ");
        s
    }

    /// Dead processes not yet swept, and the use of the process table and
    /// the queue arena.
    fn table_human(&self) -> String {
        let mut s = String::new();
        // Dead entries that hold nothing are left by every process that
        // took the set's lock (this command included) and are freed lazily:
        // they are counted, not listed.
        let (live, dead): (Vec<&ProcessReport>, Vec<&ProcessReport>) =
            self.processes().partition(|p| p.alive);
        let held: Vec<String> = dead
            .iter()
            .filter(|p| holds(p))
            .map(|p| p.pid.to_string())
            .collect();
        if !held.is_empty() {
            s += &format!(
                "\nDead processes not yet swept: {}\n\
                 (their undo is applied when a process uses those semaphores, or by `shmsem gc`)\n",
                held.join(" ")
            );
        }
        let u = &self.report.slots;
        s += &format!(
            "\nProcess table: {} ({} live, {} dead holding something, {} idle of exited processes)\n\
             Queue arena: {} free, {} queued, {} done, {} continuation\n",
            plural(live.len() + dead.len(), "entry", "entries"),
            live.len(),
            held.len(),
            dead.len() - held.len(),
            u.free,
            u.queued,
            u.done,
            u.cont
        );
        s
    }

    pub fn json(&self) -> Value {
        let r = &self.report;
        let status = self.status.as_ref().map(status_json);
        let semaphores: Vec<Value> = (0..r.values.len())
            .map(|i| {
                json!({
                    "num": i,
                    "value": r.values[i],
                    "sempid": r.sempids[i],
                    "ncnt": r.ncnt[i],
                    "zcnt": r.zcnt[i],
                })
            })
            .collect();
        let pending: Vec<Value> = r
            .pending
            .iter()
            .map(|p| {
                json!({
                    "pid": p.pid,
                    "slot": p.slot,
                    "ticket": p.ticket,
                    "waited_ms": self.waited_ns(p) / 1_000_000,
                    "ops": p.ops.iter().map(op_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let processes: Vec<Value> = self
            .processes()
            .map(|p| {
                json!({
                    "pid": p.pid,
                    "slot": p.slot,
                    "alive": p.alive,
                    "undo_record": p.undo_record,
                    "queued": p.queued,
                    "adjustments": p.adjustments.iter()
                        .map(|(n, a)| json!({ "num": n, "adj": a }))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "namespace": self.namespace,
            "id": self.id,
            "key": self.key,
            "status": status,
            "semaphores": semaphores,
            "pending": pending,
            "processes": processes,
            "slots": {
                "free": r.slots.free,
                "queued": r.slots.queued,
                "done": r.slots.done,
                "cont": r.slots.cont,
            },
        })
    }
}

/// A set's status (IPC_STAT's data) as JSON.
fn status_json(ds: &SemidDs) -> Value {
    let p = &ds.perm;
    json!({
        "key": p.key,
        "uid": p.uid,
        "gid": p.gid,
        "cuid": p.cuid,
        "cgid": p.cgid,
        "mode": p.mode,
        "nsems": ds.nsems,
        "otime": ds.otime,
        "ctime": ds.ctime,
    })
}

fn op_json(o: &Sembuf) -> Value {
    json!({
        "num": o.sem_num,
        "op": o.sem_op,
        "flags": op_flags(o),
        "text": op_text(o),
    })
}

// ---------------------------------------------------------------------
// ls
// ---------------------------------------------------------------------

/// One line of `ls`.
pub struct ListRow {
    pub namespace: String,
    pub id: i32,
    pub ds: SemidDs,
    /// Queued operations (None: the set could not be read).
    pub waiters: Option<usize>,
    /// Live processes in the set's table.
    pub live: Option<usize>,
}

/// A time in `ls`: one word, `-` when not set.
fn list_time(secs: i64) -> String {
    if secs == 0 {
        "-".to_string()
    } else {
        time(secs)
    }
}

pub fn list_human(rows: &[ListRow], with_ns: bool) -> String {
    let opt = |x: Option<usize>| x.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    let mut head = vec![
        "key", "semid", "owner", "perms", "nsems", "otime", "ctime", "waiters", "procs",
    ];
    if with_ns {
        head.insert(0, "namespace");
    }
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut v = vec![
                key_hex(r.ds.perm.key),
                r.id.to_string(),
                user(r.ds.perm.uid),
                format!("{:o}", r.ds.perm.mode),
                r.ds.nsems.to_string(),
                list_time(r.ds.otime),
                list_time(r.ds.ctime),
                opt(r.waiters),
                opt(r.live),
            ];
            if with_ns {
                v.insert(0, r.namespace.clone());
            }
            v
        })
        .collect();
    table(&head, &lines, "")
}

pub fn list_json(rows: &[ListRow]) -> Value {
    let sets: Vec<Value> = rows
        .iter()
        .map(|r| {
            // The status's fields, and the row's own.
            let mut j = status_json(&r.ds);
            j["namespace"] = json!(r.namespace);
            j["id"] = json!(r.id);
            j["waiters"] = json!(r.waiters);
            j["live_processes"] = json!(r.live);
            j
        })
        .collect();
    json!({ "sets": sets })
}

// ---------------------------------------------------------------------
// gc
// ---------------------------------------------------------------------

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn gc_human(done: &[(String, GcReport)]) -> String {
    let mut s = String::new();
    for (name, r) in done {
        s += &format!(
            "namespace {name}: {} checked; {} reaped (undo applied, entries freed); \
             {} and {} removed\n",
            plural(r.sets, "set", "sets"),
            plural(r.dead_processes, "dead process", "dead processes"),
            plural(r.stale_entries, "stale entry", "stale entries"),
            plural(r.orphan_segments, "orphan segment", "orphan segments"),
        );
    }
    s
}

pub fn gc_json(done: &[(String, GcReport)], all: bool) -> Value {
    let one = |(name, r): &(String, GcReport)| {
        json!({
            "namespace": name,
            "sets": r.sets,
            "dead_processes": r.dead_processes,
            "stale_entries": r.stale_entries,
            "orphan_segments": r.orphan_segments,
        })
    };
    if all {
        json!({ "namespaces": done.iter().map(one).collect::<Vec<_>>() })
    } else {
        one(&done[0])
    }
}

/// `ns ls`: one line per namespace; `-` for what could not be read.
pub fn namespaces_human(found: &[NamespaceInfo]) -> String {
    let head = [
        "namespace",
        "sets",
        "ns_bytes",
        "segments",
        "seg_bytes",
        "owner",
        "perms",
    ];
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.sets.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                n.bytes.to_string(),
                n.segments.to_string(),
                n.segment_bytes.to_string(),
                user(n.uid),
                format!("{:o}", n.mode),
            ]
        })
        .collect();
    table(&head, &rows, "")
}

pub fn namespaces_json(found: &[NamespaceInfo]) -> Value {
    let one = |n: &NamespaceInfo| {
        json!({
            "namespace": n.name,
            "sets": n.sets,
            "ns_bytes": n.bytes,
            "limits_size": n.size,
            "segments": n.segments,
            "segment_bytes": n.segment_bytes,
            "uid": n.uid,
            "owner": user(n.uid),
            "mode": n.mode,
            "problem": n.problem.as_ref().map(|(e, why)| json!({
                "errno": errno_name(e.errno()),
                "message": why,
            })),
        })
    };
    json!({ "namespaces": found.iter().map(one).collect::<Vec<_>>() })
}

/// `ns rm`: what was removed.
pub fn removal_human(name: &str, r: &NamespaceRemoval) -> String {
    format!(
        "namespace {name} removed; {} removed (sleepers get EIDRM); {} and {} removed\n",
        plural(r.sets_removed, "set", "sets"),
        plural(r.stale_entries, "stale entry", "stale entries"),
        plural(r.orphan_segments, "orphan segment", "orphan segments"),
    )
}

pub fn removal_json(name: &str, r: &NamespaceRemoval) -> Value {
    json!({
        "namespace": name,
        "removed": true,
        "sets_removed": r.sets_removed,
        "stale_entries": r.stale_entries,
        "orphan_segments": r.orphan_segments,
    })
}
