//! `neuralign compare`: several language models fit on the same session and the same folds,
//! compared as Mischler et al. 2024 compare them: per model the brain score (mean held-out r
//! at each electrode's peak layer over the electrodes some model finds significant, with a
//! bootstrap interval over electrodes), its difference from the best model (paired
//! bootstrap), the layer profile against relative depth and the peak relative depth; written
//! as `compare.json`, `models.tsv`, SVG figures and an HTML page (`docs/statistics.md`, §7).
use super::page::esc;
use super::plots::{canvas, draw_legend, plot_error, relative_depth, y_range};
use super::ReportError;
use crate::stats::{central_interval as interval, mean, FitStatistics};
use plotters::prelude::*;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// The page's file name.
pub const INDEX: &str = "index.html";
/// One line per model.
pub const TABLE: &str = "models.tsv";
/// Everything, as JSON.
pub const JSON: &str = "compare.json";
/// Brain score per model with its interval.
pub const SCORES: &str = "brain_scores.svg";
/// Peak relative depth against brain score.
pub const DEPTH: &str = "depth_vs_score.svg";
/// Mean layer profile per model against relative depth.
pub const PROFILES: &str = "profiles.svg";

/// One model's fit on the session.
#[derive(Debug, Clone)]
pub struct ModelFit {
    /// How the model was chosen (`--models`).
    pub name: String,
    /// sha256 of its file.
    pub sha256: String,
    /// Its hidden states per word (embedding output included).
    pub model_layers: usize,
    /// The encoder file written for it.
    pub encoders: String,
    /// The fit's statistics, per electrode in session order.
    pub statistics: FitStatistics,
}

/// How the comparison is computed.
#[derive(Debug, Clone, Serialize)]
pub struct CompareConfig {
    /// Bootstrap replicates over electrodes.
    pub replicates: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// Central coverage of the intervals.
    pub ci_level: f64,
    /// A difference is significant when its two-sided bootstrap p is at most this.
    pub alpha: f64,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            replicates: 2000,
            seed: 0,
            ci_level: 0.95,
            alpha: 0.05,
        }
    }
}

/// One model's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ModelScore {
    /// The model as chosen.
    pub model: String,
    /// sha256 of its file.
    pub sha256: String,
    /// Its hidden states per word.
    pub model_layers: usize,
    /// Its encoder file.
    pub encoders: String,
    /// 1 for the highest brain score.
    pub rank: usize,
    /// Electrodes significant under this model (q ≤ the fit's FDR level).
    pub significant: usize,
    /// Mean over the compared electrodes of the held-out r at each one's peak layer.
    pub brain_score: f64,
    /// Its bootstrap interval over electrodes.
    pub brain_score_ci: [f64; 2],
    /// Mean relative depth (`layer / (model_layers − 1)`) of the peak layers of this model's
    /// significant electrodes; none when it has none.
    pub peak_relative_depth: Option<f64>,
    /// Its bootstrap interval over those electrodes.
    pub peak_relative_depth_ci: Option<[f64; 2]>,
    /// Relative depth of each fitted layer.
    pub relative_depths: Vec<f64>,
    /// Mean held-out r per fitted layer over the compared electrodes.
    pub profile: Vec<f64>,
}

/// The best model's brain score against another's, paired over the same electrodes.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// The best model.
    pub model: String,
    /// The model it is compared with.
    pub against: String,
    /// Brain score of `model` minus that of `against`.
    pub difference: f64,
    /// Paired bootstrap interval of the difference.
    pub ci: [f64; 2],
    /// Two-sided bootstrap p of the difference being 0.
    pub p: f64,
    /// `p ≤ alpha`.
    pub significant: bool,
}

/// The comparison of every model on one session.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The session file.
    pub session: String,
    /// How the comparison was computed.
    pub config: CompareConfig,
    /// Labels of the electrodes the brain scores average over.
    pub electrodes: Vec<String>,
    /// Which electrodes those are, in words.
    pub electrode_rule: String,
    /// Per model, best brain score first.
    pub models: Vec<ModelScore>,
    /// The best model against each other one.
    pub differences: Vec<Difference>,
}

