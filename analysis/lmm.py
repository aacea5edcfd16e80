"""Linear mixed models: lme4's profiled (RE)ML criterion, solved exactly, and statsmodels started at its optimum.

For the random-effect structures of the study (``Structure``: ``(1 | g)``, ``(1 + x | g)``, class
pair and run within pair, with or without slopes) the criterion reduces to sums of small blocks
per run and class pair. ``profiled_fit`` maximises it; ``fit_profiled`` reports that optimum with
lme4's inference; ``fit_mixed`` hands it to statsmodels' ``MixedLM`` as the start. Kept beside
statsmodels because it matches lme4 and statsmodels alone is slow and sometimes stops early on
these models (docs/analysis.md, "Mixed models").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as sps

__all__ = ["Structure", "ProfiledFit", "profiled_fit", "MixedFit", "fit_mixed", "fit_profiled", "BOUNDARY_THETA"]

_LOG_2PI = float(np.log(2.0 * np.pi))
_BAD = 1e300  # criterion value where it is undefined (numerically singular X'V^-1 X)

#: A relative standard deviation below this counts as zero (a variance on the
#: boundary, a "singular fit" in lme4's words).
BOUNDARY_THETA = 1e-4


@dataclass(frozen=True)
class Structure:
    """Random effects: ``kind`` in {"intercept", "slope", "nested", "nested_slope"}.

    ``group`` is the grouping column (the outer one for the nested kinds),
    ``inner`` the inner grouping column of the nested kinds, ``slope`` the
    numeric column of ``slope`` and ``nested_slope``.
    """

    kind: str
    group: str
    inner: str | None = None
    slope: str | None = None

    def __post_init__(self) -> None:
        if self.kind in ("nested", "nested_slope") and not self.inner:
            raise ValueError(f"random-effect structure {self.kind!r} needs its inner grouping column")
        if self.kind in ("slope", "nested_slope") and not self.slope:
            raise ValueError(f"random-effect structure {self.kind!r} needs its slope column")

    def describe(self) -> str:
        if self.kind == "intercept":
            return f"(1 | {self.group})"
        if self.kind == "slope":
            return f"(1 + {self.slope} | {self.group})"
        if self.kind == "nested":
            return f"(1 | {self.group}) + (1 | {self.inner})"
        if self.kind == "nested_slope":
            return f"(1 + {self.slope} | {self.group}) + (1 + {self.slope} | {self.inner})"
        raise ValueError(f"unknown random-effect structure {self.kind!r}")

    @property
    def theta_names(self) -> list[str]:
        if self.kind == "intercept":
            return [f"sd({self.group})"]
        if self.kind == "nested":
            return [f"sd({self.group})", f"sd({self.inner})"]
        if self.kind == "nested_slope":
            return [
                f"{self.group}:L11",
                f"{self.group}:L21",
                f"{self.group}:L22",
                f"{self.inner}:L11",
                f"{self.inner}:L21",
                f"{self.inner}:L22",
            ]
        return ["L11", "L21", "L22"]

    @property
    def diagonal(self) -> list[int]:
        """Indices of theta that are standard deviations (bounded below by 0)."""
        if self.kind == "slope":
            return [0, 2]
        if self.kind == "nested_slope":
            return [0, 2, 3, 5]
        return list(range(len(self.theta_names)))


# ---------------------------------------------------------------------------
# Sufficient statistics
# ---------------------------------------------------------------------------


def _codes(values) -> np.ndarray:
    return pd.factorize(pd.Series(values).astype(str), sort=True)[0]


@dataclass
class _Levels:
    """Two-level random intercepts: per inner group sums, and its outer group."""

    n: np.ndarray  # (R,) rows per inner group
    x: np.ndarray  # (R, p) column sums of X
    y: np.ndarray  # (R,) sums of y
    outer: np.ndarray | None  # (R,) outer group code, None for one level


@dataclass
class _Blocks:
    """Per-group cross products for ``slope``: A = Z'Z, B = Z'X, c = Z'y."""

    A: np.ndarray  # (G, 2, 2)
    B: np.ndarray  # (G, 2, p)
    c: np.ndarray  # (G, 2)
    outer: np.ndarray | None = None  # (G,) outer group code of each group (nested_slope)
    outer_sum: np.ndarray | None = None  # (O, G) 0/1: which groups each outer group holds


@dataclass
class _Sums:
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    n: int
    p: int
    levels: _Levels | None = None
    blocks: _Blocks | None = None


