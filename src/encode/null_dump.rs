//! The data behind a fit's circular-shift null, written out for checking
//! against an independent implementation (`tests/python/test_null_numpy.py`):
//! the encoder's prediction of the held-out tail per layer, the z-scored
//! actual high-gamma there, and the shifts the fit drew.
use super::file::{f64_bytes, write_tensors};
use super::{predict_offline, EncodeError, Encoder, Session};
use crate::stats::null::draw_shifts;
use safetensors::Dtype::F64;
use std::path::Path;

/// Writes `pred` `[layers, test samples, electrodes]`, `actual` `[test
/// samples, electrodes]` and `shifts` `[shifts]` (all f64) for the held-out
/// tail of `enc`'s fit on `session`.
pub fn dump_null(session: &Session, enc: &Encoder, path: &Path) -> Result<(), EncodeError> {
    let stats = enc
        .meta
        .statistics
        .as_ref()
        .ok_or_else(|| EncodeError::File {
            path: path.display().to_string(),
            reason: "the encoders carry no statistics".into(),
        })?;
    let (e, n) = (enc.electrodes, session.samples());
    let start = enc.meta.training.train_samples + enc.meta.training.gap_samples;
    let words: Vec<(f64, &[f32])> = session
        .words
        .iter()
        .map(|w| (w.onset, w.embedding.as_slice()))
        .collect();
    let pred: Vec<f64> = predict_offline(enc, &words, session.t0, n)
        .iter()
        .flat_map(|m| (start..n).flat_map(move |t| (0..e).map(move |k| m[(t, k)])))
        .collect();
    let actual: Vec<f64> = session.hg[start * e..]
        .iter()
        .enumerate()
        .map(|(i, &v)| (v - enc.neural_mean[i % e]) as f64 / enc.neural_std[i % e] as f64)
        .collect();
    let min_shift = (stats.config.min_shift_s * enc.meta.grid.rate)
        .round()
        .max(1.0) as usize;
    let shifts: Vec<f64> =
        draw_shifts(n - start, min_shift, stats.config.shifts, stats.config.seed)
            .map_err(|err| EncodeError::NotEnoughData(err.to_string()))?
            .into_iter()
            .map(|s| s as f64)
            .collect();
    let tensors = vec![
        (
            "pred".to_string(),
            vec![enc.layers, n - start, e],
            F64,
            f64_bytes(&pred),
        ),
        (
            "actual".to_string(),
            vec![n - start, e],
            F64,
            f64_bytes(&actual),
        ),
        (
            "shifts".to_string(),
            vec![shifts.len()],
            F64,
            f64_bytes(&shifts),
        ),
    ];
    write_tensors(path, &tensors, Default::default())
}
