//! The report's HTML page (`index.html`): the figures and the table, and
//! exactly how they were computed. Self-contained: relative links to the files
//! beside it only (the figures, the TSV, and a copy of `docs/statistics.md`
//! written next to it), no scripts, no network; well-formed XML.
use super::recording::Recorded;
use super::table::Row;
use super::{plots, Report, ReportError, Source, Span};
use std::fmt::Write as _;
use std::path::Path;

/// The page's file name.
pub const INDEX: &str = "index.html";
/// The table's file name.
pub const TABLE: &str = "electrodes.tsv";
/// The procedure, copied beside the page.
pub const PROCEDURE: &str = "statistics.md";

/// `docs/statistics.md` of this build.
const STATISTICS_MD: &str = include_str!("../../docs/statistics.md");

/// Text escaped for HTML (and XML).
pub(super) fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How the figures were obtained, in one sentence.
pub fn source_sentence(report: &Report) -> String {
    sentence(&report.source, report.rate)
}

/// How the figures of `source` were obtained, in one sentence (`rate`: high-gamma, Hz).
pub fn sentence(source: &Source, rate: f64) -> String {
    match source {
        Source::Offline {
            span,
            start,
            samples,
        } => {
            let part = match span {
                Span::HeldOut => "the held-out tail of the encoders' own fit (the session they were fit on: the training part and the purge gap are left out)",
                _ => "the whole session (not the encoders' training session)",
            };
            format!(
                "Recomputed offline from the session's neural and transcript streams: the transcript embedded by the encoders' model, each layer's prediction compared with the high-gamma over {part}: {samples} samples ({:.1} s) from sample {start}.",
                *samples as f64 / rate
            )
        }
        Source::Recording {
            updates,
            layer_updates,
            significance,
        } => format!(
            "Read back from the results streams serve kept in this recording: {updates} alignment updates (the rolling r at each electrode's peak layer{}) and {layer_updates} per-layer updates (1 Hz); nothing recomputed.",
            if *significance { " and the live significance" } else { "; no live significance saved: the encoders carried no calibration for the server's window" }
        ),
        Source::Replay { window, segments } => format!(
            "Replayed: the recording's own neural and transcript streams pushed through the live alignment (align::Live) sample by sample as serve does, every word known, a {window}-sample ({:.1} s) rolling window restarted at {segments} segment boundaries, compared with the saved streams at the saved moments whose window is full.",
            *window as f64 / rate
        ),
    }
}

/// The section of the results saved by `serve` and their replay check.
fn recording_section(report: &Report, rec: &Recorded) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<h2 id=\"live\">Live results saved by serve</h2>\n<p id=\"recording\" data-path=\"{}\">{}</p>\n\
<p>The r at each electrode's peak layer over session time, as serve saved it, with each electrode's live threshold (dashed; shown: the electrodes most often significant).</p>\n<p><img src=\"{}\" alt=\"live r at the peak\"/></p>\n",
        rec.source.path(),
        esc(&sentence(&rec.source, report.rate)),
        plots::LIVE,
    );
    match (&rec.replay, &rec.replay_skipped) {
        (Some(check), _) => {
            let _ = writeln!(
                s,
                "<p id=\"replay\" data-path=\"{}\">{} Largest difference of the rolling r of every electrode and layer: {:.3e} over {} per-layer moments; of the r at the peak: {:.3e} over {} updates; values NaN in one only: {}; updates skipped (window not full): {}; significance calls that agree: {}.</p>",
                check.source.path(),
                esc(&sentence(&check.source, report.rate)),
                check.max_abs_diff_r,
                check.layer_moments,
                check.max_abs_diff_peak_r,
                check.update_moments,
                check.nan_mismatches,
                check.partial_window_moments,
                check.significance_agreement.map_or("none saved".to_string(), |a| format!(
                    "{:.2} % of {}",
                    a * 100.0,
                    check.significance_calls
                )),
            );
        }
        (None, Some(why)) => {
            let _ = writeln!(
                s,
                "<p id=\"replay\" data-path=\"none\">No replay check: {}.</p>",
                esc(why)
            );
        }
        (None, None) => {}
    }
    s += "<table>\n<thead><tr><th>label</th><th>live peak layer</th><th>share significant</th><th>live threshold</th><th>mean live r per layer</th></tr></thead>\n<tbody>\n";
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("–".to_string(), f);
    for e in &rec.electrodes {
        let profile: Vec<String> = rec
            .layers
            .iter()
            .zip(&e.profile)
            .map(|(l, r)| format!("L{l} {r:.3}"))
            .collect();
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.label),
            e.peak_layer.map_or("–".to_string(), |l| l.to_string()),
            opt(e.share_significant, &|v| format!("{:.1} %", v * 100.0)),
            opt(e.threshold, &|v| format!("{v:.4}")),
            profile.join(", "),
        );
    }
    s += "</tbody>\n</table>\n";
    s
}