def _group_sum(codes: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Sums of the rows of ``values`` per group code 0..n_groups-1 (sort + reduceat; np.add.at is slow)."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    sums = np.add.reduceat(values[order], starts, axis=0)
    out = np.zeros((n_groups,) + values.shape[1:])
    out[sorted_codes[starts]] = sums
    return out


def _sums(y: np.ndarray, X: np.ndarray, data: pd.DataFrame, structure: Structure) -> _Sums:
    n, p = X.shape
    s = _Sums(XtX=X.T @ X, Xty=X.T @ y, yty=float(y @ y), n=n, p=p)
    if structure.kind in ("intercept", "nested"):
        inner_col = structure.group if structure.kind == "intercept" else structure.inner
        if structure.kind == "nested":
            keys = data[structure.group].astype(str) + "\x1f" + data[inner_col].astype(str)
        else:
            keys = data[inner_col].astype(str)
        inner = _codes(keys)
        R = int(inner.max()) + 1
        counts = np.bincount(inner, minlength=R).astype(np.float64)
        xy = _group_sum(inner, np.column_stack([X, y]), R)
        outer = None
        if structure.kind == "nested":
            outer_codes = _codes(data[structure.group])
            outer = np.zeros(R, dtype=int)
            outer[inner] = outer_codes
        s.levels = _Levels(n=counts, x=xy[:, :p], y=xy[:, p], outer=outer)
        return s
    if structure.kind in ("slope", "nested_slope"):
        if structure.kind == "nested_slope":
            outer_codes = _codes(data[structure.group])
            g = _codes(data[structure.group].astype(str) + "\x1f" + data[structure.inner].astype(str))
        else:
            g = _codes(data[structure.group])
        G = int(g.max()) + 1
        x = data[structure.slope].to_numpy(dtype=np.float64)
        one = np.ones(n)
        # per group: Z'Z = [[n, sum x], [sum x, sum x^2]], Z'X, Z'y with Z = [1, x]
        stacked = np.column_stack([one, x, x * x, X, X * x[:, None], y, y * x])
        sums = _group_sum(g, stacked, G)
        A = np.empty((G, 2, 2))
        A[:, 0, 0], A[:, 0, 1], A[:, 1, 1] = sums[:, 0], sums[:, 1], sums[:, 2]
        A[:, 1, 0] = A[:, 0, 1]
        B = np.stack([sums[:, 3 : 3 + p], sums[:, 3 + p : 3 + 2 * p]], axis=1)
        c = sums[:, 3 + 2 * p : 3 + 2 * p + 2]
        s.blocks = _Blocks(A=A, B=B, c=c)
        if structure.kind == "nested_slope":
            outer = np.zeros(G, dtype=int)
            outer[g] = outer_codes
            s.blocks.outer = outer
            s.blocks.outer_sum = (outer[None, :] == np.arange(int(outer.max()) + 1)[:, None]).astype(np.float64)
        return s
    raise ValueError(f"unknown random-effect structure {structure.kind!r}")


# ---------------------------------------------------------------------------
# The profiled criterion
# ---------------------------------------------------------------------------


def _weighted(s: _Sums, theta: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, float, float]:
    """X'V*X, X'V*y, y'V*y (V* = sigma^2 V^-1) and log|I + Z Psi Z'|."""
    if kind in ("intercept", "nested"):
        lv = s.levels
        assert lv is not None
        psi_in = theta[-1] ** 2
        denom = 1.0 + psi_in * lv.n
        a = psi_in / denom
        XtWX = s.XtX - (lv.x * a[:, None]).T @ lv.x
        XtWy = s.Xty - (lv.x * a[:, None]).T @ lv.y
        ytWy = s.yty - float(a @ (lv.y * lv.y))
        logdet = float(np.sum(np.log(denom)))
        if kind == "nested":
            assert lv.outer is not None
            psi_out = theta[0] ** 2
            d = 1.0 / denom
            O = int(lv.outer.max()) + 1
            uvs = _group_sum(lv.outer, np.column_stack([lv.x * d[:, None], lv.y * d, lv.n * d]), O)
            u, v, so = uvs[:, : s.p], uvs[:, s.p], uvs[:, s.p + 1]
            b = psi_out / (1.0 + psi_out * so)
            XtWX = XtWX - (u * b[:, None]).T @ u
            XtWy = XtWy - (u * b[:, None]).T @ v
            ytWy = ytWy - float(b @ (v * v))
            logdet += float(np.sum(np.log1p(psi_out * so)))
        return XtWX, XtWy, ytWy, logdet
    bl = s.blocks
    assert bl is not None
    if kind == "slope":
        dXX, dXy, dyy, logdet, _ = _woodbury_2x2(bl.A, bl.B, bl.c, theta[:3], keep=False)
        return s.XtX - dXX, s.Xty - dXy, s.yty - dyy, logdet
    # nested_slope: the run level first (theta[3:]), then the pair level (theta[:3]) on the run-reduced sums
    dXX, dXy, dyy, logdet, (P, Q, r) = _woodbury_2x2(bl.A, bl.B, bl.c, theta[3:], keep=True)
    assert bl.outer_sum is not None
    O = bl.outer_sum.shape[0]
    p = s.p
    stacked = np.concatenate([P.reshape(len(P), 4), Q.reshape(len(Q), 2 * p), r], axis=1)
    sums = bl.outer_sum @ stacked
    Po = sums[:, :4].reshape(O, 2, 2)
    Qo = sums[:, 4 : 4 + 2 * p].reshape(O, 2, p)
    ro = sums[:, 4 + 2 * p :]
    eXX, eXy, eyy, logdet_o, _ = _woodbury_2x2(Po, Qo, ro, theta[:3], keep=False)
    return s.XtX - dXX - eXX, s.Xty - dXy - eXy, s.yty - dyy - eyy, logdet + logdet_o


def _woodbury_2x2(A: np.ndarray, B: np.ndarray, c: np.ndarray, theta, keep: bool):
    """One level of (1 + x | group) effects removed from cross products by Woodbury's identity.

    For each group with ``A = Z'WZ``, ``B = Z'WX``, ``c = Z'Wy`` (W the
    inverse covariance so far, relative to sigma^2) and ``Lambda = [[a, 0], [b,
    d]]``: ``M = I + Lambda' A Lambda``, ``K = Lambda M^-1 Lambda'``. Returns
    the reductions ``sum B'KB``, ``sum B'Kc``, ``sum c'Kc``, ``sum log|M|`` and,
    when ``keep``, the reduced blocks ``A - AKA``, ``B - AKB``, ``c - AKc``
    (what the next level up sees).
    """
    a, b, d = theta
    A00, A01, A11 = A[:, 0, 0], A[:, 0, 1], A[:, 1, 1]
    m00 = 1.0 + a * (A00 * a + A01 * b) + b * (A01 * a + A11 * b)
    m01 = d * (a * A01 + b * A11)
    m11 = 1.0 + d * d * A11
    det = m00 * m11 - m01 * m01
    i00, i01, i11 = m11 / det, -m01 / det, m00 / det
    k00 = a * a * i00
    k01 = a * (b * i00 + d * i01)
    k11 = b * b * i00 + 2.0 * b * d * i01 + d * d * i11
    B0, B1 = B[:, 0, :], B[:, 1, :]
    c0, c1 = c[:, 0], c[:, 1]
    KB0 = k00[:, None] * B0 + k01[:, None] * B1
    KB1 = k01[:, None] * B0 + k11[:, None] * B1
    dXX = B0.T @ KB0 + B1.T @ KB1
    dXy = KB0.T @ c0 + KB1.T @ c1
    dyy = float(np.sum(k00 * c0 * c0 + 2.0 * k01 * c0 * c1 + k11 * c1 * c1))
    with np.errstate(divide="ignore", invalid="ignore"):
        logdet = float(np.sum(np.log(det)))
    kept = None
    if keep:  # written out: einsum over (G, 2, 2) blocks costs more than the rest of the criterion
        ak00, ak01 = A00 * k00 + A01 * k01, A00 * k01 + A01 * k11
        ak10, ak11 = A01 * k00 + A11 * k01, A01 * k01 + A11 * k11
        P = np.empty_like(A)
        P[:, 0, 0] = A00 - (ak00 * A00 + ak01 * A01)
        P[:, 0, 1] = P[:, 1, 0] = A01 - (ak00 * A01 + ak01 * A11)
        P[:, 1, 1] = A11 - (ak10 * A01 + ak11 * A11)
        Q = np.stack(
            [B0 - (ak00[:, None] * B0 + ak01[:, None] * B1), B1 - (ak10[:, None] * B0 + ak11[:, None] * B1)], axis=1
        )
        r = np.column_stack([c0 - (ak00 * c0 + ak01 * c1), c1 - (ak10 * c0 + ak11 * c1)])
        kept = (P, Q, r)
    return dXX, dXy, dyy, logdet, kept


def _criterion(theta: np.ndarray, s: _Sums, kind: str, reml: bool):
    """(-2 log-likelihood, beta, sigma^2) at theta, with beta and sigma^2 profiled out."""
    XtWX, XtWy, ytWy, logdet = _weighted(s, theta, kind)
    try:
        chol = np.linalg.cholesky(XtWX)
    except np.linalg.LinAlgError:  # a finite "bad" value keeps the optimisers' arithmetic clean
        return _BAD, np.full(s.p, np.nan), np.nan
    beta = np.linalg.solve(XtWX, XtWy)
    rwr = float(ytWy - beta @ XtWy)
    if not (rwr > 0 and np.isfinite(logdet)):
        return _BAD, beta, np.nan
    if reml:
        dof = s.n - s.p
        sigma2 = rwr / dof
        dev = dof * (_LOG_2PI + np.log(sigma2) + 1.0) + logdet + 2.0 * float(np.sum(np.log(np.diag(chol))))
    else:
        sigma2 = rwr / s.n
        dev = s.n * (_LOG_2PI + np.log(sigma2) + 1.0) + logdet
    return float(dev), beta, sigma2


@dataclass
class ProfiledFit:
    """Optimum of the profiled criterion.

    ``psi`` is the random-effect covariance relative to ``sigma2`` (q x q; for
    ``nested`` the 2 x 2 diagonal of the outer and inner variances);
    ``loglik`` the maximised (RE)ML log-likelihood (lme4's ``logLik``).
    """

    theta: np.ndarray
    beta: np.ndarray
    sigma2: float
    psi: np.ndarray
    deviance: float
    reml: bool
    success: bool
    message: str
    on_boundary: list[str]
    cov_beta: np.ndarray | None = None  # sigma^2 (X' V*^-1 X)^-1, lme4's vcov()

    @property
    def loglik(self) -> float:
        return -0.5 * self.deviance


def _lbfgs(f, x0: np.ndarray, bounds, step: float = 1e-6):
    """L-BFGS-B with central-difference gradients on a shifted objective."""
    f0 = f(x0)
    if not np.isfinite(f0):
        f0 = 0.0

    def shifted(x):
        return f(x) - f0

    def grad(x):
        g = np.empty_like(x)
        for i in range(x.size):
            h = step * max(1.0, abs(x[i]))
            lo, hi = x.copy(), x.copy()
            lo_b = bounds[i][0]
            hi[i] += h
            lo[i] -= h
            if lo_b is not None and lo[i] < lo_b:
                lo[i] = x[i]
                g[i] = (shifted(hi) - shifted(lo)) / h
            else:
                g[i] = (shifted(hi) - shifted(lo)) / (2 * h)
        return g

    res = optimize.minimize(
        shifted, x0, jac=grad, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-11, "gtol": 1e-7, "maxiter": 300}
    )
    return res


