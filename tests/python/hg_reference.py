"""Offline, non-causal high-gamma reference for neuralign's causal extractor.

Independent of the Rust code: scipy notches applied forwards and backwards,
the Edwards et al. (2009) / naplib-python Gaussian filterbank applied in the
frequency domain with an FFT Hilbert transform, the mean of the band
envelopes, and polyphase resampling to the output rate.

    hg_reference.py synth   --fs F --seconds S --channels C --seed N --out FILE
    hg_reference.py compare --input FILE --output FILE --fs F --channels C
                            [--out-rate 100] [--line 60] [--notch-bw 2]

Files are raw little-endian float32, row-major [samples, channels].
`compare` prints JSON: per channel, the best correlation between the causal
output and the reference, and the lag (s) at which it peaks.
"""

import argparse
import json
import sys
from fractions import Fraction

import numpy as np
import scipy.signal as ss


def naplib_bands(lo=70.0, hi=150.0):
    """Centre frequencies and Gaussian standard deviations (Hz) of the
    Edwards/naplib filterbank between lo and hi, built as naplib builds them."""
    a0, a1 = np.log10(0.39), 0.5
    f0, oct_space = 0.018, 1.0 / 7
    cfs = [f0]
    sigma = 10 ** (a0 + a1 * np.log10(f0))
    while np.log2(cfs[-1] / f0) < np.log2(hi / f0):
        if cfs[-1] < 4:
            cfs.append(cfs[-1] + sigma)
        else:
            cfs.append(f0 * 2 ** (np.log2(cfs[-1] / f0) + oct_space))
        sigma = 10 ** (a0 + a1 * np.log10(cfs[-1]))
    cfs = np.array(cfs)
    cfs = cfs[(cfs >= lo) & (cfs <= hi)]
    sds = 10 ** (a0 + a1 * np.log10(cfs)) * np.sqrt(2)
    return cfs, sds


def notch_harmonics(fs, line, bw):
    """(b, a) of scipy iirnotch at every harmonic whose notch fits below Nyquist."""
    out, h = [], 1
    while line > 0 and h * line + bw < fs / 2:
        out.append(ss.iirnotch(h * line, h * line / bw, fs))
        h += 1
    return out


def reference(x, fs, out_rate, line=60.0, notch_bw=2.0):
    """Non-causal high-gamma of x [samples, channels] at out_rate."""
    y = x.astype(np.float64)
    for b, a in notch_harmonics(fs, line, notch_bw):
        y = ss.filtfilt(b, a, y, axis=0)
    n = y.shape[0]
    spectrum = np.fft.fft(y, axis=0)
    freqs = np.fft.fftfreq(n, 1 / fs)
    env = np.zeros_like(y)
    cfs, sds = naplib_bands()
    for cf, sd in zip(cfs, sds):
        # Gaussian band on positive frequencies only, doubled: the analytic signal.
        gain = np.where(freqs > 0, 2 * np.exp(-0.5 * ((freqs - cf) / sd) ** 2), 0.0)
        env += np.abs(np.fft.ifft(spectrum * gain[:, None], axis=0))
    env /= len(cfs)
    ratio = Fraction(out_rate / fs).limit_denominator(100000)
    return ss.resample_poly(env, ratio.numerator, ratio.denominator, axis=0)


def synth(fs, seconds, channels, seed):
    """1/f noise + 60/120/180 Hz line noise + 70-150 Hz noise whose amplitude
    rises in smooth bursts of 0.1-0.6 s: the known high-gamma."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    freqs = np.fft.rfftfreq(n, 1 / fs)
    t = np.arange(n) / fs
    out = np.empty((n, channels), dtype=np.float32)
    for ch in range(channels):
        spec = np.fft.rfft(rng.standard_normal(n))
        pink = np.fft.irfft(spec / np.sqrt(np.maximum(freqs, freqs[1])), n)
        pink /= pink.std()
        spec = np.fft.rfft(rng.standard_normal(n))
        spec[(freqs < 70) | (freqs > 150)] = 0
        hg = np.fft.irfft(spec, n)
        hg /= hg.std()
        bursts = np.zeros(n)
        start = rng.uniform(0.2, 1.0)
        while start < seconds - 1:
            length = rng.uniform(0.1, 0.6)
            i0, m = int(start * fs), int(length * fs)
            bursts[i0:i0 + m] += rng.uniform(0.5, 3.0) * np.hanning(m)
            start += length + rng.uniform(0.3, 1.5)
        line = sum(amp * np.sin(2 * np.pi * 60 * h * t + h) for h, amp in [(1, 5.0), (2, 1.0), (3, 0.5)])
        out[:, ch] = pink + 0.3 * hg * (1 + 3 * bursts) + line
    return out


def peak_correlation(causal, ref, out_rate, skip_s=2.0, max_lag_s=0.3):
    """Best correlation of causal[k + lag] with ref[k] over lags >= 0, and the
    lag in seconds at which it peaks (parabolic sub-frame refinement)."""
    skip = int(skip_s * out_rate)
    n = min(len(causal), len(ref))
    lags = np.arange(int(max_lag_s * out_rate))
    r = np.array([np.corrcoef(causal[skip + lag:n], ref[skip:n - lag])[0, 1] for lag in lags])
    i = int(np.argmax(r))
    offset = 0.0
    if 0 < i < len(r) - 1:
        curvature = r[i - 1] - 2 * r[i] + r[i + 1]
        if curvature < 0:
            offset = 0.5 * (r[i - 1] - r[i + 1]) / curvature
    return float(r[i]), float((i + offset) / out_rate)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth")
    s.add_argument("--fs", type=float, required=True)
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--channels", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--input", required=True)
    c.add_argument("--output", required=True)
    c.add_argument("--fs", type=float, required=True)
    c.add_argument("--channels", type=int, required=True)
    c.add_argument("--out-rate", type=float, default=100.0)
    c.add_argument("--line", type=float, default=60.0)
    c.add_argument("--notch-bw", type=float, default=2.0)
    args = p.parse_args(argv)
    if args.cmd == "synth":
        synth(args.fs, args.seconds, args.channels, args.seed).astype("<f4").tofile(args.out)
        return 0
    x = np.fromfile(args.input, dtype="<f4").reshape(-1, args.channels)
    causal = np.fromfile(args.output, dtype="<f4").reshape(-1, args.channels)
    ref = reference(x, args.fs, args.out_rate, args.line, args.notch_bw)
    results = [peak_correlation(causal[:, ch], ref[:, ch], args.out_rate) for ch in range(args.channels)]
    json.dump({"r": [r for r, _ in results], "peak_lag_s": [lag for _, lag in results],
               "frames": len(causal), "reference_frames": len(ref)}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
