//! The encoder file: one safetensors file per model holding every layer's
//! weights, intercepts, PCA basis and normalisation, with a JSON metadata
//! header under the `__metadata__` key `neuralign` (see `docs/encoders.md`).
use super::design::LagGrid;
use super::pca::Pca;
use super::EncodeError;
use crate::stats::FitStatistics;
use faer::Mat;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The language model the encoders were fit on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Model file name, e.g. `SmolLM2-135M-Instruct.Q4_1.gguf`.
    pub name: String,
    /// sha256 of the model file, lowercase hex.
    pub sha256: String,
}

/// How the high-gamma was obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HighGammaMeta {
    /// Source stream name (or file) of the neural data.
    pub source: String,
    /// Band in Hz the envelope was taken over.
    pub band_hz: [f64; 2],
    /// Who extracted it: `"stream"` (arrived as high-gamma) or `"neuralign-dsp"`.
    pub extracted_by: String,
}

/// The training data, for the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingMeta {
    /// Free text: file, streams, duration.
    pub description: String,
    /// Samples used for training (the first ones).
    pub train_samples: usize,
    /// Samples held out at the end for the outer test r.
    pub test_samples: usize,
    /// Words whose onset falls in the training part.
    pub train_words: usize,
    /// Contiguous cross-validation folds.
    pub folds: usize,
    /// Ridge penalties tried.
    pub alphas: Vec<f64>,
    /// Whether `cv_r` is the held-out r (else the cross-validated r; files
    /// from before nested cross-validation).
    pub cv_r_is_holdout: bool,
    /// Purge gap, samples, around every validation fold and before the
    /// held-out tail (0 in files from before nested cross-validation).
    #[serde(default)]
    pub gap_samples: usize,
}

/// The JSON metadata header of an encoder file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderMeta {
    /// The model the embeddings came from.
    pub model: ModelMeta,
    /// Model layer index of each encoder layer (0 = token embedding).
    pub layers: Vec<usize>,
    /// Lag grid (tmin, tmax in seconds, high-gamma rate in Hz).
    pub grid: LagGrid,
    /// Electrode labels, in encoder order.
    pub labels: Vec<String>,
    /// High-gamma settings.
    pub high_gamma: HighGammaMeta,
    /// Training data description.
    pub training: TrainingMeta,
    /// Principal components per layer.
    pub pcs: usize,
    /// Embedding width.
    pub dim: usize,
    /// Null distributions, p, q and peak-layer intervals of the fit (`None`
    /// in files written before they existed: refit to get them).
    #[serde(default)]
    pub statistics: Option<FitStatistics>,
}

/// Fitted encoders for every layer and electrode (shapes in the field docs).
#[derive(Debug, Clone)]
pub struct Encoder {
    /// Metadata header.
    pub meta: EncoderMeta,
    /// Number of encoder layers.
    pub layers: usize,
    /// Number of electrodes.
    pub electrodes: usize,
    /// Number of lags.
    pub lags: usize,
    /// Principal components per layer.
    pub pcs: usize,
    /// Embedding width.
    pub dim: usize,
    /// `[layers, electrodes, lags, pcs]`.
    pub weights: Vec<f32>,
    /// `[layers, electrodes]`, z-scored high-gamma units.
    pub intercepts: Vec<f32>,
    /// `[layers, pcs, dim]`.
    pub pca_components: Vec<f32>,
    /// `[layers, dim]`.
    pub pca_mean: Vec<f32>,
    /// `[layers, pcs]`: component scores are divided by this.
    pub feature_std: Vec<f32>,
    /// `[electrodes]`: high-gamma is z-scored with these before comparing.
    pub neural_mean: Vec<f32>,
    /// `[electrodes]`.
    pub neural_std: Vec<f32>,
    /// `[layers, electrodes]`: held-out (or cross-validated) r.
    pub cv_r: Vec<f32>,
    /// `[layers, electrodes]`: chosen ridge penalty.
    pub alpha: Vec<f32>,
}

