//! The results table: printed, written as Markdown, and drawn as an SVG bar
//! chart of the ratios against their targets.

use std::fmt::Write as _;

/// The columns, in order. `SHMSEM`, `KERNEL`, `SEMT` index them.
pub const IMPLS: [&str; 5] = ["shmsem", "kernel", "sem_t", "mutex", "futex"];
pub const SHMSEM: usize = 0;
pub const KERNEL: usize = 1;
pub const SEMT: usize = 2;

/// Which way a row's figures are good.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Times: a ratio is other / shmsem.
    Lower,
    /// Throughputs, fairness: a ratio is shmsem / other.
    Higher,
    /// Figures to read, no ratio (context switches, memory).
    Info,
}

/// One figure: measured, not applicable ("-"), or failed ("err").
#[derive(Clone, Debug)]
pub enum Fig {
    Val(f64),
    NotApplicable,
    Failed(String),
}

/// "shmsem's ratio against `vs` must be at least `min`".
#[derive(Clone, Copy)]
pub struct Target {
    pub vs: usize,
    pub min: f64,
    /// Met when the ratio is at least `min - tol` (noise allowance).
    pub tol: f64,
    /// As ANCHORS.md words it.
    pub text: &'static str,
}

pub struct Row {
    pub scenario: String,
    pub unit: &'static str,
    pub better: Better,
    pub figs: [Fig; 5],
    pub targets: Vec<Target>,
}

impl Row {
    pub fn new(scenario: impl Into<String>, unit: &'static str, better: Better) -> Row {
        Row {
            scenario: scenario.into(),
            unit,
            better,
            figs: std::array::from_fn(|_| Fig::NotApplicable),
            targets: Vec::new(),
        }
    }

    pub fn target(self, vs: usize, min: f64, text: &'static str) -> Row {
        self.target_within(vs, min, 0.0, text)
    }

    /// A target met within an allowance `tol` below `min`.
    pub fn target_within(mut self, vs: usize, min: f64, tol: f64, text: &'static str) -> Row {
        self.targets.push(Target { vs, min, tol, text });
        self
    }

    pub fn set(&mut self, imp: usize, f: Fig) {
        self.figs[imp] = f;
    }

    fn val(&self, imp: usize) -> Option<f64> {
        match self.figs[imp] {
            Fig::Val(v) => Some(v),
            _ => None,
        }
    }

    /// shmsem's ratio against `vs`, "higher is better for shmsem".
    pub fn ratio(&self, vs: usize) -> Option<f64> {
        let (s, o) = (self.val(SHMSEM)?, self.val(vs)?);
        match self.better {
            Better::Lower if s > 0.0 => Some(o / s),
            Better::Higher if o > 0.0 => Some(s / o),
            _ => None,
        }
    }

    /// "met", "MISSED (...)", "n/a" (a figure is missing), or "" (no target).
    pub fn status(&self) -> String {
        if self.targets.is_empty() {
            return String::new();
        }
        let mut missed = Vec::new();
        for t in &self.targets {
            match self.ratio(t.vs) {
                None => return "n/a".to_string(),
                Some(r) if r < t.min - t.tol => missed.push(t.text),
                Some(_) => {}
            }
        }
        if missed.is_empty() {
            "met".to_string()
        } else {
            format!("MISSED ({})", missed.join("; "))
        }
    }
}

fn fmt_fig(f: &Fig, unit: &str) -> String {
    match f {
        Fig::Val(v) if unit == "fairness" || unit == "ctx sw/op" => format!("{v:.2}"),
        Fig::Val(v) if *v >= 100.0 => format!("{v:.0}"),
        Fig::Val(v) if *v >= 10.0 => format!("{v:.1}"),
        Fig::Val(v) => format!("{v:.2}"),
        Fig::NotApplicable => "-".to_string(),
        Fig::Failed(_) => "err".to_string(),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 10.0 => format!("{r:.0}×"),
        Some(r) => format!("{r:.2}×"),
        None => String::new(),
    }
}

