"""Tests of the Python package `feature_collapse` against independent
computations: finite differences, a PyTorch autograd implementation of the limit
risk written here (when torch is installed), and the `fcollapse` binary."""

import itertools
import json
import math

import numpy as np
import pytest

import feature_collapse as fc


def random_weights(task, scale=0.6, seed=0, u3=False):
    rng = np.random.default_rng(seed)
    W = scale * rng.standard_normal((task.n_w, task.dim))
    shape = (task.k, task.len, task.dim) if u3 else (task.k, task.len * task.dim)
    U = scale * rng.standard_normal(shape)
    return W, U


TASKS = {
    "uniform": dict(nc=3, sc=2, len=2, dim=4),
    "zipf-drawn": dict(nc=3, sc=3, len=2, dim=3, classes=5, freq="zipf", seed=4),
    "layernorm": dict(nc=2, sc=3, len=2, dim=3, freq="zipf", zipf_exponent=1.5,
                      layer_norm=True, eps=1e-3, lambda_w=0.02, lambda_u=0.005),
}


# ---------------------------------------------------------------- Task


def test_task_properties_follow_the_library_order():
    t = fc.Task(3, 2, 2, 4)
    assert (t.n_w, t.k, t.nc, t.sc, t.len, t.dim) == (6, 9, 3, 2, 2, 4)
    assert t.full_latent
    z = t.z
    assert z.dtype == np.int64 and z.shape == (9, 2)
    # the full latent set in lexicographic order, position L-1 fastest
    assert [tuple(r) for r in z] == list(itertools.product(range(3), repeat=2))
    np.testing.assert_allclose(t.mu, [0.5, 0.5])

    tz = fc.Task(2, 4, 3, 2, classes=5, freq="zipf", zipf_exponent=2.0, seed=7)
    assert tz.z.shape == (5, 3) and tz.z.min() >= 0 and tz.z.max() < 2
    raw = 1.0 / np.arange(1, 5) ** 2.0
    np.testing.assert_allclose(tz.mu, raw / raw.sum(), rtol=1e-15)
    # the same seed draws the same latent variables, another seed others
    assert np.array_equal(fc.Task(2, 4, 3, 2, classes=5, seed=7).z, tz.z)
    assert not np.array_equal(fc.Task(2, 4, 3, 2, classes=5, seed=8).z, tz.z)

    explicit = fc.Task(3, 2, 2, 4, z=np.array([[2, 0], [1, 1]]))
    assert explicit.k == 2 and explicit.z.tolist() == [[2, 0], [1, 1]]
    assert json.loads(explicit.to_json())["z"] == [2, 0, 1, 1]
    assert "K=2" in repr(explicit)


@pytest.mark.parametrize(
    "kwargs, flags",
    [
        (dict(nc=1, sc=2, len=2, dim=4), ["--nc", "1", "--sc", "2", "--len", "2", "--dim", "4"]),
        (dict(nc=3, sc=2, len=2, dim=4, classes=10),
         ["--nc", "3", "--sc", "2", "--len", "2", "--dim", "4", "--classes", "10"]),
        (dict(nc=3, sc=2, len=2, dim=4, lambda_w=-1.0),
         ["--nc", "3", "--sc", "2", "--len", "2", "--dim", "4", "--lambda-w", "-1"]),
        (dict(nc=3, sc=2, len=2, dim=4, freq="zipf", zipf_exponent=-1.0),
         ["--nc", "3", "--sc", "2", "--len", "2", "--dim", "4", "--zipf-exponent", "-1"]),
    ],
)
def test_task_validation_matches_the_cli(cli, kwargs, flags):
    with pytest.raises(ValueError) as err:
        fc.Task(**kwargs)
    out = cli("predict", *flags)
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {err.value}"