/// Bootstrap replicates of `stat` over `items` resampled with replacement (`replicates`
/// draws of `items.len()` indices each, from `rng`).
fn bootstrap<R: Rng>(
    rng: &mut R,
    items: usize,
    replicates: usize,
    mut stat: impl FnMut(&[usize]) -> Vec<f64>,
) -> Vec<Vec<f64>> {
    let mut draw = vec![0usize; items];
    (0..replicates)
        .map(|_| {
            draw.iter_mut().for_each(|d| *d = rng.gen_range(0..items));
            stat(&draw)
        })
        .collect()
}

/// Compares the fits of `session` (the same electrodes, in the same order).
pub fn compare(
    session: &str,
    fits: &[ModelFit],
    config: &CompareConfig,
) -> Result<Comparison, ReportError> {
    let Some(first) = fits.first() else {
        return Err(ReportError::Compare("no model to compare".into()));
    };
    let labels: Vec<&str> = (first.statistics.electrodes.iter())
        .map(|e| e.label.as_str())
        .collect();
    for f in fits {
        let theirs: Vec<&str> = f
            .statistics
            .electrodes
            .iter()
            .map(|e| e.label.as_str())
            .collect();
        if theirs != labels {
            return Err(ReportError::Compare(format!(
                "{} was fit on electrodes {theirs:?}, {} on {labels:?}: not the same session",
                f.name, first.name
            )));
        }
    }
    let any_significant: Vec<usize> = (0..labels.len())
        .filter(|&k| fits.iter().any(|f| f.statistics.electrodes[k].significant))
        .collect();
    let (set, electrode_rule) = if any_significant.is_empty() {
        (
            (0..labels.len()).collect::<Vec<_>>(),
            "every electrode (none is significant under any model)".to_string(),
        )
    } else {
        (
            any_significant,
            "the electrodes significant under at least one model (the same set for every model)"
                .to_string(),
        )
    };
    // r[m][k]: model m's held-out r at electrode k's peak layer
    let r: Vec<Vec<f64>> = (fits.iter())
        .map(|f| f.statistics.electrodes.iter().map(|e| e.r).collect())
        .collect();
    let score = |m: usize, draw: &[usize]| mean(draw.iter().map(|&i| r[m][set[i]]));
    let all: Vec<usize> = (0..set.len()).collect();
    let scores: Vec<f64> = (0..fits.len()).map(|m| score(m, &all)).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
    // replicate × model, the same electrode draws for every model (paired)
    let replicates = bootstrap(&mut rng, set.len(), config.replicates, |draw| {
        (0..fits.len()).map(|m| score(m, draw)).collect()
    });
    let of_model = |m: usize| replicates.iter().map(|b| b[m]).collect::<Vec<f64>>();

    let mut models: Vec<ModelScore> = fits
        .iter()
        .enumerate()
        .map(|(m, f)| {
            let stats = &f.statistics;
            let depths: Vec<f64> = (stats.electrodes.iter())
                .filter(|e| e.significant)
                .map(|e| relative_depth(e.peak_layer, f.model_layers))
                .collect();
            let (peak_relative_depth, peak_relative_depth_ci) = if depths.is_empty() {
                (None, None)
            } else {
                let reps: Vec<f64> = bootstrap(&mut rng, depths.len(), config.replicates, |draw| {
                    vec![mean(draw.iter().map(|&i| depths[i]))]
                })
                .into_iter()
                .map(|b| b[0])
                .collect();
                (
                    Some(mean(depths.iter().copied())),
                    Some(interval(&reps, config.ci_level)),
                )
            };
            ModelScore {
                model: f.name.clone(),
                sha256: f.sha256.clone(),
                model_layers: f.model_layers,
                encoders: f.encoders.clone(),
                rank: 0,
                significant: stats.electrodes.iter().filter(|e| e.significant).count(),
                brain_score: scores[m],
                brain_score_ci: interval(&of_model(m), config.ci_level),
                peak_relative_depth,
                peak_relative_depth_ci,
                relative_depths: (stats.layers.iter())
                    .map(|&l| relative_depth(l, f.model_layers))
                    .collect(),
                profile: (0..stats.layers.len())
                    .map(|j| mean(set.iter().map(|&k| stats.electrodes[k].profile[j])))
                    .collect(),
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..fits.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    for (rank, &m) in order.iter().enumerate() {
        models[m].rank = rank + 1;
    }
    let best = order[0];
    let differences = order[1..]
        .iter()
        .map(|&m| {
            let diffs: Vec<f64> = replicates.iter().map(|b| b[best] - b[m]).collect();
            let below = diffs.iter().filter(|&&d| d <= 0.0).count();
            let above = diffs.iter().filter(|&&d| d >= 0.0).count();
            let n = diffs.len() as f64;
            let p = (2.0 * (below.min(above) as f64 + 1.0) / (n + 1.0)).min(1.0);
            Difference {
                model: fits[best].name.clone(),
                against: fits[m].name.clone(),
                difference: scores[best] - scores[m],
                ci: interval(&diffs, config.ci_level),
                p,
                significant: p <= config.alpha,
            }
        })
        .collect();
    let models = order.iter().map(|&m| models[m].clone()).collect();
    Ok(Comparison {
        session: session.to_string(),
        config: config.clone(),
        electrodes: set.iter().map(|&k| labels[k].to_string()).collect(),
        electrode_rule,
        models,
        differences,
    })
}

/// `models.tsv`: one line per model, best first.
pub fn tsv(c: &Comparison) -> String {
    let mut s = String::from(
        "model\trank\tbrain_score\tci_lo\tci_hi\tsignificant\tpeak_relative_depth\tdepth_ci_lo\tdepth_ci_hi\tmodel_layers\tsha256\n",
    );
    let opt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.6}"));
    for m in &c.models {
        let ci = m.peak_relative_depth_ci;
        let _ = writeln!(
            s,
            "{}\t{}\t{:.6}\t{:.6}\t{:.6}\t{}\t{}\t{}\t{}\t{}\t{}",
            m.model,
            m.rank,
            m.brain_score,
            m.brain_score_ci[0],
            m.brain_score_ci[1],
            m.significant,
            opt(m.peak_relative_depth),
            opt(ci.map(|c| c[0])),
            opt(ci.map(|c| c[1])),
            m.model_layers,
            m.sha256
        );
    }
    s
}

/// A colour per model (the first eight of matplotlib's tab10).
fn colour(m: usize) -> RGBColor {
    const COLOURS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    COLOURS[m % COLOURS.len()]
}

/// Brain score per model (a dot) with its interval (a bar).
fn scores(c: &Comparison, path: &Path) -> Result<(), String> {
    let n = c.models.len();
    let root = canvas(path, (800, 450))?;
    let values = (c.models.iter()).flat_map(|m| [m.brain_score_ci[0], m.brain_score_ci[1]]);
    let names: Vec<&str> = c.models.iter().map(|m| m.model.as_str()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "brain score: mean held-out r over {} electrodes, {} % interval",
                c.electrodes.len(),
                c.config.ci_level * 100.0
            ),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..n as f64 - 0.5, y_range(values))
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let k = x.round();
            if (x - k).abs() < 1e-6 && k >= 0.0 {
                names.get(k as usize).copied().unwrap_or("").to_string()
            } else {
                String::new()
            }
        })
        .y_desc("brain score (r)")
        .draw()
        .map_err(plot_error)?;
    for (i, m) in c.models.iter().enumerate() {
        let x = i as f64;
        let style = colour(i).stroke_width(3);
        chart
            .draw_series([
                PathElement::new(
                    vec![(x, m.brain_score_ci[0]), (x, m.brain_score_ci[1])],
                    style,
                ),
                PathElement::new(
                    vec![
                        (x - 0.1, m.brain_score_ci[0]),
                        (x + 0.1, m.brain_score_ci[0]),
                    ],
                    style,
                ),
                PathElement::new(
                    vec![
                        (x - 0.1, m.brain_score_ci[1]),
                        (x + 0.1, m.brain_score_ci[1]),
                    ],
                    style,
                ),
            ])
            .map_err(plot_error)?;
        chart
            .draw_series([Circle::new((x, m.brain_score), 6, colour(i).filled())])
            .map_err(plot_error)?;
    }
    root.present().map_err(plot_error)
}

