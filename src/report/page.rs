//! The report's HTML page (`index.html`): the figures and the table, and
//! exactly how they were computed. Self-contained: relative links to the files
//! beside it only (the figures, the TSV, and a copy of `docs/statistics.md`
//! written next to it), no scripts, no network; well-formed XML.
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
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How the figures were obtained, in one sentence.
pub fn source_sentence(report: &Report) -> String {
    match &report.source {
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
                *samples as f64 / report.rate
            )
        }
    }
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
        path = match report.source {
            Source::Offline { .. } => "offline",
        },
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
