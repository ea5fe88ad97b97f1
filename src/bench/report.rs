//! Shared output of `neuralign bench`: every part returns a [`PartReport`]
//! (latency rows and key figures); this module prints its table, describes the
//! machine, and writes the JSON report and the SVG plot.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use plotters::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};

use crate::metrics::Percentiles;

/// A figure with its unit (a throughput, a ratio, a share).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// What it is, e.g. "real-time factor, 256 ch @ 2048 Hz".
    pub label: String,
    /// Its value.
    pub value: f64,
    /// Its unit, e.g. "GFLOP/s", "%", "×".
    pub unit: String,
}

impl Figure {
    /// A figure from its parts.
    pub fn new(label: impl Into<String>, value: f64, unit: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            value,
            unit: unit.into(),
        }
    }
}

/// One measured stage or configuration: its latency percentiles and, where
/// it has one, its throughput.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The stage or configuration, e.g. "lm_step incremental @ 1024".
    pub label: String,
    /// Latency percentiles.
    #[serde(flatten)]
    pub latency: Percentiles,
    /// Work done per second, if meaningful for the row.
    pub throughput: Option<Figure>,
}

/// What one part of `neuralign bench` measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartReport {
    /// One line saying what was measured and how.
    pub title: String,
    /// Latency rows, printed as one table and plotted.
    pub rows: Vec<Row>,
    /// Ratios, shares and other key figures, printed side by side below the table.
    pub figures: Vec<Figure>,
    /// Everything else the part measured, as it wants it in the JSON.
    pub details: Value,
}

/// How one requested part ended.
#[derive(Debug)]
pub enum Outcome {
    /// Measured.
    Done(PartReport),
    /// The benchmark ran and failed; the error says why.
    Failed(anyhow::Error),
}

impl Outcome {
    /// The part's object in the JSON report, with a `status` of `ok` or `failed`.
    pub fn to_json(&self) -> Value {
        match self {
            Outcome::Done(report) => {
                let mut v = serde_json::to_value(report).unwrap_or(Value::Null);
                v["status"] = json!("ok");
                v
            }
            Outcome::Failed(e) => json!({"status": "failed", "error": format!("{e:#}")}),
        }
    }
}