/// Peak relative depth against brain score, one cross of intervals per model.
fn depth(c: &Comparison, path: &Path) -> Result<(), String> {
    let root = canvas(path, (800, 500))?;
    let values = (c.models.iter()).flat_map(|m| [m.brain_score_ci[0], m.brain_score_ci[1]]);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "peak relative depth against brain score",
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(y_range(values), 0.0..1.0)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("brain score (r)")
        .y_desc("peak relative depth (significant electrodes)")
        .draw()
        .map_err(plot_error)?;
    for (i, m) in c.models.iter().enumerate() {
        let (Some(d), Some([lo, hi])) = (m.peak_relative_depth, m.peak_relative_depth_ci) else {
            continue;
        };
        let style = colour(i).stroke_width(2);
        let [blo, bhi] = m.brain_score_ci;
        chart
            .draw_series([
                PathElement::new(vec![(m.brain_score, lo), (m.brain_score, hi)], style),
                PathElement::new(vec![(blo, d), (bhi, d)], style),
            ])
            .map_err(plot_error)?;
        chart
            .draw_series([Circle::new((m.brain_score, d), 6, colour(i).filled())])
            .map_err(plot_error)?
            .label(m.model.clone())
            .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour(i).filled()));
    }
    draw_legend(&mut chart)?;
    root.present().map_err(plot_error)
}

