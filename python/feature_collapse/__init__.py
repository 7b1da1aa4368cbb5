"""Python interface of ``feature-collapse``, the numerical verifier for *Feature
Collapse* (Laurent, von Brecht, Bresson, ICLR 2024).

The Rust library is the only implementation: every function here converts its
arguments to NumPy ``float64`` arrays and calls the compiled module
``feature_collapse._native`` (which releases the GIL while it computes).

Symbols (docs/theory.md §1-2): ``n_c`` concepts of ``s_c`` tokens each (``n_w = n_c s_c``
tokens, token ``t = alpha s_c + beta``), frequencies ``mu_beta`` inside a concept,
``K`` classes with latent variables ``z_k in [n_c]^L``, embedding ``W``
(``n_w x d``, row ``t`` is ``w_t``, a PyTorch ``nn.Embedding`` weight), optional
LayerNorm ``phi`` without affine parameters, classifier ``U`` (``K x L d``, row
``j`` is ``u_{j,0} .. u_{j,L-1}``, an ``nn.Linear(L d, K, bias=False)`` weight;
``K x L x d`` is accepted too), scores ``h_j(x) = sum_l <u_{j,l}, phi(w_{x_l})>``.

Errors on bad input raise ``ValueError`` with the message ``fcollapse`` prints
(non-finite weights included). Ctrl-C interrupts ``train`` and ``verify`` with
``KeyboardInterrupt``. ``predict``, ``verify``, ``analyze`` and the ``train``
summary carry the package ``version``.

``certify`` (a computer-assisted proof in interval arithmetic, ``fcollapse
certify``) needs a module built with the crate's ``certify`` feature;
``HAS_CERTIFY`` says whether this one was. The published wheel is built without
it, and there ``certify`` raises ``NotImplementedError``.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from . import _native
from ._native import HAS_CERTIFY, Task, __version__

__all__ = [
    "Task",
    "limit_risk",
    "limit_risk_grad",
    "predict",
    "verify",
    "collapse_metrics",
    "analyze",
    "nc_metrics",
    "hessian_spectrum",
    "train",
    "certify",
    "HAS_CERTIFY",
    "__version__",
]


def _f64(a: Any) -> np.ndarray:
    """``a`` as a NumPy float64 array (a torch tensor is detached and moved to the CPU)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def limit_risk(task: Task, W: Any, U: Any) -> float:
    """The exact large-sample limit risk

    ``R(W,U) = (1/K) sum_k sum_{beta in [s_c]^L} (prod_l mu_{beta_l}) CE(h(x(z_k, beta)), k)
    + (lambda_W/2) ||W||_F^2 + (lambda_U/2) ||U||_F^2``

    with ``x(z_k, beta)_l = (z_{k,l}, beta_l)``, enumerated exactly. Raises
    ``ValueError`` when the enumeration is over the default work budget.
    """
    return _native.limit_risk(task, _f64(W), _f64(U))


def limit_risk_grad(task: Task, W: Any, U: Any) -> Tuple[float, np.ndarray, np.ndarray]:
    """``(R(W,U), dR/dW, dR/dU)`` with ``dR/dU`` shaped like ``U``:

    ``dR/du_{j,l} = (1/K) sum_k sum_beta P(beta) (softmax_j(h) - [j = k]) phi(w_{x_l}) + lambda_U u_{j,l}``,
    and ``dR/dW`` the chain rule of the same through ``phi`` plus ``lambda_W W``.
    """
    return _native.limit_risk_grad(task, _f64(W), _f64(U))


def predict(task: Task, form: str = "full") -> Dict[str, Any]:
    """The predicted collapsed configuration (docs/theory.md §3-4) in ``form``
    (``'full'``, ``'latent-set'`` or ``'mean-field'``): collapse type ``kind``,
    word norm (``a`` for type I, ``sqrt(d)`` for type II, mean ``r_beta`` for
    type III), ``r`` (norm of ``phi(w)`` per rank), ``u_norm`` = ``b``, ``c``,
    and the reduced ``risk``."""
    return _native.predict(task, form)


def verify(task: Task, theorem: int, restarts: int = 16, seed: int = 0) -> Dict[str, Any]:
    """Checks theorem 1, 2 or 3 on ``task`` as ``fcollapse verify --json`` does
    (random L-BFGS restarts on ``R``, the prediction, its gradient and Hessian);
    returns the same fields, ``passed`` among them."""
    return _native.verify(task, theorem, restarts, seed)


def collapse_metrics(task: Task, W: Any, U: Any) -> Dict[str, Any]:
    """Every collapse measure of ``(W, U)`` (``within_spread_w`` =
    ``sum_t ||phi(w_t) - m_alpha(t)||^2 / (s_c sum_alpha ||m_alpha - g||^2)``,
    direction spreads, Gram errors, ``duality``, norms per rank, PCA singular
    values, ...) plus ``within_concept_spread`` = ``||Phi - M||_F / ||Phi||_F``."""
    return _native.collapse_metrics(task, _f64(W), _f64(U))


