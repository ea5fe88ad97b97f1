"""The circular-shift null of `neuralign fit` agrees with an independent numpy computation.

A session with responsive and non-responsive electrodes is drawn in numpy; `neuralign fit
--json stats.json --dump-null null.safetensors` writes the statistics and the data behind the
null: the encoders' prediction of the held-out tail per layer (from the encoder file, the
offline predictor), the z-scored actual high-gamma there, and the drawn shifts. Here r is
recomputed at every shift by rotating the actual series with np.roll (no FFT), the maximum over
layers taken as the statistic, p = (1 + #null ≥ observed) / (1 + shifts), and q with scipy's
Benjamini–Hochberg (scipy.stats.false_discovery_control). The live threshold (docs/statistics.md
§5) is recomputed from the same data: the two-pass Pearson r of every window of the first
`live_shifts` shifts, its maximum over layers, and np.quantile at 1 − live_alpha.
"""
import json
import subprocess

import numpy as np
from safetensors.numpy import load_file
from scipy.stats import false_discovery_control

from test_ridge_sklearn import make_session, neuralign_bin


def test_circular_shift_null_matches_numpy(tmp_path):
    rng = np.random.default_rng(11)
    session = tmp_path / "session.safetensors"
    make_session(session, rng, samples=30000, electrodes=6, responsive=3)
    stats_path, dump = tmp_path / "stats.json", tmp_path / "null.safetensors"
    subprocess.run(
        [neuralign_bin(), "fit", str(session), "--out", str(tmp_path / "enc.safetensors"),
         "--pcs", "4", "--folds", "3", "--tmin", "0", "--tmax", "0.3", "--shifts", "300",
         "--seed", "5", "--json", str(stats_path), "--dump-null", str(dump)],
        check=True,
    )
    stats = json.loads(stats_path.read_text())
    d = load_file(str(dump))
    pred, actual, shifts = d["pred"], d["actual"], d["shifts"].astype(np.int64)
    layers, n, electrodes = pred.shape
    assert len(shifts) == 300 and shifts.min() >= 1000 and shifts.max() <= n - 1000

    def r(p, a):
        p, a = p - p.mean(), a - a.mean()
        return (p * a).sum() / np.sqrt((p * p).sum() * (a * a).sum())

    p_values = []
    for e, got in enumerate(stats["electrodes"]):
        # null[l, j]: layer l's prediction against the actual rotated by shifts[j]
        null = np.array([[r(pred[l, :, e], np.roll(actual[:, e], -s)) for s in shifts]
                         for l in range(layers)])
        observed = np.array([r(pred[l, :, e], actual[:, e]) for l in range(layers)])
        null_max, obs_max = null.max(axis=0), observed.max()
        p = (1 + np.sum(null_max >= obs_max)) / (1 + len(shifts))
        p_values.append(p)
        np.testing.assert_allclose(got["profile"], observed, atol=1e-5)
        np.testing.assert_allclose(got["r"], obs_max, atol=1e-5)
        assert got["p"] == p, (e, got["p"], p)
        band = np.quantile(null, [0.025, 0.975], axis=1).T
        np.testing.assert_allclose(got["null_band"], band, atol=1e-5)
        assert stats["layers"][int(observed.argmax())] == got["peak_layer"]
    q = false_discovery_control(p_values, method="bh")
    np.testing.assert_allclose([e["q"] for e in stats["electrodes"]], q, rtol=1e-12)
    significant = [e["significant"] for e in stats["electrodes"]]
    # electrodes 0-2 respond (at layer 1), 3-5 do not
    assert significant[:3] == [True] * 3 and not any(significant[3:]), stats["electrodes"]
    assert all(e["peak_layer"] == 1 for e in stats["electrodes"][:3])

    # Live threshold: rolling r over windows of w samples ending every `stride` samples
    live = stats["live"]
    w, stride, alpha = live["window"], live["stride"], live["alpha"]
    live_shifts = shifts[:live["shifts"]]
    assert live["shifts"] == 20 and alpha == 0.01
    ends = np.arange(w - 1, n, stride)
    assert live["null_values"] == len(live_shifts) * len(ends)

    def windows(x):
        v = np.lib.stride_tricks.sliding_window_view(x, w)[ends - w + 1]
        return v - v.mean(axis=1, keepdims=True)

    for e, got in enumerate(stats["electrodes"]):
        values = []
        for s in live_shifts:
            a = windows(np.roll(actual[:, e], -s))
            per_layer = []
            for layer in range(layers):
                p = windows(pred[layer, :, e])
                per_layer.append((p * a).sum(1) / np.sqrt((p * p).sum(1) * (a * a).sum(1)))
            values.append(np.max(per_layer, axis=0))
        want = np.quantile(np.concatenate(values), 1 - alpha)
        np.testing.assert_allclose(got["live_threshold"], want, atol=1e-5)