/// Mean layer profile per model against relative depth.
fn profiles(c: &Comparison, path: &Path) -> Result<(), String> {
    let root = canvas(path, (800, 500))?;
    let values = c.models.iter().flat_map(|m| m.profile.iter().copied());
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("mean layer profile over {} electrodes", c.electrodes.len()),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..1.0, y_range(values))
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("relative layer depth")
        .y_desc("held-out r")
        .draw()
        .map_err(plot_error)?;
    for (i, m) in c.models.iter().enumerate() {
        let points = m
            .relative_depths
            .iter()
            .copied()
            .zip(m.profile.iter().copied());
        chart
            .draw_series(LineSeries::new(points, colour(i).stroke_width(2)))
            .map_err(plot_error)?
            .label(m.model.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour(i).stroke_width(2))
            });
    }
    draw_legend(&mut chart)?;
    root.present().map_err(plot_error)
}

/// The page as text.
pub fn html(c: &Comparison) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>neuralign compare: {session}</title>\n\
<style>body{{font-family:sans-serif;max-width:72em;margin:1em auto;padding:0 1em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}td:first-child{{text-align:left}}img{{max-width:100%}}</style>\n\
</head>\n<body>\n<h1>neuralign compare</h1>\n<p>Session <code>{session}</code>: {n} models fit on the same samples and the same folds; brain scores over {e} electrodes, {rule}.</p>\n",
        session = esc(&c.session),
        n = c.models.len(),
        e = c.electrodes.len(),
        rule = esc(&c.electrode_rule),
    );
    s += "<table id=\"models\">\n<thead><tr><th>model</th><th>rank</th><th>brain score</th><th>interval</th><th>significant electrodes</th><th>peak relative depth</th><th>interval</th><th>layers</th></tr></thead>\n<tbody>\n";
    for m in &c.models {
        let depth = m
            .peak_relative_depth
            .map_or("n/a".into(), |d| format!("{d:.3}"));
        let depth_ci = m
            .peak_relative_depth_ci
            .map_or("n/a".into(), |[lo, hi]| format!("{lo:.3}–{hi:.3}"));
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4}–{:.4}</td><td>{}</td><td>{depth}</td><td>{depth_ci}</td><td>{}</td></tr>",
            esc(&m.model),
            m.rank,
            m.brain_score,
            m.brain_score_ci[0],
            m.brain_score_ci[1],
            m.significant,
            m.model_layers
        );
    }
    s += "</tbody>\n</table>\n<h2>Differences</h2>\n<ul id=\"differences\">\n";
    for d in &c.differences {
        let _ = writeln!(
            s,
            "<li>{} − {}: {:+.4} ({:.4} to {:.4}), p = {:.4}{}</li>",
            esc(&d.model),
            esc(&d.against),
            d.difference,
            d.ci[0],
            d.ci[1],
            d.p,
            if d.significant { ", significant" } else { "" }
        );
    }
    let cfg = &c.config;
    let _ = write!(
        s,
        "</ul>\n<h2>Brain scores</h2>\n<p><img src=\"{SCORES}\" alt=\"brain scores\"/></p>\n\
<h2>Peak relative depth against brain score</h2>\n<p><img src=\"{DEPTH}\" alt=\"peak relative depth against brain score\"/></p>\n\
<h2>Layer profiles</h2>\n<p><img src=\"{PROFILES}\" alt=\"layer profiles\"/></p>\n\
<h2 id=\"how\">How these figures were computed</h2>\n<ul>\n\
<li>Each model embeds the transcript and is fit by <code>neuralign fit</code>'s procedure with the same settings: the same samples, inner folds, purge gap, held-out tail, shifts and seed.</li>\n\
<li>Brain score: the mean over the electrodes above of each electrode's held-out r at its peak layer. Intervals: {level} % percentile bootstrap over electrodes, {reps} replicates, ChaCha8 seed {seed}; differences are paired (the same electrode draws for both models), p = 2 · (1 + #replicates on the other side of 0) / (1 + {reps}); significant when p ≤ {alpha}.</li>\n\
<li>Peak relative depth: the mean of <code>peak layer / (layers − 1)</code> over the electrodes significant under that model, bootstrapped over those electrodes.</li>\n\
<li>Also as <a href=\"{TABLE}\">{TABLE}</a> and <a href=\"{JSON}\">{JSON}</a>.</li>\n</ul>\n</body>\n</html>\n",
        level = cfg.ci_level * 100.0,
        reps = cfg.replicates,
        seed = cfg.seed,
        alpha = cfg.alpha,
    );
    s
}