def analyze(
    task: Task,
    W: Any,
    U: Any,
    budget: float = 2e10,
    samples: int = 20_000,
    seed: int = 0,
) -> Dict[str, Any]:
    """What ``fcollapse analyze --json`` reports: ``metrics``,
    ``within_concept_spread``, ``families`` (distance to the predicted collapsed
    family per form), ``limit_risk`` (exact within ``budget`` operations,
    else a Monte-Carlo estimate from ``samples`` sentences with its
    ``std_error``) and ``nc`` (NC1-NC4, see :func:`nc_metrics`)."""
    return _native.analyze(task, _f64(W), _f64(U), budget, samples, seed)


def nc_metrics(task: Task, W: Any, U: Any, samples: int = 20_000, seed: int = 0) -> Dict[str, Any]:
    """The neural-collapse measures NC1-NC4 of Papyan, Han & Donoho (PNAS 2020),
    as ``analyze(...)["nc"]``: ``tokens`` (the representations ``phi(w_t)`` grouped
    by concept; NC1, NC2 only, there is no classifier over concepts) and
    ``classes`` (sentence features ``(phi(w_{x_1}), .., phi(w_{x_L}))`` by class,
    weighted by ``prod_l mu_{beta_l}``, classifier ``U``). ``nc1`` =
    ``tr(Sigma_W Sigma_B^+)/K``; ``nc2_*`` the coefficient of variation of the
    centred class-mean (and classifier) norms, the std of their pairwise cosines
    and the mean ``|cos + 1/(K-1)|``; ``nc3`` = ``||U/||U||_F - M/||M||_F||_F``;
    ``nc4`` the fraction of sentences where ``U`` and the nearest class mean
    agree (exact when ``K s_c^L <= samples``, else from ``samples`` seeded draws)."""
    return _native.nc_metrics(task, _f64(W), _f64(U), samples, seed)


def hessian_spectrum(
    task: Task,
    W: Any,
    U: Any,
    top_k: int = 5,
    hutchinson_probes: int = 100,
    slq_probes: int = 10,
    slq_steps: int = 60,
    slq_sigma: float = 0.01,
    seed: int = 0,
    budget: float = 2e10,
) -> Dict[str, Any]:
    """The spectrum of the Hessian of the exact limit risk ``R`` at ``(W, U)``
    (``fcollapse analyze --hessian``; exact products ``H v``, analytic second
    derivatives of the exact risk): ``top`` (the ``top_k`` largest eigenvalues by Lanczos,
    with residuals), ``trace`` (Hutchinson, Rademacher probes, with
    ``std_error``), ``slq`` (stochastic Lanczos quadrature nodes and weights),
    ``slq_mean`` (an estimate of ``tr H / n``) and ``density`` (Gaussian-broadened
    on ``grid``). Raises ``ValueError`` over the work ``budget``."""
    return _native.hessian_spectrum(
        task, _f64(W), _f64(U), top_k, hutchinson_probes, slq_probes, slq_steps, slq_sigma, seed, budget
    )


def train(task: Task, **protocol: Any) -> Tuple[np.ndarray, np.ndarray, Dict[str, Any]]:
    """Finite-sample SGD on the cross entropy plus weight decay, as
    ``fcollapse train`` (no files written). ``protocol`` keys: ``n_spl``
    (sentences per class, default 5), ``n_test`` (5), ``epochs`` (1200), ``lr``
    (0.1), ``batch`` (100), ``seed`` (the task's), ``threads`` (0 = all cores).
    Returns ``(W, U, summary)`` with ``W`` ``(n_w, d)``, ``U`` ``(K, L d)`` and
    ``summary`` holding the per-epoch ``losses`` and the train/test accuracy."""
    return _native.train(task, **protocol)


def certify(task: Task, candidate: str = "predicted", candidate_scale: float = 1.0) -> Dict[str, Any]:
    """The computer-assisted proof of ``fcollapse certify --json`` for ``task``
    (full latent set), as a dict: ``verdict`` (``'proved'`` or ``'unproved'``,
    with ``reasons``), ``phase``, ``risk_enclosure`` (``[lo, hi]`` enclosing
    ``R*``), ``transverse_lower_bound`` ``m``, ``radius`` ``r`` and
    ``distance_bound`` (collapsed phase: the transverse Hessian is ``>= m`` on the
    ball of radius ``r`` around the candidate, which holds a strict local
    minimiser up to symmetry within ``distance_bound``), every enclosure with
    exact endpoints, the instance and ``version``. ``candidate`` is
    ``'predicted'`` (the theory's prediction), ``'type-i'`` or ``'origin'``;
    ``candidate_scale`` multiplies its classifier norm ``b`` (anything but 1 is a
    wrong candidate, which must come back unproved). Raises ``ValueError`` on a
    drawn latent set or an instance too large, and ``NotImplementedError`` when
    the module was built without the ``certify`` feature (``HAS_CERTIFY`` is
    False)."""
    return _native.certify(task, candidate, candidate_scale)