def test_bad_freq_and_z_are_value_errors():
    with pytest.raises(ValueError, match="freq"):
        fc.Task(3, 2, 2, 4, freq="normal")
    with pytest.raises(ValueError, match="latent.*concepts are 0..2"):
        fc.Task(3, 2, 2, 4, z=np.array([[0, 3], [1, 2]]))
    with pytest.raises(ValueError, match=r"\(K, L\)"):
        fc.Task(3, 2, 2, 4, z=np.array([0, 1]))
    # two classes with one latent variable, as the CLI's --z and task.json
    with pytest.raises(
        ValueError, match=r"`z`.*rows 0 and 2 \(0-based\) are the same latent variable \[1, 2\]"
    ):
        fc.Task(3, 2, 2, 4, z=np.array([[1, 2], [0, 0], [1, 2]]))


def test_drawn_latent_variables_are_distinct():
    # the README's task: 8 of the 9 latent variables of [3]^2, all distinct
    t = fc.Task(3, 4, 2, 6, classes=8, freq="zipf", seed=1)
    assert len({tuple(r) for r in t.z}) == 8
    for seed in range(5):
        z = fc.Task(3, 2, 3, 4, classes=12, seed=seed).z
        assert len({tuple(r) for r in z}) == 12


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64])
def test_z_of_any_integer_dtype_is_accepted(dtype):
    t = fc.Task(3, 2, 2, 4, z=np.array([[2, 0], [1, 1]], dtype=dtype))
    assert t.k == 2 and t.z.tolist() == [[2, 0], [1, 1]]
    assert fc.Task(3, 2, 2, 4, z=[[2, 0], [1, 1]]).z.tolist() == [[2, 0], [1, 1]]