def _nested_slope_starts(y, X, data: pd.DataFrame, structure: Structure, reml: bool) -> list[np.ndarray]:
    """Start values of the nested random-slope fit, from its two simpler relatives."""
    # the criterion can have several local optima (seen on the authors' `start`, where the pair and the
    # run intercepts trade off): start from the intercepts of the nested intercept-only fit and from
    # the run-level random-slope fit, the pair slope at a half and a fifth of the run slope
    run_key = data[structure.group].astype(str) + "\x1f" + data[structure.inner].astype(str)
    keyed = data.assign(_run_key=run_key)
    r = profiled_fit(y, X, keyed, Structure("slope", "_run_key", slope=structure.slope), reml=reml, polish=False).theta
    n2 = profiled_fit(
        y, X, keyed, Structure("nested", structure.group, inner="_run_key"), reml=reml, polish=False
    ).theta
    starts = [
        np.r_[n2[0], 0.0, 0.5 * r[2] + 1e-4, n2[1], r[1], r[2]],
        np.r_[0.5 * r[0] + 0.01, 0.0, 0.5 * r[2] + 1e-4, r],
        np.r_[0.2 * r[0] + 0.01, 0.0, 0.2 * r[2] + 1e-4, r],
    ]
    return starts


def _one_level_starts(
    y, X, data: pd.DataFrame, structure: Structure, reml: bool
) -> tuple[list[np.ndarray], list[tuple[float | None, None]]]:
    """Start values and bounds of the nested and random-slope fits, from the one-level intercept fit."""
    # one-level start: the run (inner) intercept alone
    kind = structure.kind
    inner = structure.group if kind == "slope" else structure.inner
    assert inner is not None, structure
    one = Structure("intercept", inner)
    if kind == "nested":
        one_s = _sums(
            y,
            X,
            data.assign(**{inner: data[structure.group].astype(str) + "\x1f" + data[inner].astype(str)}),
            one,
        )
    else:
        one_s = _sums(y, X, data, one)
    t0 = _brent_intercept(lambda t: _criterion(np.array([t]), one_s, "intercept", reml)[0])
    if kind == "nested":
        starts = [np.array([0.5 * t0 + 0.05, t0]), np.array([2.0 * t0 + 0.1, t0])]
        bounds: list[tuple[float | None, None]] = [(0.0, None), (0.0, None)]
    else:
        sd = float(np.std(data[structure.slope].to_numpy(dtype=np.float64))) or 1.0
        starts = [np.array([t0, 0.0, 0.1 / sd]), np.array([t0, 0.0, 0.01 / sd])]
        bounds = [(0.0, None), (None, None), (0.0, None)]
    return starts, bounds


