//! The report: every figure with its target and verdict, printed as a table and written as JSON.
//!
//! A figure that could not be measured keeps its row, with no value and the reason in its
//! detail, so that a report always lists the same figures.

use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable identifier (`plan.chat_large`, `e2e.total`, …), the same at every size.
    pub key: String,
    /// What was measured, for a person.
    pub name: String,
    pub value: Option<f64>,
    pub unit: &'static str,
    /// The target from the issue, if this figure has one.
    pub target: Option<String>,
    /// `Some(true)` met, `Some(false)` missed, `None` no target (or not measured).
    pub pass: Option<bool>,
    /// References and notes (split and cat speeds, counts, why a value is missing).
    pub detail: String,
    /// The raw measurements behind the value.
    pub data: Value,
}

impl Figure {
    pub fn info(key: &str, name: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Figure {
            key: key.to_string(),
            name: name.into(),
            value: Some(value),
            unit,
            target: None,
            pass: None,
            detail: String::new(),
            data: Value::Null,
        }
    }

    /// A figure whose measurement failed: no value, the error as detail.
    pub fn missing(key: &str, name: impl Into<String>, unit: &'static str, why: String) -> Self {
        Figure {
            key: key.to_string(),
            name: name.into(),
            value: None,
            unit,
            target: None,
            pass: None,
            detail: format!("NOT MEASURED: {why}"),
            data: Value::Null,
        }
    }

    pub fn target(mut self, target: impl Into<String>, pass: bool) -> Self {
        self.target = Some(target.into());
        self.pass = Some(pass);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    fn value_text(&self) -> String {
        match self.value {
            None => "—".into(),
            Some(v) if self.unit == "×" => format!("{v:.2}×"),
            Some(v) if self.unit == "s" && v < 10.0 => format!("{v:.3} s"),
            Some(v) if v >= 100.0 => format!("{v:.0} {}", self.unit),
            Some(v) => format!("{v:.1} {}", self.unit),
        }
    }

    fn verdict(&self) -> &'static str {
        match (self.value, self.pass) {
            (None, _) => "ERROR",
            (_, Some(true)) => "PASS",
            (_, Some(false)) => "MISS",
            (_, None) => "",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub mode: String,
    pub command: String,
    pub machine: Value,
    pub source: Value,
    pub load: Value,
    pub settings: Value,
    pub inputs: Value,
    pub figures: Vec<Figure>,
    pub targets_met: usize,
    pub targets_missed: usize,
    pub not_measured: usize,
}

impl Report {
    pub fn tally(&mut self) {
        self.targets_met = self.figures.iter().filter(|f| f.pass == Some(true)).count();
        self.targets_missed = self
            .figures
            .iter()
            .filter(|f| f.pass == Some(false))
            .count();
        self.not_measured = self.figures.iter().filter(|f| f.value.is_none()).count();
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .figures
            .iter()
            .map(|f| {
                [
                    f.name.clone(),
                    f.value_text(),
                    f.target.clone().unwrap_or_default(),
                    f.verdict().to_string(),
                ]
            })
            .collect();
        let header = ["figure", "value", "target", "result"].map(String::from);
        let mut widths = [0usize; 4];
        for row in rows.iter().chain(std::iter::once(&header)) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, row: &[String; 4]| {
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                let pad = w - cell.chars().count();
                if i == 1 {
                    let _ = write!(out, "{}{cell}  ", " ".repeat(pad));
                } else {
                    let _ = write!(out, "{cell}{}  ", " ".repeat(pad));
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        };
        line(&mut out, &header);
        let rule = widths.map(|w| "-".repeat(w));
        line(&mut out, &rule);
        for (row, figure) in rows.iter().zip(&self.figures) {
            line(&mut out, row);
            if !figure.detail.is_empty() {
                let _ = writeln!(out, "    {}", figure.detail);
            }
        }
        let _ = writeln!(
            out,
            "\ntargets met: {}, missed: {}, not measured: {}",
            self.targets_met, self.targets_missed, self.not_measured
        );
        out
    }
}

/// Bytes per second as `MB/s` (decimal megabytes).
pub fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    bytes as f64 / 1e6 / secs
}

/// A byte count for a person: `12.3 MB`, `1.07 GB`.
pub fn size_text(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.2} GB", bytes as f64 / 1e9)
    } else if bytes >= 1_000_000 {
        format!("{:.0} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.0} kB", bytes as f64 / 1e3)
    }
}

/// Round to three decimals for the JSON report.
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