/// For each encoder electrode, the index of its channel in the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelMap {
    /// `stream_index[e]` is the stream channel of encoder electrode `e`.
    pub stream_index: Vec<usize>,
}

impl Encoder {
    /// An all-zero encoder of the given shape (unit neural std), to be filled in.
    pub fn zeros(layers: usize, electrodes: usize, lags: usize, pcs: usize, dim: usize) -> Self {
        let grid = LagGrid {
            tmin: 0.0,
            tmax: 0.0,
            rate: 1.0,
        };
        let meta = EncoderMeta {
            model: ModelMeta {
                name: String::new(),
                sha256: String::new(),
            },
            layers: vec![],
            grid,
            labels: vec![],
            high_gamma: HighGammaMeta {
                source: String::new(),
                band_hz: crate::dsp::HIGH_GAMMA_BAND_HZ,
                extracted_by: String::new(),
            },
            training: TrainingMeta {
                description: String::new(),
                train_samples: 0,
                test_samples: 0,
                train_words: 0,
                folds: 0,
                alphas: vec![],
                cv_r_is_holdout: false,
                gap_samples: 0,
            },
            pcs,
            dim,
            statistics: None,
        };
        Self {
            meta,
            layers,
            electrodes,
            lags,
            pcs,
            dim,
            weights: vec![0.0; layers * electrodes * lags * pcs],
            intercepts: vec![0.0; layers * electrodes],
            pca_components: vec![0.0; layers * pcs * dim],
            pca_mean: vec![0.0; layers * dim],
            feature_std: vec![0.0; layers * pcs],
            neural_mean: vec![0.0; electrodes],
            neural_std: vec![1.0; electrodes],
            cv_r: vec![0.0; layers * electrodes],
            alpha: vec![0.0; layers * electrodes],
        }
    }

    /// Stores one layer's fit: `beta` is `[lags·pcs, electrodes]`.
    pub(crate) fn set_layer(
        &mut self,
        l: usize,
        pca: &Pca,
        beta: &Mat<f64>,
        intercept: &[f64],
        r: &[f64],
        alpha: &[f64],
    ) {
        let (e, lp) = (self.electrodes, self.lags * self.pcs);
        for el in 0..e {
            for f in 0..lp {
                self.weights[(l * e + el) * lp + f] = beta[(f, el)] as f32;
            }
            self.intercepts[l * e + el] = intercept[el] as f32;
            self.cv_r[l * e + el] = r[el] as f32;
            self.alpha[l * e + el] = alpha[el] as f32;
        }
        self.pca_components[l * self.pcs * self.dim..][..self.pcs * self.dim]
            .copy_from_slice(&pca.components);
        self.pca_mean[l * self.dim..][..self.dim].copy_from_slice(&pca.mean);
        self.feature_std[l * self.pcs..][..self.pcs].copy_from_slice(&pca.scale);
    }

    /// The PCA basis of encoder layer `l`.
    pub fn pca(&self, l: usize) -> Pca {
        Pca {
            mean: self.pca_mean[l * self.dim..][..self.dim].to_vec(),
            components: self.pca_components[l * self.pcs * self.dim..][..self.pcs * self.dim]
                .to_vec(),
            scale: self.feature_std[l * self.pcs..][..self.pcs].to_vec(),
        }
    }

    /// Weight of layer `l`, electrode `e`, lag index `j`, component `p`.
    pub fn weight(&self, l: usize, e: usize, j: usize, p: usize) -> f32 {
        self.weights[((l * self.electrodes + e) * self.lags + j) * self.pcs + p]
    }

    /// The peak layer per electrode by `cv_r` (index into `meta.layers`).
    pub fn peak_layers(&self) -> Vec<usize> {
        (0..self.electrodes)
            .map(|e| {
                (0..self.layers).fold(0, |b, l| {
                    if self.cv_r[l * self.electrodes + e] > self.cv_r[b * self.electrodes + e] {
                        l
                    } else {
                        b
                    }
                })
            })
            .collect()
    }

