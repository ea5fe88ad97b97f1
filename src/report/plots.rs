//! The report's figures, drawn as SVG with plotters: the layer profiles of the
//! significant electrodes and their average against relative layer depth (the
//! central figure of Mischler et al. 2024), the distribution of peak layers, and
//! each electrode's r against its null.
use super::{Report, ReportError};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use std::path::Path;

/// File names of the figures, as the page links them.
pub const PROFILES: &str = "profiles.svg";
/// The distribution of peak layers.
pub const PEAK_LAYERS: &str = "peak_layers.svg";
/// Each electrode's r against its null.
pub const NULL: &str = "null.svg";
/// The live r at the peak over session time (a recording of `serve` only).
pub const LIVE: &str = "live.svg";
/// Electrodes drawn in [`LIVE`]: the ones most often significant live.
const LIVE_SHOWN: usize = 6;

/// Colour of significant electrodes.
const SIGNIFICANT: RGBColor = RGBColor(200, 40, 40);

/// Draws every figure into `dir`.
pub fn draw_all(report: &Report, dir: &Path) -> Result<(), ReportError> {
    let draw = |file: &str, f: fn(&Report, &Path) -> Result<(), String>| {
        f(report, &dir.join(file)).map_err(|reason| ReportError::Plot {
            file: file.to_string(),
            reason,
        })
    };
    draw(PROFILES, profiles)?;
    draw(PEAK_LAYERS, peak_layers)?;
    draw(NULL, null)?;
    if report.recording.is_some() {
        draw(LIVE, live)?;
    }
    Ok(())
}

pub(super) fn plot_error<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// A white SVG drawing area of `size` pixels writing to `path`.
pub(super) fn canvas(
    path: &Path,
    size: (u32, u32),
) -> Result<DrawingArea<SVGBackend<'_>, Shift>, String> {
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    Ok(root)
}

/// Draws the legend of `chart`'s labelled series (a white box, top right).
pub(super) fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}

/// Relative depth of a model layer: `layer / (model_layers − 1)`.
pub fn relative_depth(layer: usize, model_layers: usize) -> f64 {
    layer as f64 / (model_layers.max(2) - 1) as f64
}

/// The average profile of the significant electrodes (empty when none is).
pub fn mean_significant_profile(report: &Report) -> Vec<f64> {
    let significant: Vec<&Vec<f64>> = report
        .statistics
        .electrodes
        .iter()
        .filter(|e| e.significant)
        .map(|e| &e.profile)
        .collect();
    let layers = report.statistics.layers.len();
    if significant.is_empty() {
        return Vec::new();
    }
    (0..layers)
        .map(|l| significant.iter().map(|p| p[l]).sum::<f64>() / significant.len() as f64)
        .collect()
}

/// A y range holding `values` with a margin (and zero).
pub(super) fn y_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let pad = ((hi - lo) * 0.08).max(0.01);
    (lo - pad)..(hi + pad)
}

/// Layer profiles of the significant electrodes and their average.
fn profiles(report: &Report, path: &Path) -> Result<(), String> {
    let stats = &report.statistics;
    let x: Vec<f64> = stats
        .layers
        .iter()
        .map(|&l| relative_depth(l, report.model_layers))
        .collect();
    let significant: Vec<_> = stats.electrodes.iter().filter(|e| e.significant).collect();
    let mean = mean_significant_profile(report);
    let root = canvas(path, (800, 500))?;
    let caption = format!(
        "layer profiles: {} significant of {} electrodes (q ≤ {}), and their mean",
        significant.len(),
        stats.electrodes.len(),
        stats.config.fdr_q
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            0.0..1.0,
            y_range(significant.iter().flat_map(|e| e.profile.iter().copied())),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "relative layer depth (layer / {})",
            report.model_layers.max(2) - 1
        ))
        .y_desc("r")
        .draw()
        .map_err(plot_error)?;
    for e in &significant {
        chart
            .draw_series(LineSeries::new(
                x.iter().copied().zip(e.profile.iter().copied()),
                SIGNIFICANT.mix(0.35),
            ))
            .map_err(plot_error)?;
    }
    if !mean.is_empty() {
        chart
            .draw_series(LineSeries::new(
                x.iter().copied().zip(mean.iter().copied()),
                BLACK.stroke_width(3),
            ))
            .map_err(plot_error)?
            .label("mean of the significant electrodes")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(3)));
        draw_legend(&mut chart)?;
    }
    root.present().map_err(plot_error)
}

/// Peak layers of every electrode and of the significant ones.
fn peak_layers(report: &Report, path: &Path) -> Result<(), String> {
    let stats = &report.statistics;
    let n = report.model_layers.max(1);
    let mut all = vec![0u32; n];
    let mut significant = vec![0u32; n];
    for e in &stats.electrodes {
        let l = e.peak_layer.min(n - 1);
        all[l] += 1;
        significant[l] += u32::from(e.significant);
    }
    let top = all.iter().copied().max().unwrap_or(0).max(1);
    let root = canvas(path, (800, 400))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("peak layers", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5..n as f64 - 0.5, 0u32..top + 1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("model layer")
        .y_desc("electrodes")
        .draw()
        .map_err(plot_error)?;
    let bars = |counts: &[u32], colour: RGBAColor| {
        counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(move |(l, &c)| {
                Rectangle::new([(l as f64 - 0.4, 0), (l as f64 + 0.4, c)], colour.filled())
            })
            .collect::<Vec<_>>()
    };
    chart
        .draw_series(bars(&all, BLACK.mix(0.2)))
        .map_err(plot_error)?
        .label("all electrodes")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], BLACK.mix(0.2).filled()));
    chart
        .draw_series(bars(&significant, SIGNIFICANT.mix(0.9)))
        .map_err(plot_error)?
        .label("significant")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], SIGNIFICANT.filled()));
    draw_legend(&mut chart)?;
    root.present().map_err(plot_error)
}

