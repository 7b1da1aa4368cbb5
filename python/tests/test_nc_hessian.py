"""NC1-NC4 and the Hessian spectrum from Python, against NumPy computations
written here: the toolkits' definitions on explicit samples (np.linalg.pinv),
a dense Hessian from finite differences of the exact gradient (np.linalg.eigvalsh),
and a collapsed configuration built by hand."""

import itertools

import numpy as np
import pytest

import feature_collapse as fc


def random_weights(task, scale=0.7, seed=0):
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal((task.n_w, task.dim)),
            scale * rng.standard_normal((task.k, task.len * task.dim)))


def nc_numpy(X, y, p, W=None):
    """Papyan et al.'s NC1-NC4 on samples X (rows), labels y and probabilities p
    (normalised within each class), classifier rows W."""
    K = y.max() + 1
    mu = np.array([np.average(X[y == c], axis=0, weights=p[y == c]) for c in range(K)])
    G = mu.mean(axis=0)
    M = mu - G
    Sb = M.T @ M / K
    Sw = sum(np.cov((X[y == c] - mu[c]).T, aweights=p[y == c], bias=True) * 1.0 for c in range(K)) / K
    out = {"nc1": np.trace(Sw @ np.linalg.pinv(Sb, rcond=1e-10, hermitian=True)) / K}
    norms = np.linalg.norm(M, axis=1)
    out["nc2_norm_cv_means"] = norms.std(ddof=1) / norms.mean()
    cos = (M @ M.T) / np.outer(norms, norms)
    pairs = cos[np.triu_indices(K, 1)]
    out["nc2_cos_std_means"] = pairs.std(ddof=1)
    out["nc2_cos_shift_means"] = np.abs(pairs + 1 / (K - 1)).mean()
    if W is not None:
        out["nc3"] = np.linalg.norm(W / np.linalg.norm(W) - M / np.linalg.norm(M))
        pred = np.argmax(X @ W.T, axis=1)
        ncc = np.argmin(((X[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)
        out["nc4"] = sum(p[(y == c) & (pred == ncc)].sum() / p[y == c].sum() for c in range(K)) / K
    return out


def phi(task, W):
    if task.layer_norm is None:
        return W
    c = W - W.mean(axis=1, keepdims=True)
    return c / np.sqrt((c ** 2).mean(axis=1, keepdims=True) + task.layer_norm)


@pytest.mark.parametrize("kwargs", [
    dict(nc=3, sc=3, len=2, dim=3, freq="zipf"),
    dict(nc=3, sc=2, len=2, dim=4, classes=5, seed=3, layer_norm=True, eps=1e-5),
])
def test_nc_metrics_follow_the_toolkit_definitions(kwargs):
    task = fc.Task(**kwargs)
    W, U = random_weights(task)
    nc = fc.nc_metrics(task, W, U)
    F = phi(task, W)
    # tokens by concept, one unweighted sample per token, no classifier
    tok = nc_numpy(F, np.arange(task.n_w) // task.sc, np.ones(task.n_w))
    for key, want in tok.items():
        assert nc["tokens"][key] == pytest.approx(want, rel=1e-9), key
    assert nc["tokens"]["nc3"] is None and nc["tokens"]["nc4"] is None
    # class features: every sentence, probability prod_l mu_{beta_l}, classifier U
    X, y, p = [], [], []
    for k, z in enumerate(task.z):
        for beta in itertools.product(range(task.sc), repeat=task.len):
            X.append(np.concatenate([F[a * task.sc + b] for a, b in zip(z, beta)]))
            y.append(k)
            p.append(np.prod(task.mu[list(beta)]))
    cls = nc_numpy(np.array(X), np.array(y), np.array(p), U)
    for key, want in cls.items():
        assert nc["classes"][key] == pytest.approx(want, rel=1e-9, abs=1e-14), key
    assert nc["nc4_exact"] and nc["nc4_sentences"] == len(X)
    # analyze() carries the same
    assert fc.analyze(task, W, U)["nc"] == nc


def test_nc_at_a_hand_built_collapse():
    # Type I on the full latent set of 3 concepts, L = 2: w_(alpha,beta) = a f_alpha,
    # u_k = b (f_{z_k1}, f_{z_k2}) with f an equiangular frame.
    task = fc.Task(3, 2, 2, 3)
    f = np.eye(3) - 1 / 3
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    W = 2.0 * np.repeat(f, 2, axis=0)
    U = 0.5 * np.array([np.concatenate([f[a] for a in z]) for z in task.z])
    nc = fc.nc_metrics(task, W, U)
    t, c = nc["tokens"], nc["classes"]
    assert abs(t["nc1"]) < 1e-20 and t["nc2_cos_shift_means"] < 1e-12
    assert abs(c["nc1"]) < 1e-20 and c["nc3"] < 1e-12 and c["nc4"] == pytest.approx(1.0, abs=1e-12)
    # cos(m_j, m_k) is 1/4 with one shared position, -1/2 with none: 3/8 from -1/8
    assert c["nc2_cos_shift_means"] == pytest.approx(3 / 8, rel=1e-12)
    # moving one token off its concept shows in NC1 of both groupings
    W2 = W.copy()
    W2[0, 0] += 0.1
    nc2 = fc.nc_metrics(task, W2, U)
    assert nc2["tokens"]["nc1"] > 1e-6 and nc2["classes"]["nc1"] > 1e-6


def test_hessian_spectrum_matches_a_dense_finite_difference_hessian():
    task = fc.Task(3, 2, 2, 3, freq="zipf")
    W, U = random_weights(task, seed=4)
    x0 = np.concatenate([W.ravel(), U.ravel()])
    n, nw = x0.size, W.size

    def grad(x):
        _, gw, gu = fc.limit_risk_grad(task, x[:nw].reshape(W.shape), x[nw:].reshape(U.shape))
        return np.concatenate([gw.ravel(), gu.ravel()])

    h = 1e-5
    H = np.array([(grad(x0 + h * e) - grad(x0 - h * e)) / (2 * h) for e in np.eye(n)])
    H = (H + H.T) / 2
    eig = np.sort(np.linalg.eigvalsh(H))[::-1]
    s = fc.hessian_spectrum(task, W, U, top_k=4, hutchinson_probes=200, slq_probes=20, slq_steps=30, seed=1)
    assert s["n_params"] == n and s["top"]["converged"]
    np.testing.assert_allclose(s["top"]["values"], eig[:4], rtol=1e-6)
    # Hutchinson: within 5 standard errors; SLQ: unit mass, first moment ~ tr/n
    assert abs(s["trace"]["value"] - np.trace(H)) < 5 * s["trace"]["std_error"]
    grid, dens = np.array(s["density"]["grid"]), np.array(s["density"]["values"])
    mass = np.sum((dens[1:] + dens[:-1]) * np.diff(grid)) / 2
    assert mass == pytest.approx(1.0, abs=1e-6)
    first = np.sum((grid[1:] * dens[1:] + grid[:-1] * dens[:-1]) * np.diff(grid)) / 2
    assert first == pytest.approx(s["slq_mean"], abs=1e-6 * eig[0])
    # a normalised Rademacher probe q has Var(q^T H q) = 2 sum_{i != j} H_ij^2 / n^2
    off = (H ** 2).sum() - (np.diag(H) ** 2).sum()
    se = np.sqrt(2 * off / n ** 2 / 20)
    assert abs(s["slq_mean"] - np.trace(H) / n) < 5 * se
    # seeded
    assert fc.hessian_spectrum(task, W, U, top_k=4, hutchinson_probes=200, slq_probes=20,
                               slq_steps=30, seed=1) == s
    with pytest.raises(ValueError, match="hutchinson-probes"):
        fc.hessian_spectrum(task, W, U, hutchinson_probes=1)
    with pytest.raises(ValueError, match="budget"):
        fc.hessian_spectrum(task, W, U, budget=1.0)
