"""Checks of the offline high-gamma reference (tests/python/hg_reference.py)
that the causal Rust extractor is compared against."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import hg_reference as ref  # noqa: E402


def test_filterbank_matches_the_documented_centres():
    cfs, sds = ref.naplib_bands()
    design = [72.0, 79.5, 87.8, 96.9, 107.0, 118.1, 130.4, 144.0]
    np.testing.assert_allclose(cfs, design, atol=0.05)
    # Constant-Q widths: sigma grows as sqrt(f).
    np.testing.assert_allclose(sds / np.sqrt(cfs), 0.39 * np.sqrt(2))


def test_reference_recovers_a_known_envelope():
    fs, out_rate = 1000.0, 100.0
    t = np.arange(int(20 * fs)) / fs
    envelope = 1.0 + 0.8 * np.sin(2 * np.pi * 0.5 * t)
    x = (envelope * np.sin(2 * np.pi * 96.88 * t))[:, None]
    hg = ref.reference(x, fs, out_rate)[:, 0]
    # A tone at a band centre: the mean of the 8 Gaussian gains at that frequency.
    cfs, sds = ref.naplib_bands()
    gain = np.mean(np.exp(-0.5 * ((96.88 - cfs) / sds) ** 2))
    expected = gain * envelope[:: int(fs / out_rate)]
    core = slice(200, 1800)  # away from the circular FFT's edges
    np.testing.assert_allclose(hg[core], expected[core], rtol=0.02)


def test_line_noise_is_removed_by_the_notches():
    fs = 2048.0
    t = np.arange(int(10 * fs)) / fs
    x = (50 * np.sin(2 * np.pi * 120 * t))[:, None]
    assert ref.reference(x, fs, 100.0)[100:-100].max() < 0.05


def test_peak_correlation_finds_a_known_lag():
    rng = np.random.default_rng(3)
    base = np.convolve(rng.standard_normal(3000), np.hanning(25), mode="same")
    shifted = np.concatenate([np.zeros(6), base[:-6]])  # 6 frames late
    r, lag = ref.peak_correlation(shifted, base, 100.0)
    assert r > 0.99
    assert abs(lag - 0.06) < 0.005