/// Per electrode: r at the peak (a dot, red when significant), the null band at
/// the peak layer (grey bar) and the 1 − fdr_q quantile of the null maximum over
/// layers (black tick).
fn null(report: &Report, path: &Path) -> Result<(), String> {
    let stats = &report.statistics;
    let e = stats.electrodes.len();
    let band_at_peak = |k: usize| {
        let el = &stats.electrodes[k];
        let i = stats.layers.iter().position(|&l| l == el.peak_layer);
        i.map_or([f64::NAN; 2], |i| el.null_band[i])
    };
    let values = stats.electrodes.iter().enumerate().flat_map(|(k, el)| {
        let [lo, hi] = band_at_peak(k);
        [el.r, el.null_max_quantile, lo, hi]
    });
    let width = (200 + 14 * e as u32).clamp(800, 4000);
    let root = canvas(path, (width, 450))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "r at the peak layer against the null ({} circular shifts)",
                stats.config.shifts
            ),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..e as f64 - 0.5, y_range(values))
        .map_err(plot_error)?;
    let labels: Vec<&str> = stats.electrodes.iter().map(|e| e.label.as_str()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(e.min(64))
        .x_label_formatter(&|x| {
            let k = x.round();
            if (x - k).abs() < 1e-6 && k >= 0.0 {
                labels.get(k as usize).copied().unwrap_or("").to_string()
            } else {
                String::new()
            }
        })
        .x_desc("electrode")
        .y_desc("r")
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series((0..e).map(|k| {
            let [lo, hi] = band_at_peak(k);
            let x = k as f64;
            Rectangle::new([(x - 0.3, lo), (x + 0.3, hi)], BLACK.mix(0.15).filled())
        }))
        .map_err(plot_error)?
        .label("null band at the peak layer")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], BLACK.mix(0.15).filled()));
    chart
        .draw_series(stats.electrodes.iter().enumerate().map(|(k, el)| {
            let x = k as f64;
            PathElement::new(
                vec![
                    (x - 0.4, el.null_max_quantile),
                    (x + 0.4, el.null_max_quantile),
                ],
                BLACK.stroke_width(2),
            )
        }))
        .map_err(plot_error)?
        .label(format!(
            "{} quantile of the null maximum over layers",
            1.0 - stats.config.fdr_q
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK.stroke_width(2)));
    chart
        .draw_series(stats.electrodes.iter().enumerate().map(|(k, el)| {
            let colour = if el.significant {
                SIGNIFICANT.filled()
            } else {
                BLACK.mix(0.5).filled()
            };
            Circle::new((k as f64, el.r), 4, colour)
        }))
        .map_err(plot_error)?
        .label("r at the peak (red: significant)")
        .legend(|(x, y)| Circle::new((x + 7, y), 4, SIGNIFICANT.filled()));
    draw_legend(&mut chart)?;
    root.present().map_err(plot_error)
}

/// The saved r at the peak over session time of the [`LIVE_SHOWN`] electrodes most often
/// significant live (then highest mean profile), each with its live threshold (dashed).
fn live(report: &Report, path: &Path) -> Result<(), String> {
    let Some(rec) = &report.recording else {
        return Ok(());
    };
    let series = &rec.peak_r;
    let start = series.stamps.first().copied().unwrap_or(0.0);
    let end = series
        .stamps
        .last()
        .copied()
        .unwrap_or(start)
        .max(start + 1.0);
    let best = |k: usize| {
        let e = &rec.electrodes[k];
        let top = e.profile.iter().copied().filter(|v| v.is_finite());
        (
            e.share_significant.unwrap_or(0.0),
            top.fold(f64::MIN, f64::max),
        )
    };
    let mut shown: Vec<usize> = (0..rec.electrodes.len()).collect();
    shown.sort_by(|&a, &b| {
        best(b)
            .partial_cmp(&best(a))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    shown.truncate(LIVE_SHOWN);
    let values = shown.iter().flat_map(|&k| {
        let threshold = rec.electrodes[k].threshold;
        (0..series.stamps.len())
            .map(move |i| f64::from(series.row(i)[k]))
            .chain(threshold)
    });
    let root = canvas(path, (800, 450))?;
    let caption = format!(
        "live r at the peak layer, {} of {} electrodes, with their live thresholds",
        shown.len(),
        rec.electrodes.len()
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end - start, y_range(values))
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("session time, s (from the first alignment update)")
        .y_desc("rolling r at the peak layer")
        .draw()
        .map_err(plot_error)?;
    for (c, &k) in shown.iter().enumerate() {
        let colour = Palette99::pick(c).to_rgba();
        let points = (0..series.stamps.len())
            .map(|i| (series.stamps[i] - start, f64::from(series.row(i)[k])))
            .filter(|(_, r)| r.is_finite());
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(plot_error)?
            .label(rec.electrodes[k].label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        if let Some(t) = rec.electrodes[k].threshold {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, t), (end - start, t)],
                    6,
                    4,
                    colour.into(),
                ))
                .map_err(plot_error)?;
        }
    }
    draw_legend(&mut chart)?;
    root.present().map_err(plot_error)
}
