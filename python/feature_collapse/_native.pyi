"""Type stubs of the compiled module ``feature_collapse._native`` (PyO3).

Arrays are NumPy ``float64``: ``W`` shaped ``(n_w, d)``, ``U`` shaped
``(K, L*d)`` (the ``nn.Linear`` layout) or ``(K, L, d)``.
"""

from typing import Any, Dict, Optional, Tuple

import numpy as np
import numpy.typing as npt

__version__: str

class Task:
    """A validated task (docs/theory.md §1): ``n_c`` concepts of ``s_c`` tokens
    (``n_w = n_c s_c``), sentences of length ``L``, embedding dimension ``d``,
    ``K`` classes with latent variables ``z_k in [n_c]^L`` (all of ``[n_c]^L``
    when ``classes`` is ``None``, else ``classes`` drawn with ``seed``, or the
    rows of ``z``, an integer array of any dtype shaped ``(K, L)``, with
    ``classes`` left out or equal to ``K``), token frequencies ``mu_beta = 1/s_c`` (``'uniform'``) or
    ``∝ 1/beta^zipf_exponent`` (``'zipf'``; ``zipf_exponent`` is ignored for
    ``'uniform'``), LayerNorm without affine parameters with ``eps`` when
    ``layer_norm`` (``eps`` is ignored otherwise), weight decays ``lambda_w``,
    ``lambda_u``. ``norm`` (``'none'``, ``'layer'``, ``'rms'``, ``'center'``,
    ``'layer-affine'``; docs/theory.md §10) picks another normalization, with
    ``eps``; ``lambda_affine`` is the decay of the layer-affine gain and bias
    (default ``lambda_w``). Invalid settings raise ``ValueError`` with the CLI's
    message."""

    def __init__(
        self,
        nc: int,
        sc: int,
        len: int,
        dim: int,
        classes: Optional[int] = None,
        freq: str = "uniform",
        zipf_exponent: float = 1.0,
        layer_norm: bool = False,
        eps: float = 0.0,
        lambda_w: float = 0.01,
        lambda_u: float = 0.01,
        seed: int = 0,
        z: Optional[npt.ArrayLike] = None,
        norm: Optional[str] = None,
        lambda_affine: Optional[float] = None,
    ) -> None: ...
    @property
    def z(self) -> npt.NDArray[np.int64]:
        """``(K, L)``: row ``k`` is ``z_k`` (the order the library uses)."""
    @property
    def mu(self) -> npt.NDArray[np.float64]:
        """``mu_beta``, length ``s_c``, sums to 1."""
    @property
    def n_w(self) -> int: ...
    @property
    def k(self) -> int: ...
    @property
    def nc(self) -> int: ...
    @property
    def sc(self) -> int: ...
    @property
    def len(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def layer_norm(self) -> Optional[float]: ...
    @property
    def norm(self) -> str: ...
    @property
    def eps(self) -> Optional[float]: ...
    @property
    def lambda_w(self) -> float: ...
    @property
    def lambda_u(self) -> float: ...
    @property
    def seed(self) -> int: ...
    @property
    def full_latent(self) -> bool: ...
    def to_json(self) -> str:
        """The task as JSON (with ``z``), for ``fcollapse analyze --task``."""

def limit_risk(task: Task, w: npt.NDArray[np.float64], u: npt.NDArray[np.float64]) -> float:
    """Exact ``R(W,U) = (1/K) sum_k sum_beta (prod_l mu_{beta_l}) CE(h(x(z_k,beta)), k)
    + (lambda_W/2)||W||^2 + (lambda_U/2)||U||^2``."""

def limit_risk_grad(
    task: Task, w: npt.NDArray[np.float64], u: npt.NDArray[np.float64]
) -> Tuple[float, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(R, dR/dW, dR/dU)``, ``dR/dU`` shaped like ``U``."""

def predict(task: Task, form: str = "full") -> Dict[str, Any]:
    """Predicted collapsed constants in ``form`` (``full``, ``latent-set``, ``mean-field``)."""

def verify(task: Task, theorem: int, restarts: int = 16, seed: int = 0) -> Dict[str, Any]:
    """The fields of ``fcollapse verify --json`` for theorem 1, 2 or 3."""

HAS_CERTIFY: bool
"""Whether this module was built with the ``certify`` feature."""

def certify(task: Task, candidate: str = "predicted", candidate_scale: float = 1.0) -> Dict[str, Any]:
    """The fields of ``fcollapse certify --json`` (``NotImplementedError`` without the feature)."""

def collapse_metrics(
    task: Task, w: npt.NDArray[np.float64], u: npt.NDArray[np.float64]
) -> Dict[str, Any]:
    """Every collapse measure plus ``within_concept_spread = ||Phi - M||_F / ||Phi||_F``."""

def analyze(
    task: Task,
    w: npt.NDArray[np.float64],
    u: npt.NDArray[np.float64],
    budget: float = 2e10,
    samples: int = 20000,
    seed: int = 0,
) -> Dict[str, Any]:
    """What ``fcollapse analyze --json`` reports (metrics, family distances, limit risk)."""

def nc_metrics(
    task: Task,
    w: npt.NDArray[np.float64],
    u: npt.NDArray[np.float64],
    samples: int = 20000,
    seed: int = 0,
) -> Dict[str, Any]:
    """NC1-NC4 on tokens by concept and on class features (``analyze(...)["nc"]``)."""

def hessian_spectrum(
    task: Task,
    w: npt.NDArray[np.float64],
    u: npt.NDArray[np.float64],
    top_k: int = 5,
    hutchinson_probes: int = 100,
    slq_probes: int = 10,
    slq_steps: int = 60,
    slq_sigma: float = 0.01,
    seed: int = 0,
    budget: float = 2e10,
) -> Dict[str, Any]:
    """Top eigenvalues, Hutchinson trace and SLQ density of the Hessian of ``R`` at ``(W, U)``."""

def train(task: Task, **protocol: Any) -> Tuple[
    npt.NDArray[np.float64], npt.NDArray[np.float64], Dict[str, Any]
]:
    """SGD as ``fcollapse train``: ``(W (n_w, d), U (K, L*d), summary)``."""