    fn tensors(&self) -> Vec<(&'static str, Vec<usize>, &[f32])> {
        let (l, e, j, p, d) = (self.layers, self.electrodes, self.lags, self.pcs, self.dim);
        vec![
            ("weights", vec![l, e, j, p], &self.weights),
            ("intercepts", vec![l, e], &self.intercepts),
            ("pca_components", vec![l, p, d], &self.pca_components),
            ("pca_mean", vec![l, d], &self.pca_mean),
            ("feature_std", vec![l, p], &self.feature_std),
            ("neural_mean", vec![e], &self.neural_mean),
            ("neural_std", vec![e], &self.neural_std),
            ("cv_r", vec![l, e], &self.cv_r),
            ("alpha", vec![l, e], &self.alpha),
        ]
    }

    /// Writes the encoder file.
    pub fn save(&self, path: &Path) -> Result<(), EncodeError> {
        let json = serde_json::to_string(&self.meta).expect("metadata serialises");
        let raw: Vec<RawTensor> = self
            .tensors()
            .into_iter()
            .map(|(n, s, d)| (n.to_string(), s, Dtype::F32, f32_bytes(d)))
            .collect();
        write_tensors(path, &raw, HashMap::from([("neuralign".to_string(), json)]))
    }

    /// Reads an encoder file written by [`Encoder::save`].
    pub fn load(path: &Path) -> Result<Self, EncodeError> {
        let bad = |reason: String| EncodeError::File {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path)?;
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not safetensors: {e}")))?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("neuralign"))
            .ok_or_else(|| bad("no `neuralign` metadata; not written by neuralign fit".into()))?;
        let meta: EncoderMeta = serde_json::from_str(json).map_err(|e| {
            bad(format!(
                "metadata: {e}; if the file is from another neuralign version, refit it with `neuralign fit`"
            ))
        })?;
        if let Some(stats) = &meta.statistics {
            if stats.electrodes.len() != meta.labels.len()
                || stats.layers.len() != meta.layers.len()
            {
                return Err(bad(format!(
                    "statistics for {} electrodes and {} layers, but the encoders have {} and {}; refit with `neuralign fit`",
                    stats.electrodes.len(),
                    stats.layers.len(),
                    meta.labels.len(),
                    meta.layers.len()
                )));
            }
        }
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let mut enc = Encoder::zeros(
            meta.layers.len(),
            meta.labels.len(),
            meta.grid.n_lags(),
            meta.pcs,
            meta.dim,
        );
        let shapes: Vec<(&str, Vec<usize>)> =
            enc.tensors().into_iter().map(|(n, s, _)| (n, s)).collect();
        let mut data = shapes
            .iter()
            .map(|(n, s)| read_f32(&st, n, s).map_err(bad))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let mut next = || data.next().expect("one per tensor");
        enc.weights = next();
        enc.intercepts = next();
        enc.pca_components = next();
        enc.pca_mean = next();
        enc.feature_std = next();
        enc.neural_mean = next();
        enc.neural_std = next();
        enc.cv_r = next();
        enc.alpha = next();
        enc.meta = meta;
        Ok(enc)
    }

