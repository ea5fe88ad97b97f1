"""The nested cross-validation of `neuralign fit` agrees with scikit-learn.

A session is drawn in numpy and written as a safetensors session file;
`neuralign fit --dump-design` writes the fitted design and solution of one
layer and its inner-fold validation table. Here the procedure of
docs/statistics.md is redone with sklearn.decomposition.PCA and
sklearn.linear_model.Ridge: per inner fold, PCA and feature scaling fit on the
words of that fold's training rows only (purge gap of one lag window on both
sides of the validation fold), the mean validation r per alpha; the final
ridge on the whole training part; the r on the held-out tail after the gap.
The encoder file must load with safetensors.numpy.
"""
import json
import os
import pathlib
import subprocess

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge

REPO = pathlib.Path(__file__).resolve().parents[2]


def neuralign_bin():
    if "NEURALIGN_BIN" in os.environ:
        return os.environ["NEURALIGN_BIN"]
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    path = target / "debug" / "neuralign"
    assert path.exists(), f"{path} missing: run `cargo build` first or set NEURALIGN_BIN"
    return str(path)


def make_session(path, rng, samples=24000, electrodes=5, layers=3, dim=12, rate=100.0, t0=50.0,
                 responsive=None):
    onsets = t0 + np.cumsum(rng.uniform(0.15, 0.65, size=int(samples / rate / 0.4)))
    onsets = onsets[onsets < t0 + samples / rate - 0.2]
    emb = rng.normal(size=(len(onsets), layers, dim)).astype(np.float32)
    hg = rng.normal(size=(samples, electrodes))
    for w, onset in enumerate(onsets):
        s = int(round((onset - t0) * rate))
        r = electrodes if responsive is None else responsive
        hg[s : s + 30, :r] += emb[w, 1, :r] * np.hanning(30)[: len(hg[s : s + 30])][:, None]
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


def scaled_pca(emb, pcs):
    """PCA scores divided by each component's standard deviation (ddof 1), as neuralign scales."""
    pca = PCA(n_components=pcs, svd_solver="full").fit(emb)
    return lambda x: pca.transform(x) / np.sqrt(pca.explained_variance_)


def touching(samples, lag_min, n_lags, rows):
    """Words with at least one lag inside the boolean row mask `rows`."""
    keep = []
    for s in samples.astype(np.int64):
        t = s + lag_min + np.arange(n_lags)
        t = t[(t >= 0) & (t < len(rows))]
        keep.append(rows[t].any())
    return np.array(keep)


def pearson_cols(a, b):
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


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

    # The inner cross-validation, redone with scikit-learn's PCA and Ridge.
    with safe_open(str(session), "np") as f:
        emb = f.get_tensor("embeddings")[:, 1, :].astype(np.float64)  # dumped layer 1
        hg = f.get_tensor("hg").astype(np.float64)
    with safe_open(str(dump_path), "np") as f:
        n_train, gap = int(f.metadata()["n_train"]), int(f.metadata()["gap"])
    samples, n_lags, folds = d["samples"], n_feat // pcs, 3
    assert gap >= n_lags, "the purge gap spans the lag window"
    bounds = [k * n_train // folds for k in range(folds + 1)]
    cv = np.zeros((len(d["alphas"]), hg.shape[1]))
    for a, b in zip(bounds, bounds[1:]):
        rows = np.zeros(n_train, bool)
        rows[: max(a - gap, 0)] = True
        rows[b + gap :] = True
        val = np.zeros(n_train, bool)
        val[a:b] = True
        project = scaled_pca(emb[touching(samples, lag_min, n_lags, rows)], pcs)
        x = lagged_design(project(emb), samples, lag_min, n_lags, n_train)
        y = hg[:n_train]
        for i, alpha in enumerate(d["alphas"]):
            ridge = Ridge(alpha=alpha, solver="cholesky").fit(x[rows], y[rows])
            cv[i] += pearson_cols(ridge.predict(x[val]), y[val]) / folds
    np.testing.assert_allclose(cv, d["cv"], atol=1e-6)
    np.testing.assert_allclose(d["alpha"], d["alphas"][cv.argmax(axis=0)], rtol=1e-6)  # stored as f32
    # The held-out r: PCA on the training words, ridge on the training rows, the tail after the gap.
    train_rows = np.ones(n_train, bool)
    project = scaled_pca(emb[touching(samples, lag_min, n_lags, train_rows)], pcs)
    x = lagged_design(project(emb), samples, lag_min, n_lags, len(hg))
    ridge = Ridge(alpha=1.0, solver="cholesky")
    held_out = []
    for e, alpha in enumerate(d["alpha"]):
        ridge.set_params(alpha=alpha).fit(x[:n_train], hg[:n_train, e])
        test = slice(n_train + gap, len(hg))
        held_out.append(pearson_cols(ridge.predict(x[test])[:, None], hg[test, e : e + 1])[0])

    enc = load_file(str(enc_path))
    with safe_open(str(enc_path), "np") as f:
        meta = json.loads(f.metadata()["neuralign"])
    layers, electrodes, lags = len(meta["layers"]), len(meta["labels"]), n_feat // pcs
    assert enc["weights"].shape == (layers, electrodes, lags, pcs)
    assert enc["pca_components"].shape == (layers, pcs, 12)
    assert enc["cv_r"].shape == enc["alpha"].shape == (layers, electrodes)
    assert meta["model"]["sha256"] == "ab" * 32
    np.testing.assert_allclose(enc["cv_r"][1], held_out, atol=1e-5)
    # Layer 1 drives the response, so it predicts best on held-out data.
    assert (enc["cv_r"].argmax(axis=0) == 1).all(), enc["cv_r"]
