//! The per-electrode table of a report: one [`Row`] per electrode, written as
//! TSV (`electrodes.tsv`) and printed by `report --json`.
use super::{Report, ReportError};
use serde::Serialize;
use std::path::Path;

/// The TSV header, in column order.
pub const COLUMNS: [&str; 9] = [
    "label",
    "group",
    "peak_layer",
    "peak_layer_ci_lo",
    "peak_layer_ci_hi",
    "r",
    "p",
    "q",
    "significant",
];

/// One electrode's answer (`docs/statistics.md`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Channel label.
    pub label: String,
    /// Shaft, strip or grid.
    pub group: String,
    /// Model layer with the highest r.
    pub peak_layer: usize,
    /// Block-bootstrap interval of the peak layer, inclusive.
    pub peak_layer_ci: [usize; 2],
    /// r at the peak layer.
    pub r: f64,
    /// Circular-shift p-value of the maximum over layers.
    pub p: f64,
    /// Benjamini–Hochberg q.
    pub q: f64,
    /// `q ≤ fdr_q`.
    pub significant: bool,
}

/// The rows of a report, in encoder order.
pub fn rows(report: &Report) -> Vec<Row> {
    report
        .statistics
        .electrodes
        .iter()
        .zip(&report.groups)
        .map(|(e, group)| Row {
            label: e.label.clone(),
            group: group.clone(),
            peak_layer: e.peak_layer,
            peak_layer_ci: e.peak_layer_ci,
            r: e.r,
            p: e.p,
            q: e.q,
            significant: e.significant,
        })
        .collect()
}

/// A field without the TSV's separators.
fn field(text: &str) -> String {
    text.replace(['\t', '\n', '\r'], " ")
}

/// The table as TSV text: the header, then one line per electrode; numbers in
/// their shortest exact decimal form.
pub fn tsv(rows: &[Row]) -> String {
    let mut out = COLUMNS.join("\t") + "\n";
    for r in rows {
        let line = [
            field(&r.label),
            field(&r.group),
            r.peak_layer.to_string(),
            r.peak_layer_ci[0].to_string(),
            r.peak_layer_ci[1].to_string(),
            r.r.to_string(),
            r.p.to_string(),
            r.q.to_string(),
            r.significant.to_string(),
        ];
        out += &(line.join("\t") + "\n");
    }
    out
}

/// Writes the table to `path`.
pub fn write(path: &Path, rows: &[Row]) -> Result<(), ReportError> {
    std::fs::write(path, tsv(rows)).map_err(|source| ReportError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_has_one_line_per_electrode_and_no_stray_separators() {
        let row = Row {
            label: "LA\t1".into(),
            group: "LA".into(),
            peak_layer: 12,
            peak_layer_ci: [8, 20],
            r: 0.125,
            p: 1.0 / 1001.0,
            q: 0.002,
            significant: true,
        };
        let text = tsv(&[row]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].split('\t').count(), COLUMNS.len());
        let fields: Vec<&str> = lines[1].split('\t').collect();
        assert_eq!(fields.len(), COLUMNS.len());
        assert_eq!(fields[0], "LA 1");
        assert_eq!(fields[6].parse::<f64>().unwrap(), 1.0 / 1001.0);
        assert_eq!(fields[8], "true");
    }
}