    /// Checks the encoders against the running model and neural stream and
    /// maps stream channels to electrodes by label. Extra stream channels are
    /// ignored. Electrodes the stream lacks are an error, unless
    /// `allow_subset`, in which case the returned encoder keeps only the
    /// electrodes present.
    pub fn bind(
        &self,
        model_sha256: &str,
        rate: f64,
        stream_labels: &[String],
        allow_subset: bool,
    ) -> Result<(Encoder, ChannelMap), EncodeError> {
        if !self.meta.model.sha256.eq_ignore_ascii_case(model_sha256) {
            return Err(EncodeError::ModelMismatch {
                expected: self.meta.model.sha256.clone(),
                expected_name: self.meta.model.name.clone(),
                actual: model_sha256.to_string(),
            });
        }
        if (self.meta.grid.rate - rate).abs() > 1e-6 * rate.abs().max(1.0) {
            return Err(EncodeError::RateMismatch {
                expected: self.meta.grid.rate,
                actual: rate,
            });
        }
        let index: HashMap<&str, usize> = stream_labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let found: Vec<Option<usize>> = self
            .meta
            .labels
            .iter()
            .map(|l| index.get(l.as_str()).copied())
            .collect();
        let missing: Vec<String> = self
            .meta
            .labels
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(l, _)| l.clone())
            .collect();
        if missing.len() == self.meta.labels.len() || (!missing.is_empty() && !allow_subset) {
            return Err(EncodeError::MissingChannels { missing });
        }
        let keep: Vec<usize> = (0..self.electrodes)
            .filter(|&e| found[e].is_some())
            .collect();
        let map = ChannelMap {
            stream_index: keep.iter().map(|&e| found[e].expect("kept")).collect(),
        };
        Ok((self.select(&keep), map))
    }

    /// The encoder restricted to electrodes `keep` (in that order).
    pub fn select(&self, keep: &[usize]) -> Encoder {
        let mut out = Encoder::zeros(self.layers, keep.len(), self.lags, self.pcs, self.dim);
        let lp = self.lags * self.pcs;
        for l in 0..self.layers {
            for (ne, &e) in keep.iter().enumerate() {
                let (src, dst) = (l * self.electrodes + e, l * keep.len() + ne);
                out.weights[dst * lp..(dst + 1) * lp]
                    .copy_from_slice(&self.weights[src * lp..(src + 1) * lp]);
                out.intercepts[dst] = self.intercepts[src];
                out.cv_r[dst] = self.cv_r[src];
                out.alpha[dst] = self.alpha[src];
            }
        }
        out.pca_components.clone_from(&self.pca_components);
        out.pca_mean.clone_from(&self.pca_mean);
        out.feature_std.clone_from(&self.feature_std);
        out.neural_mean = keep.iter().map(|&e| self.neural_mean[e]).collect();
        out.neural_std = keep.iter().map(|&e| self.neural_std[e]).collect();
        out.meta = self.meta.clone();
        out.meta.labels = keep.iter().map(|&e| self.meta.labels[e].clone()).collect();
        if let Some(stats) = &mut out.meta.statistics {
            stats.electrodes = keep.iter().map(|&e| stats.electrodes[e].clone()).collect();
        }
        out
    }
}

/// Little-endian bytes of f32 values, for [`write_tensors`].
pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian bytes of f64 values, for [`write_tensors`].
pub(crate) fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A named tensor ready to write: name, shape, dtype, little-endian bytes.
pub(crate) type RawTensor = (String, Vec<usize>, Dtype, Vec<u8>);

/// Writes tensors with a metadata header to a safetensors file.
pub(crate) fn write_tensors(
    path: &Path,
    tensors: &[RawTensor],
    metadata: HashMap<String, String>,
) -> Result<(), EncodeError> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, s, d, b)| {
            (
                n.clone(),
                TensorView::new(*d, s.clone(), b).expect("shape matches data"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| EncodeError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Reads a float tensor (f32 or f64) and checks its shape.
pub(crate) fn read_f32(st: &SafeTensors, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
    let t = st
        .tensor(name)
        .map_err(|_| format!("tensor `{name}` is missing"))?;
    if t.shape() != shape {
        return Err(format!(
            "tensor `{name}` has shape {:?}, expected {shape:?}",
            t.shape()
        ));
    }
    match t.dtype() {
        Dtype::F32 => Ok(t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
            .collect()),
        Dtype::F64 => Ok(t
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32)
            .collect()),
        other => Err(format!("tensor `{name}` is {other:?}, expected F32 or F64")),
    }
}