/// Writes the page, the table, the JSON and the figures into `dir`.
pub fn write_all(c: &Comparison, dir: &Path) -> Result<(), ReportError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ReportError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let draw = |file: &str, f: fn(&Comparison, &Path) -> Result<(), String>| {
        f(c, &dir.join(file)).map_err(|reason| ReportError::Plot {
            file: file.to_string(),
            reason,
        })
    };
    draw(SCORES, scores)?;
    draw(DEPTH, depth)?;
    draw(PROFILES, profiles)?;
    let json = serde_json::to_string_pretty(c).expect("the comparison serializes");
    for (file, text) in [(JSON, json), (TABLE, tsv(c)), (INDEX, html(c))] {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ElectrodeResult, StatsConfig};

    /// A fit whose electrode k has held-out r `r[k]` at peak layer `peak[k]`, significant
    /// where `significant[k]`; profiles flat at r.
    fn fit(
        name: &str,
        model_layers: usize,
        r: &[f64],
        peak: &[usize],
        significant: &[bool],
    ) -> ModelFit {
        let layers: Vec<usize> = (0..model_layers).collect();
        let electrodes = (0..r.len())
            .map(|k| ElectrodeResult {
                label: format!("E{k}"),
                peak_layer: peak[k],
                peak_layer_ci: [peak[k]; 2],
                r: r[k],
                p: 0.5,
                q: 0.5,
                significant: significant[k],
                profile: vec![r[k]; model_layers],
                null_band: vec![[0.0; 2]; model_layers],
                null_max_quantile: 0.0,
                live_threshold: None,
            })
            .collect();
        ModelFit {
            name: name.into(),
            sha256: String::new(),
            model_layers,
            encoders: String::new(),
            statistics: FitStatistics {
                config: StatsConfig::default(),
                layers,
                test_samples: 0,
                gap_samples: 0,
                electrodes,
                live: None,
            },
        }
    }

    #[test]
    fn brain_scores_average_the_same_electrodes_and_rank_the_models() {
        // electrodes 0–3 significant under the trained model only, 4–5 under neither
        let trained = fit(
            "trained",
            31,
            &[0.20, 0.25, 0.15, 0.30, 0.01, -0.02],
            &[15, 18, 12, 21, 0, 30],
            &[true, true, true, true, false, false],
        );
        let control = fit(
            "control",
            31,
            &[0.05, 0.04, 0.06, 0.02, 0.03, 0.00],
            &[1, 0, 2, 30, 5, 6],
            &[false; 6],
        );
        let c = compare("s.xdf", &[control, trained], &CompareConfig::default()).unwrap();
        assert_eq!(c.electrodes, ["E0", "E1", "E2", "E3"]);
        let (best, other) = (&c.models[0], &c.models[1]);
        assert_eq!(
            (best.model.as_str(), best.rank, other.rank),
            ("trained", 1, 2)
        );
        assert!((best.brain_score - 0.225).abs() < 1e-12);
        assert!((other.brain_score - 0.0425).abs() < 1e-12);
        assert!(best.brain_score_ci[0] <= 0.225 && 0.225 <= best.brain_score_ci[1]);
        // the depth of the trained model's significant peaks: (15+18+12+21)/4/30
        assert!((best.peak_relative_depth.unwrap() - 0.55).abs() < 1e-12);
        assert_eq!(other.peak_relative_depth, None);
        let d = &c.differences[0];
        assert_eq!(
            (d.model.as_str(), d.against.as_str()),
            ("trained", "control")
        );
        assert!((d.difference - 0.1825).abs() < 1e-12);
        // every electrode favours the trained model: no replicate reaches 0
        assert!(d.ci[0] > 0.0 && d.significant);
        assert!((d.p - 2.0 / 2001.0).abs() < 1e-12, "p {}", d.p);
        assert!(tsv(&c).lines().count() == 3 && html(&c).contains("trained − control"));
    }

    #[test]
    fn models_that_differ_only_by_noise_are_not_called_different() {
        let r1 = [0.10, 0.20, 0.05, 0.15, 0.12, 0.08, 0.11, 0.09];
        let r2 = [0.12, 0.18, 0.07, 0.13, 0.10, 0.10, 0.09, 0.11];
        let sig = [true; 8];
        let a = fit("a", 31, &r1, &[10; 8], &sig);
        let b = fit("b", 19, &r2, &[6; 8], &sig);
        let c = compare("s.xdf", &[a, b], &CompareConfig::default()).unwrap();
        assert!(!c.differences[0].significant, "{:?}", c.differences[0]);
        assert!(c.differences[0].ci[0] < 0.0 && c.differences[0].ci[1] > 0.0);
        // relative depth is per model: layer 10 of 31, layer 6 of 19
        let depth = |name: &str| {
            c.models
                .iter()
                .find(|m| m.model == name)
                .unwrap()
                .peak_relative_depth
        };
        assert_eq!(depth("a"), Some(10.0 / 30.0));
        assert_eq!(depth("b"), Some(6.0 / 18.0));
    }

    #[test]
    fn fits_of_other_electrodes_are_refused() {
        let a = fit("a", 3, &[0.1, 0.2], &[0, 1], &[true, true]);
        let mut b = fit("b", 3, &[0.1, 0.2], &[0, 1], &[true, true]);
        b.statistics.electrodes[1].label = "X9".into();
        let err = compare("s.xdf", &[a, b], &CompareConfig::default()).unwrap_err();
        assert!(err.to_string().contains("not the same session"), "{err}");
    }
}
