//! The causal high-gamma extractor against the offline, non-causal reference
//! (`tests/python/hg_reference.py`: scipy notches run forwards and backwards,
//! the naplib Gaussian filterbank by FFT Hilbert transform): on synthetic iEEG
//! with known high-gamma bursts, 1/f noise and line noise, the two must
//! correlate at r ≥ 0.95 once the reported delay is compensated, and the
//! correlation must peak at the reported delay within one output frame.
//!
//! Needs python3 with numpy and scipy.

use std::path::Path;
use std::process::Command;

use neuralign::dsp::{HighGamma, HighGammaConfig};

const CHANNELS: usize = 3;
const SECONDS: f64 = 40.0;

fn python(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/hg_reference.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("python3 must be installed (with numpy and scipy) for this test");
    assert!(
        out.status.success(),
        "hg_reference.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("hg_reference.py prints UTF-8")
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("synthetic input was written")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn check_rate(fs: f64, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.f32");
    let output = dir.path().join("output.f32");
    let (fs_arg, channels) = (fs.to_string(), CHANNELS.to_string());
    python(&[
        "synth",
        "--fs",
        &fs_arg,
        "--seconds",
        &SECONDS.to_string(),
        "--channels",
        &channels,
        "--seed",
        &seed.to_string(),
        "--out",
        input.to_str().unwrap(),
    ]);
    let samples = read_f32(&input);

    // Raw envelope (no z-score), so that it is comparable to the reference.
    let cfg = HighGammaConfig {
        zscore: false,
        ..HighGammaConfig::default()
    };
    let mut hg = HighGamma::new(CHANNELS, fs, &cfg).unwrap();
    let mut frames = Vec::new();
    // Uneven chunks, as LSL delivers them.
    let mut rest = samples.as_slice();
    for chunk in [1usize, 13, 64, 7, 250].iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let take = (chunk * CHANNELS).min(rest.len());
        hg.process(&rest[..take], &mut frames);
        rest = &rest[take..];
    }
    let bytes: Vec<u8> = frames.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&output, bytes).unwrap();

    let report: serde_json::Value = serde_json::from_str(&python(&[
        "compare",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--fs",
        &fs_arg,
        "--channels",
        &channels,
    ]))
    .unwrap();
    let delay = hg.group_delay_s();
    let frame = 1.0 / hg.output_rate();
    println!(
        "{fs} Hz: group delay {:.1} ms, reference {report}",
        delay * 1e3
    );
    let n_ref = report["reference_frames"].as_u64().unwrap();
    assert!(
        (frames.len() / CHANNELS) as u64 + 1 >= n_ref,
        "frames missing: {report}"
    );
    for ch in 0..CHANNELS {
        let r = report["r"][ch].as_f64().unwrap();
        let lag = report["peak_lag_s"][ch].as_f64().unwrap();
        assert!(r >= 0.95, "{fs} Hz channel {ch}: r = {r:.4} < 0.95");
        assert!(
            (lag - delay).abs() <= frame,
            "{fs} Hz channel {ch}: correlation peaks at {:.1} ms, reported delay {:.1} ms",
            lag * 1e3,
            delay * 1e3
        );
    }
}

#[test]
fn matches_offline_reference_at_2048_hz() {
    check_rate(2048.0, 1);
}

#[test]
fn matches_offline_reference_at_1000_hz() {
    check_rate(1000.0, 2);
}

#[test]
fn matches_offline_reference_at_512_hz() {
    check_rate(512.0, 3);
}