/// The page as text.
pub fn html(report: &Report, rows: &[Row]) -> String {
    let stats = &report.statistics;
    let cfg = &stats.config;
    let rate = report.rate;
    let significant = rows.iter().filter(|r| r.significant).count();
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>neuralign report: {session}</title>\n\
<style>body{{font-family:sans-serif;max-width:72em;margin:1em auto;padding:0 1em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}td:first-child,td:nth-child(2){{text-align:left}}tr.sig td{{background:#fde8e8}}img{{max-width:100%}}</style>\n\
</head>\n<body>\n<h1>neuralign report</h1>\n<p>Session <code>{session}</code>, encoders <code>{encoders}</code>, model <code>{model}</code> ({layers} layers; sha256 <code>{sha}</code>), high-gamma at {rate} Hz.</p>\n\
<p id=\"source\" data-path=\"{path}\">{source}</p>\n\
<p><strong>{significant} of {total}</strong> electrodes are significant (Benjamini–Hochberg q ≤ {fdr}).</p>\n",
        session = esc(&report.session),
        encoders = esc(&report.encoders),
        model = esc(&report.model.name),
        layers = report.model_layers,
        sha = esc(&report.model.sha256),
        path = report.source.path(),
        source = esc(&source_sentence(report)),
        total = rows.len(),
        fdr = cfg.fdr_q,
    );
    let _ = write!(
        s,
        "<h2>Layer profiles</h2>\n<p>Held-out r per layer of every significant electrode (thin) and their mean (thick), against relative layer depth <code>layer / {}</code>.</p>\n<p><img src=\"{}\" alt=\"layer profiles\"/></p>\n\
<h2>Peak layers</h2>\n<p><img src=\"{}\" alt=\"peak layers\"/></p>\n\
<h2>r against the null</h2>\n<p>Per electrode: r at the peak layer (dot; red when significant), the central {}&#160;% band of the null r at that layer (grey) and the {} quantile of the null of the maximum over layers (black tick): the statistic reported is the maximum over layers, so its null is too.</p>\n<p><img src=\"{}\" alt=\"r against the null\"/></p>\n",
        report.model_layers.max(2) - 1,
        plots::PROFILES,
        plots::PEAK_LAYERS,
        cfg.ci_level * 100.0,
        1.0 - cfg.fdr_q,
        plots::NULL,
    );
    if let Some(rec) = &report.recording {
        s += &recording_section(report, rec);
    }
    let _ = write!(
        s,
        "<h2>Electrodes</h2>\n<p>Also as <a href=\"{TABLE}\">{TABLE}</a> (tab-separated).</p>\n<table>\n<thead><tr><th>label</th><th>group</th><th>peak layer</th><th>interval</th><th>r</th><th>p</th><th>q</th><th>significant</th></tr></thead>\n<tbody>\n"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}–{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
            if r.significant { " class=\"sig\"" } else { "" },
            esc(&r.label),
            esc(&r.group),
            r.peak_layer,
            r.peak_layer_ci[0],
            r.peak_layer_ci[1],
            r.r,
            r.p,
            r.q,
            if r.significant { "yes" } else { "no" },
        );
    }
    s += "</tbody>\n</table>\n";
    let min_shift = (cfg.min_shift_s * rate).round();
    let block = (cfg.block_s * rate).round();
    let live = stats.live.as_ref().map_or(
        "no live threshold (the span is shorter than a live window)".to_string(),
        |l| {
            format!(
                "live thresholds: the {} quantile of the rolling r's null (window {} samples, window ends every {} samples, the first {} shifts, {} values per electrode)",
                1.0 - l.alpha,
                l.window,
                l.stride,
                l.shifts,
                l.null_values
            )
        },
    );
    let _ = write!(
        s,
        "<h2 id=\"how\">How these figures were computed</h2>\n<p>The procedure is in <a href=\"{PROCEDURE}\">{PROCEDURE}</a> (a copy of <code>docs/statistics.md</code> of this build); the settings of this report:</p>\n<ul>\n\
<li><strong>Cross-validation</strong> (§1 Cross-validation): encoders fit with {folds} inner folds, PCA and scaling inside each training fold, a purge gap of {gap} samples ({gap_s} s, one lag window) between folds and before the held-out tail; alpha chosen in the inner folds.</li>\n\
<li><strong>Null distribution</strong> (§2 Null distribution): {shifts} circular shifts of the high-gamma against the prediction, drawn uniformly from [{min_shift}, n − {min_shift}] samples (at least {min_shift_s} s) by ChaCha8 with seed {seed}, the same shifts for every layer; the statistic is the maximum of r over the {n_layers} layers; p = (1 + #{{null ≥ observed}}) / (1 + {shifts}).</li>\n\
<li><strong>False discovery rate</strong> (§2): Benjamini–Hochberg over the {total} electrodes; significant when q ≤ {fdr}.</li>\n\
<li><strong>Peak-layer interval</strong> (§3 Peak-layer interval): block bootstrap, {boot} replicates of {block}-sample blocks ({block_s} s), seed {seed}, central {ci} % of the replicate peak layers.</li>\n\
<li><strong>Live</strong> (§5 Live significance): {live}.</li>\n\
<li>Samples evaluated: {n} (n above); rate {rate} Hz.</li>\n</ul>\n</body>\n</html>\n",
        folds = report.folds,
        gap = stats.gap_samples,
        gap_s = stats.gap_samples as f64 / rate,
        shifts = cfg.shifts,
        min_shift = min_shift,
        min_shift_s = cfg.min_shift_s,
        seed = cfg.seed,
        n_layers = stats.layers.len(),
        total = rows.len(),
        fdr = cfg.fdr_q,
        boot = cfg.bootstrap,
        block = block,
        block_s = cfg.block_s,
        ci = cfg.ci_level * 100.0,
        live = esc(&live),
        n = stats.test_samples,
    );
    s
}

/// Writes the page, the table, the figures and the procedure into `dir`.
pub fn write_all(report: &Report, rows: &[Row], dir: &Path) -> Result<(), ReportError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ReportError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    super::table::write(&dir.join(TABLE), rows)?;
    plots::draw_all(report, dir)?;
    let procedure = dir.join(PROCEDURE);
    std::fs::write(&procedure, STATISTICS_MD).map_err(io(&procedure))?;
    let index = dir.join(INDEX);
    std::fs::write(&index, html(report, rows)).map_err(io(&index))
}
