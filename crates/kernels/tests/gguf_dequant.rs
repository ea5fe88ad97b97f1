//! Our products of every block format against the `gguf` Python package's dequantisation
//! (an independent reading of GGUF's block layouts): random blocks, dequantized by `gguf`,
//! times the activations in f64, against [`QMatrix::matmul`] with 8-bit activations and with
//! their residual; a batch past the tile gives each token's bits alone.
//!
//! Needs `python3` with `gguf` and `numpy` (`pip install -r tools/requirements-test.txt`).
use std::path::PathBuf;
use std::process::Command;

use neuralign_kernels::quant::{Activations, BlockFormat, QMatrix};

/// Reads `SRC` (rows of GGUF blocks of type `NAME`) and writes its weights, f32 LE, to `DST`.
const DEQUANTIZE: &str = "
import sys, numpy as np, gguf
src, dst, name, rows = sys.argv[1:]
blocks = np.fromfile(src, dtype=np.uint8).reshape(int(rows), -1)
gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType[name]).astype('<f4').tofile(dst)
";

/// A deterministic stream of numbers.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        self.next() as f32 / (1u64 << 31) as f32 * 2.0 - 1.0
    }
}

/// The layout facts the test needs: GGUF name, weights and bytes of a block, where its f16
/// scales sit (random bytes there could be NaN or huge).
fn layout(format: BlockFormat) -> (&'static str, usize, usize, &'static [usize]) {
    match format {
        BlockFormat::Q4_1 => ("Q4_1", 32, 20, &[0, 2]),
        BlockFormat::Q5_0 => ("Q5_0", 32, 22, &[0]),
        BlockFormat::Q8_0 => ("Q8_0", 32, 34, &[0]),
        BlockFormat::Q4K => ("Q4_K", 256, 144, &[0, 2]),
        BlockFormat::Q6K => ("Q6_K", 256, 210, &[208]),
    }
}

/// `features × inputs` random blocks of `format` and their weights as `gguf` reads them.
fn blocks_and_weights(
    format: BlockFormat,
    features: usize,
    inputs: usize,
    rng: &mut Lcg,
) -> (Vec<u8>, Vec<f32>) {
    let (name, weights, bytes, scales) = layout(format);
    let mut data = Vec::new();
    for _ in 0..features * inputs / weights {
        let mut block: Vec<u8> = (0..bytes).map(|_| rng.next() as u8).collect();
        for &at in scales {
            let scale = half::f16::from_f32(0.01 * rng.unit());
            block[at..at + 2].copy_from_slice(&scale.to_le_bytes());
        }
        data.extend(block);
    }
    let dir = std::env::temp_dir();
    let tag = format!("neuralign-{name}-{}", std::process::id());
    let (src, dst): (PathBuf, PathBuf) = (
        dir.join(format!("{tag}.blocks")),
        dir.join(format!("{tag}.f32")),
    );
    std::fs::write(&src, &data).unwrap();
    let status = Command::new("python3")
        .args(["-c", DEQUANTIZE])
        .arg(&src)
        .arg(&dst)
        .args([name, &features.to_string()])
        .status()
        .expect("python3 runs (pip install -r tools/requirements-test.txt)");
    assert!(status.success(), "gguf dequantizes {name}");
    let w: Vec<f32> = std::fs::read(&dst)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    std::fs::remove_file(src).unwrap();
    std::fs::remove_file(dst).unwrap();
    assert_eq!(w.len(), features * inputs);
    (data, w)
}

/// Relative L2 distance of a token's outputs from the f64 product.
fn relative_error(got: &[f32], want: &[f64]) -> f64 {
    let err: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - b).powi(2))
        .sum();
    let norm: f64 = want.iter().map(|b| b * b).sum();
    (err / norm).sqrt()
}

#[test]
fn every_format_matches_gguf_dequantisation() {
    let mut rng = Lcg(42);
    // a last group of 5 rows (padding), two super-blocks a row
    let (features, inputs) = (13, 512);
    // past a tile a thread, so the batch path runs too
    let t = 16 * neuralign_kernels::pool::threads() + 3;
    // activations with an outlier ~30x their scale in every fourth token (Gemma's first blocks)
    let x: Vec<f32> = (0..t * inputs)
        .map(|i| {
            if i % (4 * inputs) == 37 {
                30.0
            } else {
                rng.unit()
            }
        })
        .collect();
    for format in [
        BlockFormat::Q4_1,
        BlockFormat::Q5_0,
        BlockFormat::Q8_0,
        BlockFormat::Q4K,
        BlockFormat::Q6K,
    ] {
        let (data, w) = blocks_and_weights(format, features, inputs, &mut rng);
        for (how, tolerance) in [
            (Activations::Bytes, 5e-2),
            (Activations::WithResidual, 5e-4),
        ] {
            let m = QMatrix::from_gguf(format, features, inputs, &data, how).unwrap();
            assert_eq!((m.format(), m.activations()), (format, how));
            let batch = m.matmul(&x).unwrap();
            let mut worst = 0f64;
            for r in 0..t {
                let row = &x[r * inputs..(r + 1) * inputs];
                let one = m.matmul(row).unwrap();
                assert_eq!(
                    one,
                    batch[r * features..(r + 1) * features],
                    "{format:?} {how:?} token {r}: batched bits"
                );
                let want: Vec<f64> = (0..features)
                    .map(|f| {
                        (0..inputs)
                            .map(|i| w[f * inputs + i] as f64 * row[i] as f64)
                            .sum()
                    })
                    .collect();
                worst = worst.max(relative_error(&one, &want));
            }
            assert!(
                worst <= tolerance,
                "{format:?} {how:?}: {worst:.2e} from gguf's weights"
            );
            eprintln!("{format:?} {how:?}: worst relative error {worst:.2e}");
        }
        let short = &data[..data.len() - 1];
        assert!(QMatrix::from_gguf(format, features, inputs, short, Activations::Bytes).is_err());
    }
}