/// Prints one part's outcome as a table: p50/p90/p99/max and throughput per
/// row, then the key figures.
pub fn print_outcome(part: &str, outcome: &Outcome) {
    let report = match outcome {
        Outcome::Done(report) => report,
        Outcome::Failed(e) => {
            println!("\n== {part}: FAILED: {e:#} ==");
            return;
        }
    };
    println!("\n== {part}: {} ==", report.title);
    let width = report
        .rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    println!(
        "{:<width$} {:>8} {:>10} {:>10} {:>10} {:>10}  throughput",
        "stage", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for row in &report.rows {
        let p = &row.latency;
        let throughput = row
            .throughput
            .as_ref()
            .map(|t| format!("{} {}", fmt_value(t.value), t.unit))
            .unwrap_or_default();
        println!(
            "{:<width$} {:>8} {:>10.3} {:>10.3} {:>10.3} {:>10.3}  {throughput}",
            row.label, p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
        );
    }
    let width = report
        .figures
        .iter()
        .map(|f| f.label.chars().count())
        .max()
        .unwrap_or(0);
    for f in &report.figures {
        println!("  {:<width$}  {} {}", f.label, fmt_value(f.value), f.unit);
    }
}

/// Whole numbers as they are, others with four significant digits (scientific
/// notation outside 0.001 to a million).
fn fmt_value(v: f64) -> String {
    if !v.is_finite() || (v.fract() == 0.0 && v.abs() < 1e6) {
        // counts and whole numbers as they are
        format!("{v}")
    } else if v.abs() >= 1e6 || v.abs() < 1e-3 {
        format!("{v:.3e}")
    } else {
        let decimals = (3 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
        format!("{v:.decimals$}")
    }
}

/// The machine and build a report was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub logical_cores: usize,
    /// Physical cores.
    pub physical_cores: usize,
    /// CPU model from `/proc/cpuinfo`, where readable.
    pub cpu_model: Option<String>,
    /// Operating system and architecture.
    pub os: String,
    /// When the report was made, UTC, RFC 3339.
    pub date_utc: String,
    /// Commit of the source tree the binary was built from, read at run time
    /// (with `-dirty` for uncommitted changes); absent outside a git checkout.
    pub git_commit: Option<String>,
    /// `release` or `debug`: debug figures are not representative.
    pub profile: &'static str,
    /// neuralign's version.
    pub version: &'static str,
}

impl Machine {
    /// Describes this machine and build.
    pub fn detect() -> Self {
        Self {
            logical_cores: num_cpus::get(),
            physical_cores: num_cpus::get_physical(),
            cpu_model: cpu_model(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            date_utc: rfc3339_utc(SystemTime::now()),
            git_commit: git_commit(),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// Whether this is a debug build (figures several times too slow).
    pub fn is_debug(&self) -> bool {
        self.profile == "debug"
    }
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn git_commit() -> Option<String> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339_utc(t: SystemTime) -> String {
    let u = crate::utc::from_unix(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        u.year, u.month, u.day, u.hour, u.minute, u.second
    )
}

/// The whole JSON report: `machine` plus one object per part, keyed by part.
pub fn to_json(machine: &Machine, parts: &[(&str, Outcome)]) -> Value {
    let mut report = serde_json::Map::new();
    report.insert("machine".into(), json!(machine));
    for (part, outcome) in parts {
        report.insert((*part).into(), outcome.to_json());
    }
    Value::Object(report)
}

/// Writes the JSON report to `path`.
pub fn write_json(path: &Path, report: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write the JSON report to {}", path.display()))
}

/// Percentile series drawn per row, with their colours.
const SERIES: [(&str, RGBColor); 4] = [
    ("p50", RGBColor(31, 119, 180)),
    ("p90", RGBColor(44, 160, 44)),
    ("p99", RGBColor(255, 127, 14)),
    ("max", RGBColor(214, 39, 40)),
];

/// Plots p50/p90/p99/max of every row of every measured part on a log scale
/// (milliseconds) as an SVG at `path`. Returns `false`, writing nothing, when
/// no part measured a latency.
pub fn write_plot(
    path: &Path,
    machine: &Machine,
    parts: &[(&str, Outcome)],
) -> anyhow::Result<bool> {
    let rows: Vec<(String, &Percentiles)> = parts
        .iter()
        .filter_map(|(part, o)| match o {
            Outcome::Done(r) => Some((part, r)),
            _ => None,
        })
        .flat_map(|(part, r)| {
            r.rows
                .iter()
                .filter(|row| row.latency.count > 0)
                .map(move |row| (format!("{part}: {}", row.label), &row.latency))
        })
        .collect();
    if rows.is_empty() {
        return Ok(false);
    }
    let value = |p: &Percentiles, i: usize| [p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms][i];
    // Decades around the data; latencies are at least 1 µs.
    let lo = rows
        .iter()
        .map(|(_, p)| p.p50_ms)
        .fold(f64::INFINITY, f64::min);
    let hi = rows.iter().map(|(_, p)| p.max_ms).fold(0.0, f64::max);
    let lo = 10f64.powf(lo.max(1e-3).log10().floor());
    let hi = 10f64.powf(hi.max(lo * 10.0).log10().ceil());
    // room for row labels of about 30 characters side by side
    let width = (200 + 230 * rows.len() as u32).max(800);
    let root = SVGBackend::new(path, (width, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let caption = format!(
        "neuralign bench: latency per stage (ms, log scale), {} build, {}",
        machine.profile, machine.date_utc
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0..rows.len()).into_segmented(), (lo..hi).log_scale())
        .map_err(plot_error)?;
    let labels: Vec<&str> = rows.iter().map(|(l, _)| l.as_str()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len())
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => labels.get(*i).copied().unwrap_or("").to_string(),
            _ => String::new(),
        })
        .y_desc("latency (ms)")
        .y_label_formatter(&|y| {
            let text = format!("{y:.4}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        })
        .draw()
        .map_err(plot_error)?;
    // A bar from the median to the maximum of each row, then the percentiles.
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (_, p))| {
            let (bottom, top) = (SegmentValue::CenterOf(i), SegmentValue::CenterOf(i));
            PathElement::new(vec![(bottom, p.p50_ms), (top, p.max_ms)], BLACK.mix(0.4))
        }))
        .map_err(plot_error)?;
    for (k, (name, colour)) in SERIES.iter().enumerate() {
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (_, p))| {
                Circle::new((SegmentValue::CenterOf(i), value(p, k)), 5, colour.filled())
            }))
            .map_err(plot_error)?
            .label(*name)
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(true)
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the plot: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // leap day
        assert_eq!(rfc3339_utc(t), "2024-02-29T12:34:56Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_utc(t), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn values_keep_four_significant_digits() {
        assert_eq!(fmt_value(12.3456), "12.35");
        assert_eq!(fmt_value(0.5), "0.5000");
        assert_eq!(fmt_value(1234.4), "1234");
        assert_eq!(fmt_value(0.0), "0");
        assert_eq!(fmt_value(2.0), "2");
        assert_eq!(fmt_value(2.5e7), "2.500e7");
    }

    #[test]
    fn json_keys_parts_and_their_status() {
        let row = Row {
            label: "x".into(),
            latency: Percentiles {
                count: 3,
                p50_ms: 1.0,
                p90_ms: 2.0,
                p99_ms: 3.0,
                max_ms: 4.0,
                mean_ms: 2.0,
            },
            throughput: Some(Figure::new("words", 5.0, "words/s")),
        };
        let parts = [
            (
                "dsp",
                Outcome::Done(PartReport {
                    title: "t".into(),
                    rows: vec![row],
                    figures: vec![Figure::new("ratio", 2.0, "×")],
                    details: json!({"k": 1}),
                }),
            ),
            ("lsl", Outcome::Failed(anyhow::anyhow!("boom"))),
        ];
        let v = to_json(&Machine::detect(), &parts);
        assert_eq!(v["dsp"]["status"], "ok");
        assert_eq!(v["dsp"]["rows"][0]["p99_ms"], 3.0);
        assert_eq!(v["dsp"]["rows"][0]["throughput"]["unit"], "words/s");
        assert_eq!(v["dsp"]["figures"][0]["value"], 2.0);
        assert_eq!(v["lsl"]["error"], "boom");
        assert!(v["machine"]["logical_cores"].as_u64().unwrap() >= 1);
    }
}