fn target_text(row: &Row) -> String {
    row.targets
        .iter()
        .map(|t| t.text)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The cells of one row, as printed and as written to Markdown.
fn cells(row: &Row) -> Vec<String> {
    let mut c = vec![row.scenario.clone(), row.unit.to_string()];
    c.extend(row.figs.iter().map(|f| fmt_fig(f, row.unit)));
    c.push(fmt_ratio(row.ratio(KERNEL)));
    c.push(fmt_ratio(row.ratio(SEMT)));
    c.push(target_text(row));
    c.push(row.status());
    c
}

fn header() -> Vec<String> {
    let mut h = vec!["scenario".to_string(), "unit".to_string()];
    h.extend(IMPLS.iter().map(|s| s.to_string()));
    h.extend(
        ["shmsem vs kernel", "shmsem vs sem_t", "target", "status"]
            .iter()
            .map(|s| s.to_string()),
    );
    h
}

/// The table as aligned plain text for the terminal.
pub fn text_table(rows: &[Row]) -> String {
    let mut all = vec![header()];
    all.extend(rows.iter().map(cells));
    let ncol = all[0].len();
    let width: Vec<usize> = (0..ncol)
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (k, r) in all.iter().enumerate() {
        let mut line = String::new();
        for c in 0..ncol {
            let pad = width[c] - r[c].chars().count();
            // Text columns left-aligned, figures right-aligned.
            if c == 0 || c >= ncol - 2 {
                let _ = write!(line, "{}{}  ", r[c], " ".repeat(pad));
            } else {
                let _ = write!(line, "{}{}  ", " ".repeat(pad), r[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if k == 0 {
            out.push_str(&"-".repeat(width.iter().sum::<usize>() + 2 * (ncol - 1)));
            out.push('\n');
        }
    }
    out
}

/// The table as Markdown, with the notes below it.
pub fn markdown(rows: &[Row], notes: &[String]) -> String {
    let mut out = String::new();
    let h = header();
    let _ = writeln!(out, "| {} |", h.join(" | "));
    let align: Vec<&str> = (0..h.len())
        .map(|c| {
            if c == 0 || c >= h.len() - 2 {
                "---"
            } else {
                "---:"
            }
        })
        .collect();
    let _ = writeln!(out, "|{}|", align.join("|"));
    for r in rows {
        let _ = writeln!(out, "| {} |", cells(r).join(" | "));
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}

/// Failures, one line each, for the notes.
pub fn failures(rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    for r in rows {
        for (k, f) in r.figs.iter().enumerate() {
            if let Fig::Failed(why) = f {
                out.push(format!("{} / {}: err: {}", r.scenario, IMPLS[k], why));
            }
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart, log scale: for every row with a ratio against
/// the kernel or sem_t, shmsem's ratio as a bar (green: target met, red:
/// missed, grey: no target) and the target as a black tick.
pub fn svg(rows: &[Row], title: &str) -> String {
    struct Bar {
        label: String,
        ratio: f64,
        /// (min, tol) of the target.
        target: Option<(f64, f64)>,
    }
    let mut bars = Vec::new();
    for r in rows {
        if r.better == Better::Info {
            continue;
        }
        for (vs, name) in [(KERNEL, "kernel"), (SEMT, "sem_t")] {
            let target = r
                .targets
                .iter()
                .find(|t| t.vs == vs)
                .map(|t| (t.min, t.tol));
            let Some(ratio) = r.ratio(vs) else { continue };
            // Against sem_t only where there is a target: elsewhere the
            // kernel is the reference.
            if vs == SEMT && target.is_none() {
                continue;
            }
            bars.push(Bar {
                label: format!("{} (vs {name})", r.scenario),
                ratio,
                target,
            });
        }
    }
    let (lo, hi) = (0.1f64, 100.0f64);
    let (left, plot_w, bar_h, gap, top) = (330.0, 520.0, 14.0, 6.0, 56.0);
    let x = |v: f64| left + plot_w * (v.clamp(lo, hi).ln() - lo.ln()) / (hi.ln() - lo.ln());
    let height = top + bars.len() as f64 * (bar_h + gap) + 40.0;
    let width = left + plot_w + 70.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"##
    );
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14" font-weight="bold">{}</text>"##,
        xml_escape(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="38" fill="#444">shmsem's speed-up (log scale, higher is better); black tick = target; green met, red missed, grey no target</text>"##
    );
    let bottom = height - 30.0;
    for g in [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0] {
        let gx = x(g);
        let stroke = if g == 1.0 { "#888" } else { "#ddd" };
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{bottom}" stroke="{stroke}"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="#444">{g}×</text>"##,
            bottom + 14.0
        );
    }
    for (k, b) in bars.iter().enumerate() {
        let y = top + k as f64 * (bar_h + gap);
        let colour = match b.target {
            Some((t, tol)) if b.ratio >= t - tol => "#3a9a4a",
            Some(_) => "#d0413a",
            None => "#999",
        };
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left - 6.0,
            y + bar_h - 3.0,
            xml_escape(&b.label)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{y:.1}" width="{:.1}" height="{bar_h}" fill="{colour}"/><text x="{:.1}" y="{:.1}" fill="#222">{}</text>"##,
            (x(b.ratio) - left).max(1.0),
            x(b.ratio).max(x(b.target.map_or(lo, |t| t.0))) + 4.0,
            y + bar_h - 3.0,
            fmt_ratio(Some(b.ratio))
        );
        if let Some((t, _)) = b.target {
            let tx = x(t);
            let _ = writeln!(
                s,
                r##"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="black" stroke-width="2"/>"##,
                y - 2.0,
                y + bar_h + 2.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
