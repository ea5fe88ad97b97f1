"""The ridge solution of `neuralign fit` agrees with scikit-learn's Ridge.

A session is drawn in numpy and written as a safetensors session file;
`neuralign fit --dump-design` writes the fitted design and solution of one
layer. The design is rebuilt here from the word features and onsets, and
sklearn.linear_model.Ridge with the same alpha must give the same weights and
intercepts. The encoder file must load with safetensors.numpy.
"""
import json
import os
import pathlib
import subprocess

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from sklearn.linear_model import Ridge

REPO = pathlib.Path(__file__).resolve().parents[2]


def neuralign_bin():
    if "NEURALIGN_BIN" in os.environ:
        return os.environ["NEURALIGN_BIN"]
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    path = target / "debug" / "neuralign"
    assert path.exists(), f"{path} missing: run `cargo build` first or set NEURALIGN_BIN"
    return str(path)


def make_session(path, rng, samples=9000, electrodes=5, layers=3, dim=12, rate=100.0, t0=50.0):
    onsets = t0 + np.cumsum(rng.uniform(0.15, 0.65, size=int(samples / rate / 0.4)))
    onsets = onsets[onsets < t0 + samples / rate - 0.2]
    emb = rng.normal(size=(len(onsets), layers, dim)).astype(np.float32)
    hg = rng.normal(size=(samples, electrodes))
    for w, onset in enumerate(onsets):
        s = int(round((onset - t0) * rate))
        hg[s : s + 30, :] += emb[w, 1, :electrodes] * np.hanning(30)[: len(hg[s : s + 30])][:, None]
    meta = {
        "rate": rate,
        "t0": t0,
        "labels": [f"e{i:03d}" for i in range(electrodes)],
        "model": {"name": "test-model.gguf", "sha256": "ab" * 32},
    }
    save_file(
        {"hg": (hg * 3 + 1).astype(np.float32), "onsets": onsets.astype(np.float64), "embeddings": emb},
        str(path),
        metadata={"neuralign_session": json.dumps(meta)},
    )


def lagged_design(features, samples, lag_min, n_lags, n_rows):
    pcs = features.shape[1]
    x = np.zeros((n_rows, n_lags * pcs))
    for f, s in zip(features, samples.astype(np.int64)):
        for j in range(n_lags):
            t = s + lag_min + j
            if 0 <= t < n_rows:
                x[t, j * pcs : (j + 1) * pcs] += f
    return x


def test_ridge_matches_sklearn(tmp_path):
    rng = np.random.default_rng(4)
    session = tmp_path / "session.safetensors"
    make_session(session, rng)
    enc_path, dump_path = tmp_path / "enc.safetensors", tmp_path / "dump.safetensors"
    subprocess.run(
        [neuralign_bin(), "fit", str(session), "--out", str(enc_path), "--pcs", "4", "--folds", "3",
         "--tmin", "-0.05", "--tmax", "0.25", "--dump-design", str(dump_path), "--dump-layer", "1"],
        check=True,
    )
    d = load_file(str(dump_path))
    with safe_open(str(dump_path), "np") as f:
        lag_min = int(f.metadata()["lag_min"])
    n_rows, n_feat = d["design"].shape
    pcs = d["features"].shape[1]
    x = lagged_design(d["features"], d["samples"], lag_min, n_feat // pcs, n_rows)
    np.testing.assert_allclose(x, d["design"], atol=1e-12)
    for e, alpha in enumerate(d["alpha"]):
        ridge = Ridge(alpha=alpha, fit_intercept=True, solver="cholesky").fit(x, d["target"][:, e])
        scale = max(1.0, np.abs(ridge.coef_).max())
        np.testing.assert_allclose(d["beta"][:, e], ridge.coef_, atol=1e-4 * scale, rtol=0)
        np.testing.assert_allclose(d["intercept"][e], ridge.intercept_, atol=1e-4)

    enc = load_file(str(enc_path))
    with safe_open(str(enc_path), "np") as f:
        meta = json.loads(f.metadata()["neuralign"])
    layers, electrodes, lags = len(meta["layers"]), len(meta["labels"]), n_feat // pcs
    assert enc["weights"].shape == (layers, electrodes, lags, pcs)
    assert enc["pca_components"].shape == (layers, pcs, 12)
    assert enc["cv_r"].shape == enc["alpha"].shape == (layers, electrodes)
    assert meta["model"]["sha256"] == "ab" * 32
    # Layer 1 drives the response, so it predicts best on held-out data.
    assert (enc["cv_r"].argmax(axis=0) == 1).all(), enc["cv_r"]