def _relative_covariance(theta: np.ndarray, kind: str) -> np.ndarray:
    """psi, the random effects' covariance relative to sigma^2, from the Cholesky factors in theta."""
    if kind == "nested":
        return np.diag([theta[0] ** 2, theta[1] ** 2])
    if kind == "slope":
        lam = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
        return lam @ lam.T
    if kind == "nested_slope":  # block diagonal: the outer (pair) 2 x 2, then the inner (run) 2 x 2
        psi = np.zeros((4, 4))
        for k in (0, 1):
            lam = np.array([[theta[3 * k], 0.0], [theta[3 * k + 1], theta[3 * k + 2]]])
            psi[2 * k : 2 * k + 2, 2 * k : 2 * k + 2] = lam @ lam.T
        return psi
    return np.array([[theta[0] ** 2]])


def profiled_fit(
    y,
    X,
    data: pd.DataFrame,
    structure: Structure,
    reml: bool = True,
    polish: bool = True,
    start: np.ndarray | None = None,
) -> ProfiledFit:
    """Maximise the profiled (RE)ML likelihood over theta.

    One-dimensional problems by bounded Brent on log theta (and theta = 0
    checked), the others by L-BFGS-B from the one-level solution, polished by
    Nelder-Mead unless ``polish=False`` (enough for a start value). Relative
    standard deviations that can be set to zero without worsening the
    criterion by more than 1e-9 are set to zero (reported in ``on_boundary``).
    ``start`` (a theta, e.g. the REML optimum for the ML fit of the same
    model) replaces the default starts of the multi-parameter structures.
    """
    y = np.asarray(y, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    data = data.reset_index(drop=True)
    kind = structure.kind
    s = _sums(y, X, data, structure)

    def dev(theta):
        return _criterion(np.asarray(theta, dtype=np.float64), s, kind, reml)[0]

    success, message = True, "ok"
    if kind == "intercept":
        theta = np.array([_brent_intercept(lambda t: dev([t]))])
    elif start is not None:
        theta, success, message = _optimise(dev, [np.asarray(start, dtype=np.float64)], _bounds(structure), polish)
    elif kind == "nested_slope":
        starts = _nested_slope_starts(y, X, data, structure, reml)
        theta, success, message = _optimise(dev, starts, _bounds(structure), polish)
    else:
        starts, bounds = _one_level_starts(y, X, data, structure, reml)
        theta, success, message = _optimise(dev, starts, bounds, polish)
    theta, on_boundary = _snap(theta, dev, structure)
    deviance, beta, sigma2 = _criterion(theta, s, kind, reml)
    psi = _relative_covariance(theta, kind)
    XtWX = _weighted(s, theta, kind)[0]
    try:
        cov_beta = sigma2 * np.linalg.inv(XtWX)
    except np.linalg.LinAlgError:
        cov_beta = np.full((s.p, s.p), np.nan)
    return ProfiledFit(
        theta=theta,
        beta=beta,
        sigma2=sigma2,
        psi=psi,
        deviance=deviance,
        reml=reml,
        success=success and deviance < _BAD,
        message=message,
        on_boundary=on_boundary,
        cov_beta=cov_beta,
    )


def _bounds(structure: Structure) -> list[tuple]:
    lower: list[float | None] = [None] * len(structure.theta_names)
    for i in structure.diagonal:
        lower[i] = 0.0
    return [(lo, None) for lo in lower]


def _optimise(dev, starts, bounds, polish: bool):
    """L-BFGS-B from each start, the best polished by Nelder-Mead: (theta, converged, message)."""
    best, best_dev = None, np.inf
    for x0 in starts if polish else starts[:1]:
        res = _lbfgs(dev, x0, bounds)
        value = dev(res.x)  # res.fun is shifted by each start's own criterion value: not comparable
        if best is None or value < best_dev:
            best, best_dev = res, value
    assert best is not None, "no start to optimise from"
    theta = np.asarray(best.x, dtype=np.float64)
    if not polish:
        return theta, True, f"L-BFGS-B: {best.message} (a start for statsmodels)"
    # L-BFGS-B tends to stop early on these flat, badly scaled criteria (often "ABNORMAL", a failed line
    # search): polish with Nelder-Mead on a rescaled theta (each component in units of its own size, so that
    # tolerances are relative) and call it converged when the simplex has collapsed
    d = np.maximum(np.abs(theta), 1e-3)
    scaled_bounds = [
        (None if lo is None else lo / di, None if hi is None else hi / di) for (lo, hi), di in zip(bounds, d)
    ]
    nm = optimize.minimize(
        lambda x: dev(x * d),
        theta / d,
        method="Nelder-Mead",
        bounds=scaled_bounds,
        options={"xatol": 1e-6, "fatol": 1e-7, "maxfev": 500 * theta.size, "initial_simplex": _simplex(theta / d)},
    )
    nm.x = nm.x * d
    if nm.fun <= dev(theta):
        theta = np.asarray(nm.x, dtype=np.float64)
    spread = float(np.ptp(nm.final_simplex[1]))
    # converged when the simplex collapsed, or when its criterion values agree to 1e-6
    # (rounding in a deviance of order 1e5 can keep xatol from being met)
    success = bool(nm.success) or spread < 1e-6
    return theta, success, f"Nelder-Mead: {nm.message} (simplex spread {spread:.2g} in -2 log-likelihood)"


def _simplex(theta: np.ndarray) -> np.ndarray:
    steps = np.maximum(0.02 * np.abs(theta), 1e-3)
    simplex = np.tile(theta, (theta.size + 1, 1))
    for i in range(theta.size):
        simplex[i + 1, i] += steps[i]
    return simplex


def _brent_intercept(f) -> float:
    """Minimise f(theta) over theta >= 0 (one relative standard deviation)."""
    # relative SDs up to 1e3 (a run SD a thousand times the residual SD); beyond, X'V^-1 X loses precision
    res = optimize.minimize_scalar(
        lambda lt: f(np.exp(lt)),
        bounds=(np.log(1e-7), np.log(1e3)),
        method="bounded",
        options={"xatol": 1e-10, "maxiter": 500},
    )
    theta = float(np.exp(res.x))
    if f(0.0) <= f(theta):
        return 0.0
    return theta


def _snap(theta: np.ndarray, dev, structure: Structure) -> tuple[np.ndarray, list[str]]:
    theta = theta.copy()
    names = structure.theta_names
    diag_index = structure.diagonal
    on_boundary = []
    base = dev(theta)
    for i in diag_index:
        if abs(theta[i]) < 1e-3:
            trial = theta.copy()
            trial[i] = 0.0
            if structure.kind in ("slope", "nested_slope") and i % 3 == 0:  # an intercept SD: its L21 too
                trial[i + 1] = 0.0 if abs(theta[i + 1]) < 1e-3 else theta[i + 1]
            if dev(trial) <= base + 1e-9:
                theta = trial
                base = dev(theta)
        if theta[i] < BOUNDARY_THETA:
            on_boundary.append(names[i])
    return theta, on_boundary


# ---------------------------------------------------------------------------
# statsmodels
# ---------------------------------------------------------------------------


@dataclass
class MixedFit:
    """What the analysis keeps of a statsmodels MixedLM fit."""

    names: list[str]
    fe_params: np.ndarray
    fe_cov: np.ndarray
    bse: np.ndarray
    llf: float
    reml: bool
    converged: bool
    scale: float
    cov_re: np.ndarray  # absolute (not relative to scale)
    re_names: list[str]
    vcomp: np.ndarray  # absolute variance of the inner groups (nested)
    n_obs: int
    n_groups: int
    structure: Structure
    on_boundary: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    engine: str = "statsmodels"
    cov_re_inner: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # nested_slope: the run level
    theta: np.ndarray | None = None  # the profiled optimum (a start for the ML fits of the same model)

    @property
    def z(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.fe_params / self.bse

    @property
    def p_values(self) -> np.ndarray:
        return 2.0 * sps.norm.sf(np.abs(self.z))

    def random_variance(self, data: pd.DataFrame | None = None) -> float:
        """Variance of an observation due to the random effects (mean over rows for slopes)."""
        total = float(np.sum(self.vcomp)) if self.vcomp.size else 0.0
        if self.cov_re.shape == (2, 2) and data is not None and self.structure.slope:
            x = data[self.structure.slope].to_numpy(dtype=np.float64)
            for c in (self.cov_re, self.cov_re_inner):
                if c.shape == (2, 2):
                    total += float(np.mean(c[0, 0] + 2 * c[0, 1] * x + c[1, 1] * x * x))
            return total
        return total + float(self.cov_re[0, 0]) + (float(self.cov_re_inner[0, 0]) if self.cov_re_inner.size else 0.0)

    def variances(self) -> dict[str, float]:
        """Named variance components (absolute), the residual last."""
        out: dict[str, float] = {}
        st = self.structure
        if st.kind == "intercept":
            out[f"Var({st.group})"] = float(self.cov_re[0, 0])
        elif st.kind == "nested":
            out[f"Var({st.group})"] = float(self.cov_re[0, 0])
            out[f"Var({st.inner})"] = float(self.vcomp[0]) if self.vcomp.size else float("nan")
        else:
            levels: list[tuple[str | None, np.ndarray]] = [(st.group, self.cov_re)]
            if st.kind == "nested_slope":
                levels.append((st.inner, self.cov_re_inner))
            for name, c in levels:
                out[f"Var({name}: Intercept)"] = float(c[0, 0])
                out[f"Var({name}: {st.slope})"] = float(c[1, 1])
                out[f"Cov({name}: Intercept, {st.slope})"] = float(c[0, 1])
        out["Var(residual)"] = self.scale
        return out


_TINY_PSI = 1e-10


def _boundary(
    cov_re: np.ndarray, vcomp: np.ndarray, scale: float, structure: Structure, cov_re_inner: np.ndarray | None = None
) -> list[str]:
    """Variance components estimated as zero (relative SD below BOUNDARY_THETA), lme4's "singular fit"."""
    limit = BOUNDARY_THETA**2 * scale
    out = []
    if structure.kind in ("slope", "nested_slope"):
        levels: list[tuple[str | None, np.ndarray]] = [(structure.group, cov_re)]
        if structure.kind == "nested_slope":
            assert cov_re_inner is not None
            levels.append((structure.inner, cov_re_inner))
        for name, c in levels:
            # lme4's isSingular: a diagonal entry of the relative Cholesky factor below the tolerance. (An
            # eigenvalue ratio would flag every fit whose slope, per epoch, is on a much smaller scale than
            # the intercept.)
            found = []
            if c[0, 0] < limit:
                found.append(f"Var({name}: Intercept)")
            if c[1, 1] < limit:
                found.append(f"Var({name}: {structure.slope})")
            if not found and (c[1, 1] - c[0, 1] ** 2 / c[0, 0]) < limit:
                found.append(f"Cov({name}) singular (intercept-slope correlation of +-1)")
            out.extend(found)
        return out
    if cov_re.size and cov_re[0, 0] < limit:
        out.append(f"Var({structure.group})")
    if structure.kind == "nested" and vcomp.size and vcomp[0] < limit:
        out.append(f"Var({structure.inner})")
    return out


def _sm_start(pfit: ProfiledFit, structure: Structure):
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    psi = pfit.psi.copy()
    if structure.kind == "nested":
        return MixedLMParams.from_components(
            fe_params=pfit.beta,
            cov_re=np.array([[max(psi[0, 0], _TINY_PSI)]]),
            vcomp=np.array([max(psi[1, 1], _TINY_PSI)]),
        )
    if structure.kind == "slope":
        # statsmodels needs a positive definite start
        w, v = np.linalg.eigh(psi)
        psi = (v * np.maximum(w, _TINY_PSI)) @ v.T
    else:
        psi = np.array([[max(psi[0, 0], _TINY_PSI)]])
    return MixedLMParams.from_components(fe_params=pfit.beta, cov_re=psi)


def _sm_model(y, X, names, data: pd.DataFrame, structure: Structure):
    from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

    groups = data[structure.group].astype(str).to_numpy()
    exog = pd.DataFrame(X, columns=names, index=data.index)
    endog = pd.Series(np.asarray(y, dtype=np.float64), index=data.index, name="y")
    if structure.kind == "intercept":
        return MixedLM(endog, exog, groups=groups, exog_re=np.ones((len(y), 1)))
    if structure.kind == "slope":
        Z = pd.DataFrame(
            {"Intercept": np.ones(len(y)), structure.slope: data[structure.slope].to_numpy(float)}, index=data.index
        )
        return MixedLM(endog, exog, groups=groups, exog_re=Z)
    labels = sorted(set(groups))  # statsmodels orders groups by sorted label
    inner = data[structure.inner].astype(str).to_numpy()
    mats, colnames = [], []
    for label in labels:
        rows = groups == label
        levels = sorted(set(inner[rows]))
        mats.append((inner[rows][:, None] == np.array(levels)[None, :]).astype(np.float64))
        colnames.append([f"{structure.inner}[{lv}]" for lv in levels])
    vc = VCSpec([structure.inner], [colnames], [mats])
    return MixedLM(endog, exog, groups=groups, exog_re=np.ones((len(y), 1)), exog_vc=vc)


def fit_mixed(
    y,
    X,
    names: list[str],
    data: pd.DataFrame,
    structure: Structure,
    reml: bool = True,
    start: ProfiledFit | None = None,
) -> MixedFit:
    """Fit one mixed model with statsmodels, started at the profiled optimum; warnings kept."""
    y = np.asarray(y, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    data = data.reset_index(drop=True)
    notes: list[str] = []
    try:
        pfit = start if start is not None else profiled_fit(y, X, data, structure, reml=reml, polish=False)
        sm_start = _sm_start(pfit, structure)
    except (np.linalg.LinAlgError, ValueError) as exc:
        sm_start = None
        notes.append(f"start-value search failed ({exc}); statsmodels started from its defaults")
    model = _sm_model(y, X, names, data, structure)
    p = X.shape[1]
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="warn"):
        warnings.simplefilter("always")
        if structure.kind == "slope":
            # singular random-slope fits make statsmodels cycle through its optimisers for long; one
            # bounded L-BFGS run from the profiled optimum settles whether it converges
            result = model.fit(reml=reml, start_params=sm_start, method=["lbfgs"], maxiter=100)
        else:
            result = model.fit(reml=reml, start_params=sm_start, method=["lbfgs", "bfgs", "cg"])
        fe_params = np.asarray(result.fe_params, dtype=np.float64)
        cov = np.asarray(result.cov_params(), dtype=np.float64)[:p, :p]
        bse = np.asarray(result.bse_fe, dtype=np.float64)
        llf = float(result.llf)
    for w in caught:
        text = f"statsmodels {w.category.__name__}: {w.message}"
        if text not in notes:
            notes.append(text)
    converged = bool(getattr(result, "converged", False)) and bool(np.all(np.isfinite(bse)))
    if not np.all(np.isfinite(bse)):
        notes.append("standard errors not available (the Hessian is not positive definite)")
    cov_re = np.atleast_2d(np.asarray(result.cov_re, dtype=np.float64))
    vcomp = np.asarray(getattr(result, "vcomp", np.zeros(0)), dtype=np.float64).ravel()
    re_names = [str(c) for c in getattr(result.cov_re, "columns", [])] or ["Intercept"]
    on_boundary = _boundary(cov_re, vcomp, float(result.scale), structure)
    return MixedFit(
        names=list(names),
        fe_params=fe_params,
        fe_cov=cov,
        bse=bse,
        llf=llf,
        reml=reml,
        converged=converged,
        scale=float(result.scale),
        cov_re=cov_re,
        re_names=re_names,
        vcomp=vcomp,
        n_obs=len(y),
        n_groups=len(model.group_labels),
        structure=structure,
        on_boundary=on_boundary,
        warnings=notes,
    )


def fit_profiled(
    y, X, names: list[str], data: pd.DataFrame, structure: Structure, reml: bool = True, start: np.ndarray | None = None
) -> MixedFit:
    """Fit one mixed model with the profiled criterion alone (lme4's algorithm and inference).

    Standard errors are lme4's: ``sigma^2 (X' V*^-1 X)^-1`` at the optimum
    (statsmodels takes them from the full Hessian; the two agree to about
    1e-4 relative here). ``converged`` means the optimiser converged (Nelder-
    Mead simplex collapsed) and the standard errors exist.
    """
    y = np.asarray(y, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    data = data.reset_index(drop=True)
    pfit = profiled_fit(y, X, data, structure, reml=reml, polish=True, start=start)
    bse = (
        np.sqrt(np.clip(np.diag(pfit.cov_beta), 0.0, None))
        if pfit.cov_beta is not None
        else np.full(X.shape[1], np.nan)
    )
    notes = [] if pfit.success else [f"profiled fit did not converge: {pfit.message}"]
    if not np.all(np.isfinite(bse)):
        notes.append("standard errors not available (X' V^-1 X is singular)")
    scale = float(pfit.sigma2)
    cov_re_inner = np.zeros((0, 0))
    if structure.kind == "nested":
        cov_re = np.array([[pfit.psi[0, 0] * scale]])
        vcomp = np.array([pfit.psi[1, 1] * scale])
        re_names = ["Intercept"]
    elif structure.kind == "nested_slope":
        cov_re = pfit.psi[:2, :2] * scale
        cov_re_inner = pfit.psi[2:, 2:] * scale
        vcomp = np.zeros(0)
        re_names = ["Intercept", str(structure.slope)]
    else:
        cov_re = pfit.psi * scale
        vcomp = np.zeros(0)
        re_names = ["Intercept"] + ([str(structure.slope)] if structure.kind == "slope" else [])
    n_groups = int(data[structure.group].astype(str).nunique())
    on_boundary = _boundary(cov_re, vcomp, scale, structure, cov_re_inner) if scale > 0 else []
    return MixedFit(
        names=list(names),
        fe_params=pfit.beta,
        fe_cov=pfit.cov_beta if pfit.cov_beta is not None else np.full((X.shape[1], X.shape[1]), np.nan),
        bse=bse,
        llf=pfit.loglik,
        reml=reml,
        converged=bool(pfit.success and np.all(np.isfinite(bse))),
        scale=scale,
        cov_re=cov_re,
        re_names=re_names,
        vcomp=vcomp,
        n_obs=len(y),
        n_groups=n_groups,
        structure=structure,
        on_boundary=on_boundary,
        warnings=notes,
        engine="profiled",
        cov_re_inner=cov_re_inner,
        theta=pfit.theta,
    )