def test_z_that_is_not_integer_or_negative_is_named():
    with pytest.raises(ValueError, match=r"`z` = dtype float64: expected an integer array"):
        fc.Task(3, 2, 2, 4, z=np.array([[2.0, 0.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"`z` = dtype bool: expected an integer array"):
        fc.Task(3, 2, 2, 4, z=np.array([[True, False], [False, True]]))
    with pytest.raises(ValueError, match=r"`z` = -1: entries must be concepts >= 0"):
        fc.Task(3, 2, 2, 4, z=np.array([[2, 0], [-1, 1]], dtype=np.int32))


def test_classes_that_disagree_with_z_are_named():
    z = np.array([[2, 0], [1, 1]])
    with pytest.raises(ValueError, match=r"`classes` = 3: z has 2 rows"):
        fc.Task(3, 2, 2, 4, classes=3, z=z)
    # the same count is no contradiction
    assert fc.Task(3, 2, 2, 4, classes=2, z=z).k == 2


# ---------------------------------------------------------------- limit risk


@pytest.mark.parametrize("name", sorted(TASKS))
@pytest.mark.parametrize("u3", [False, True])
def test_limit_risk_grad_matches_finite_differences(name, u3):
    task = fc.Task(**TASKS[name])
    W, U = random_weights(task, seed=len(name), u3=u3)
    r, dW, dU = fc.limit_risk_grad(task, W, U)
    assert r == pytest.approx(fc.limit_risk(task, W, U), rel=1e-13)
    assert dW.shape == W.shape and dU.shape == U.shape
    h = 1e-5
    for A, G in ((W, dW), (U, dU)):
        for idx in np.ndindex(A.shape):
            old = A[idx]
            A[idx] = old + h
            rp = fc.limit_risk(task, W, U)
            A[idx] = old - h
            rm = fc.limit_risk(task, W, U)
            A[idx] = old
            fd = (rp - rm) / (2 * h)
            assert G[idx] == pytest.approx(fd, rel=1e-6, abs=1e-8), (name, idx)


def test_limit_risk_accepts_float32_fortran_and_torch_layouts():
    task = fc.Task(**TASKS["uniform"])
    W, U = random_weights(task, seed=3)
    r = fc.limit_risk(task, W, U)
    assert fc.limit_risk(task, np.asfortranarray(W), np.asfortranarray(U)) == r
    U3 = U.reshape(task.k, task.len, task.dim)
    assert fc.limit_risk(task, W, U3) == r
    r32 = fc.limit_risk(task, W.astype(np.float32), U.astype(np.float32))
    assert r32 == pytest.approx(r, rel=1e-6)


def test_shape_errors_name_the_expected_shape():
    task = fc.Task(**TASKS["uniform"])
    W, U = random_weights(task)
    with pytest.raises(ValueError, match=r"\(n_w, d\) = \(6, 4\)"):
        fc.limit_risk(task, W.T, U)
    with pytest.raises(ValueError, match=r"\(K, L\*d\) = \(9, 8\)"):
        fc.collapse_metrics(task, W, U[:, :4])
    big = fc.Task(4, 30, 6, 3)
    with pytest.raises(ValueError, match="budget"):
        fc.limit_risk(big, *random_weights(big))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_value_errors(bad):
    task = fc.Task(**TASKS["uniform"])
    W, U = random_weights(task)
    Wb = W.copy()
    Wb[1, 2] = bad  # flat entry 1 * d + 2 = 6
    Ub = U.copy()
    Ub[3, 0] = bad  # flat entry 3 * L d = 24
    w_err = r"`w` = W: entry 6 \(flat, C order\) is -?(NaN|inf): weights must be finite"
    u_err = r"`u` = U: entry 24 \(flat, C order\) is -?(NaN|inf): weights must be finite"
    for f in (fc.limit_risk, fc.limit_risk_grad, fc.collapse_metrics, fc.analyze):
        with pytest.raises(ValueError, match=w_err):
            f(task, Wb, U)
        with pytest.raises(ValueError, match=u_err):
            f(task, W, Ub)
    # float32 and (K, L, d) inputs are checked alike
    with pytest.raises(ValueError, match=w_err):
        fc.limit_risk(task, Wb.astype(np.float32), U)
    with pytest.raises(ValueError, match=u_err):
        fc.limit_risk(task, W, Ub.reshape(task.k, task.len, task.dim))


def test_non_finite_weights_are_refused_as_the_cli_does(cli, tmp_path):
    task = fc.Task(**TASKS["uniform"])
    W, U = random_weights(task)
    W[0, 1] = np.nan
    np.save(tmp_path / "W.npy", W)
    np.save(tmp_path / "U.npy", U)
    with pytest.raises(ValueError) as err:
        fc.analyze(task, W, U)
    out = cli("analyze", "--w", tmp_path / "W.npy", "--u", tmp_path / "U.npy",
              "--nc", 3, "--sc", 2, "--len", 2, "--dim", 4)
    assert out.returncode == 2, out.stderr
    # the same message, but for the name of the array (a file for the CLI)
    assert "entry 1 (flat, C order) is NaN: weights must be finite" in str(err.value)
    assert "entry 1 (flat, C order) is NaN: weights must be finite" in out.stderr


def torch_limit_risk(torch, task, W, U):
    """The limit risk written directly in PyTorch (autograd gives the gradient):
    every rank tuple beta in [s_c]^L for every class k, weight prod_l mu_{beta_l}."""
    K, L, d, sc = task.k, task.len, task.dim, task.sc
    z = torch.as_tensor(task.z)
    betas = torch.tensor(list(itertools.product(range(sc), repeat=L)))  # (S, L)
    mu = torch.as_tensor(task.mu)
    weight = mu[betas].prod(dim=1)  # (S,)
    tokens = z[:, None, :] * sc + betas[None, :, :]  # (K, S, L)
    phi = W
    if task.layer_norm is not None:
        centred = W - W.mean(dim=1, keepdim=True)
        var = (centred**2).mean(dim=1, keepdim=True)
        phi = centred / torch.sqrt(var + task.layer_norm)
    x = phi[tokens]  # (K, S, L, d)
    h = torch.einsum("ksld,jld->ksj", x, U.reshape(K, L, d))
    ce = torch.logsumexp(h, dim=2) - h[torch.arange(K), :, torch.arange(K)]
    data = (ce * weight[None, :]).sum(dim=1).mean()
    return data + task.lambda_w / 2 * (W**2).sum() + task.lambda_u / 2 * (U**2).sum()


@pytest.mark.parametrize("name", sorted(TASKS))
def test_limit_risk_grad_matches_torch_autograd(name):
    torch = pytest.importorskip("torch", reason="torch not installed: autograd cross-check skipped")
    task = fc.Task(**TASKS[name])
    W, U = random_weights(task, seed=11)
    Wt = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    Ut = torch.tensor(U, dtype=torch.float64, requires_grad=True)
    rt = torch_limit_risk(torch, task, Wt, Ut)
    rt.backward()
    r, dW, dU = fc.limit_risk_grad(task, W, U)
    assert r == pytest.approx(rt.item(), rel=1e-12)
    np.testing.assert_allclose(dW, Wt.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dU, Ut.grad.numpy(), rtol=1e-10, atol=1e-13)


# ---------------------------------------------------------------- predict / verify


def test_predict_matches_the_cli(cli):
    task = fc.Task(3, 2, 2, 4, lambda_w=0.01, lambda_u=0.02)
    p = fc.predict(task, "full")
    out = cli("predict", "--nc", 3, "--sc", 2, "--len", 2, "--dim", 4,
              "--lambda-w", 0.01, "--lambda-u", 0.02, "--form", "full", "--json")
    assert out.returncode == 0, out.stderr
    c = json.loads(out.stdout)
    assert p["kind"] == c["kind"] == "I"
    for key in ("word_norm", "u_norm", "c", "risk", "r"):
        assert p[key] == c[key], key
    with pytest.raises(ValueError, match="form"):
        fc.predict(fc.Task(3, 2, 2, 4, classes=4), "full")


def test_verify_has_the_fields_of_verify_json(cli):
    task = fc.Task(3, 2, 2, 4)
    rep = fc.verify(task, 1, restarts=2, seed=0)
    out = cli("verify", "--theorem", 1, "--nc", 3, "--sc", 2, "--len", 2, "--dim", 4,
              "--restarts", 2, "--seed", 0, "--json")
    c = json.loads(out.stdout.splitlines()[0])
    missing = set(c) - set(rep)
    assert not missing, missing
    assert rep["version"] == c["version"] == fc.__version__
    assert rep["passed"] is c["passed"] is True
    assert rep["predicted_risk"] == c["predicted_risk"]
    assert rep["best_risk"] == pytest.approx(c["best_risk"], rel=1e-12)
    with pytest.raises(ValueError):
        fc.verify(task, 4)


# ---------------------------------------------------------------- certify


@pytest.mark.skipif(not fc.HAS_CERTIFY, reason="module built without the certify feature")
def test_certify_proves_the_prediction_and_matches_the_cli(cli):
    task = fc.Task(3, 3, 3, 4, freq="zipf", lambda_w=0.01, lambda_u=0.01)
    cert = fc.certify(task)
    assert cert["verdict"] == "proved", cert["reasons"]
    assert cert["phase"] == "collapsed" and cert["kind"] == "III"
    lo, hi = cert["risk_enclosure"]
    # R* is enclosed, narrowly, around the reduced prediction's risk
    r_pred = fc.predict(task, "full")["risk"]
    assert lo <= hi and (hi - lo) <= 1e-10 * abs(hi)
    assert abs(r_pred - 0.5 * (lo + hi)) <= 1e-9
    assert 0 < cert["distance_bound"] < cert["radius"]
    assert cert["transverse_lower_bound"] > 0
    out = cli("certify", "--theorem", 2, "--nc", 3, "--sc", 3, "--len", 3, "--dim", 4,
              "--lambda", 0.01, "--json")
    assert out.returncode == 0, out.stderr
    c = json.loads(out.stdout.splitlines()[0])
    assert c["risk_enclosure"] == cert["risk_enclosure"]
    assert c["enclosures"] == cert["enclosures"]


@pytest.mark.skipif(not fc.HAS_CERTIFY, reason="module built without the certify feature")
def test_certify_refuses_wrong_candidates_and_drawn_sets():
    task = fc.Task(3, 3, 3, 4, freq="zipf", lambda_w=0.01, lambda_u=0.01)
    wrong = fc.certify(task, candidate_scale=1.000001)
    assert wrong["verdict"] == "unproved" and wrong["reasons"]
    assert wrong["transverse_lower_bound"] is None
    assert fc.certify(task, candidate="type-i")["verdict"] == "unproved"
    with pytest.raises(ValueError, match="classes"):
        fc.certify(fc.Task(3, 2, 2, 4, classes=4))
    with pytest.raises(ValueError, match="candidate"):
        fc.certify(task, candidate="type-ii")


@pytest.mark.skipif(fc.HAS_CERTIFY, reason="module built with the certify feature")
def test_certify_without_the_feature_says_how_to_get_it():
    with pytest.raises(NotImplementedError, match="--features python,certify"):
        fc.certify(fc.Task(3, 2, 2, 4))


# ---------------------------------------------------------------- training and analysis


def numpy_train(task, steps=400, lr=0.5, n_spl=20, seed=1):
    """Full-batch gradient descent on the cross entropy plus weight decay, hand-written
    in NumPy (no LayerNorm): h_j = sum_l <u_{j,l}, w_{x_l}>."""
    rng = np.random.default_rng(seed)
    K, L, d, sc = task.k, task.len, task.dim, task.sc
    betas = rng.choice(sc, size=(K, n_spl, L), p=task.mu)
    X = (task.z[:, None, :] * sc + betas).reshape(-1, L)
    y = np.repeat(np.arange(K), n_spl)
    n = len(y)
    W = 0.1 * rng.standard_normal((task.n_w, d))
    U = 0.1 * rng.standard_normal((K, L, d))
    for _ in range(steps):
        E = W[X]
        h = np.einsum("nld,jld->nj", E, U)
        p = np.exp(h - h.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(n), y] -= 1.0
        g = p / n
        dU = np.einsum("nj,nld->jld", g, E) + task.lambda_u * U
        dE = np.einsum("nj,jld->nld", g, U)
        dW = task.lambda_w * W
        np.add.at(dW, X, dE)
        W -= lr * dW
        U -= lr * dU
    return W, U.reshape(K, L * d)


def torch_train(torch, task, steps=300, lr=0.5, n_spl=20, seed=1):
    """The same network as nn.Embedding + nn.Linear(L d, K, bias=False), trained in float32."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    K, L, d, sc = task.k, task.len, task.dim, task.sc
    betas = rng.choice(sc, size=(K, n_spl, L), p=task.mu)
    X = torch.as_tensor((task.z[:, None, :] * sc + betas).reshape(-1, L))
    y = torch.arange(K).repeat_interleave(n_spl)
    emb = torch.nn.Embedding(task.n_w, d)
    lin = torch.nn.Linear(L * d, K, bias=False)
    opt = torch.optim.SGD(list(emb.parameters()) + list(lin.parameters()), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        h = lin(emb(X).reshape(len(y), L * d))
        loss = torch.nn.functional.cross_entropy(h, y)
        loss = loss + task.lambda_w / 2 * (emb.weight**2).sum() + task.lambda_u / 2 * (lin.weight**2).sum()
        loss.backward()
        opt.step()
    return emb.weight.detach().numpy(), lin.weight.detach().numpy()


def trained_weights(task):
    try:
        import torch
    except ImportError:
        W, U = numpy_train(task)
        return W.astype(np.float32), U.astype(np.float32), "numpy"
    return (*torch_train(torch, task), "torch")


def assert_same(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)):
        assert b == pytest.approx(a, rel=1e-12, abs=1e-300), path
    else:
        assert a == b, path


def test_trained_network_gives_the_same_metrics_through_analyze_and_python(cli, tmp_path):
    task = fc.Task(3, 3, 2, 4, classes=6, freq="zipf", lambda_w=0.002, lambda_u=0.002, seed=2)
    W, U, how = trained_weights(task)
    assert W.dtype == np.float32
    np.save(tmp_path / "W.npy", W)
    np.save(tmp_path / "U.npy", np.asfortranarray(U))  # Fortran order on purpose
    np.save(tmp_path / "Z.npy", task.z.astype(np.int32))
    np.savez_compressed(tmp_path / "net.npz", W=W, U=U.reshape(task.k, task.len, task.dim))
    (tmp_path / "task.json").write_text(task.to_json())

    py_metrics = fc.collapse_metrics(task, W, U)
    py_analysis = fc.analyze(task, W, U)
    assert py_analysis["limit_risk"]["exact"]
    assert py_analysis["limit_risk"]["value"] == pytest.approx(fc.limit_risk(task, W, U), rel=1e-14)

    flags = ["--lambda", 0.002, "--freq", "zipf", "--json"]
    runs = {
        "flags+z": cli("analyze", "--w", "W.npy", "--u", "U.npy", "--z", "Z.npy", "--nc", 3, *flags, cwd=tmp_path),
        "task.json": cli("analyze", "--w", "W.npy", "--u", "U.npy", "--task", "task.json", "--json", cwd=tmp_path),
        "npz": cli("analyze", "--w", "net.npz:W", "--u", "net.npz:U", "--z", "Z.npy", "--nc", 3, *flags, cwd=tmp_path),
    }
    for name, out in runs.items():
        assert out.returncode == 0, (name, out.stderr)
        rep = json.loads(out.stdout)
        metrics = dict(rep["metrics"], within_concept_spread=rep["within_concept_spread"])
        assert_same(py_metrics, metrics, name)
        assert rep["limit_risk"]["value"] == pytest.approx(py_analysis["limit_risk"]["value"], rel=1e-12)
        assert_same(py_analysis["families"], rep["families"], name)
    # training did something: the classes are separated and the concepts are grouped
    assert py_metrics["within_spread_w"] < 0.5, (how, py_metrics)
    assert py_analysis["limit_risk"]["value"] < math.log(task.k), how


def test_analyze_cli_errors_name_the_file_and_shape(cli, tmp_path):
    task = fc.Task(3, 2, 2, 4)
    W, U = random_weights(task)
    np.save(tmp_path / "W.npy", W)
    np.save(tmp_path / "U.npy", U[:, :4])
    np.save(tmp_path / "Wi.npy", W.astype(np.int64))
    out = cli("analyze", "--w", "W.npy", "--u", "U.npy", "--nc", 3, "--len", 2, cwd=tmp_path)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "U.npy" in out.stderr and "(9, 8)" in out.stderr, out.stderr
    np.save(tmp_path / "U.npy", U)
    out = cli("analyze", "--w", "Wi.npy", "--u", "U.npy", "--nc", 3, cwd=tmp_path)
    assert out.returncode == 2 and "Wi.npy" in out.stderr and "'<i8'" in out.stderr, out.stderr
    out = cli("analyze", "--w", "W.npy", "--u", "U.npy", "--nc", 3, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["limit_risk"]["value"] == pytest.approx(fc.limit_risk(task, W, U), rel=1e-12)


def test_sampled_limit_risk_over_budget():
    task = fc.Task(3, 3, 2, 4, freq="zipf")
    W, U = random_weights(task, seed=5)
    exact = fc.limit_risk(task, W, U)
    s = fc.analyze(task, W, U, budget=1.0, samples=20_000, seed=3)["limit_risk"]
    assert not s["exact"] and s["n_samples"] == math.ceil(20_000 / task.k) * task.k
    assert abs(s["value"] - exact) < 5 * s["std_error"], (s, exact)


def test_train_returns_weights_and_a_decreasing_loss():
    task = fc.Task(3, 2, 2, 4, lambda_w=0.001, lambda_u=0.001, seed=1)
    W, U, summary = fc.train(task, epochs=40, n_spl=20, lr=0.5, batch=30, threads=1)
    assert W.shape == (6, 4) and U.shape == (9, 8)
    losses = summary["losses"]
    assert len(losses) == 40 and losses[-1] < 0.5 * losses[0]
    assert summary["train_accuracy"] > 0.9
    # same seed, same weights, whatever the thread count
    W2, U2, _ = fc.train(task, epochs=40, n_spl=20, lr=0.5, batch=30, threads=2)
    np.testing.assert_array_equal(W, W2)
    with pytest.raises(ValueError, match="unknown protocol key"):
        fc.train(task, epoch=3)
    with pytest.raises(ValueError, match="lr"):
        fc.train(task, lr=-1.0, epochs=1)
    assert summary["version"] == fc.__version__
    assert len(summary["losses"]) == summary["epochs"] == 40
    assert "gain" not in summary


def test_train_layer_affine_returns_its_gain_and_bias():
    task = fc.Task(3, 2, 2, 4, norm="layer-affine", lambda_w=0.0, lambda_u=0.001,
                   lambda_affine=0.01, seed=1)
    W, U, summary = fc.train(task, epochs=20, n_spl=20, lr=0.5, batch=30, threads=1)
    gain, bias = np.array(summary["gain"]), np.array(summary["bias"])
    assert gain.shape == bias.shape == (4,)
    # trained away from PyTorch's initialisation (1, 0)
    assert np.abs(gain - 1).max() > 1e-3 and np.abs(bias).max() > 1e-4
    assert summary["losses"][-1] < summary["losses"][0]


def test_train_names_the_argument_that_is_too_large():
    task = fc.Task(3, 2, 2, 4)
    with pytest.raises(ValueError, match=r"`n_test` = 1000000000000: K \* n_test \* L") as err:
        fc.train(task, n_test=10**12, epochs=1)
    assert "n_spl" not in str(err.value)
    with pytest.raises(ValueError, match=r"`n_spl` = 1000000000000: K \* n_spl \* L"):
        fc.train(task, n_spl=10**12, epochs=1)


# ---------------------------------------------------------------- Ctrl-C

CHILD = """
import sys, time
import feature_collapse as fc
task = fc.Task(3, 2, 2, 4)
print("ready", flush=True)
start = time.monotonic()
try:
    if sys.argv[1] == "train":
        fc.train(task, epochs=10**8, n_spl=5, threads=1)
    else:
        fc.verify(task, 1, restarts=100_000)
    print("finished", flush=True)
except KeyboardInterrupt:
    print(f"KeyboardInterrupt after {time.monotonic() - start:.3f} s", flush=True)
    # the library is usable again: the next call is not stopped
    print("verify after", fc.verify(task, 1, restarts=2)["passed"], flush=True)
"""


@pytest.mark.parametrize("call", ["train", "verify"])
def test_ctrl_c_raises_keyboard_interrupt_in_long_calls(call):
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", CHILD, call], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # the call is under way (uninterrupted it lasts for hours)
        assert child.poll() is None
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    lines = out.splitlines()
    assert lines[0].startswith("KeyboardInterrupt after"), (out, err)
    # the signal came during the call, not before it
    assert float(lines[0].split()[2]) >= 0.9, lines
    assert lines[1] == "verify after True", (out, err)
    assert child.returncode == 0, err


def test_example_notebook_runs():
    """Every code cell of examples/feature_collapse.ipynb, in order, in one namespace."""
    from conftest import REPO

    nb = json.loads((REPO / "examples" / "feature_collapse.ipynb").read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(cells) >= 4
    ns = {}
    for cell in cells:
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        exec(compile(src, "notebook", "exec"), ns)
    assert ns["summary"]["losses"][-1] < ns["summary"]["losses"][0]
    assert ns["fd"] == pytest.approx(ns["dW"][0, 0], rel=1e-5, abs=1e-9)
