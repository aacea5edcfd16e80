"""Learning-curve fits of the dense-sample study (hyperbolic vs exponential) and its checkpoint steps."""

from __future__ import annotations

import math

import numpy as np

from ...probes.schedule import log_spaced


def _hyperbolic(t, a, b, c):
    return a - b / (1.0 + c * t)


def _exponential(t, a, b, c):
    return a - b * np.exp(-c * t)


FORMS = {"hyperbolic": _hyperbolic, "exponential": _exponential}


def fit_learning_curve(t, y) -> list[dict]:
    """Least-squares fits of both forms; AIC / BIC with k = 3 parameters (+ the noise variance).

    AIC = n ln(RSS / n) + 2 (k + 1), BIC = n ln(RSS / n) + (k + 1) ln n; with
    equal k, the comparison is that of the residual sums of squares, and the
    form with the lower AIC / BIC is the better description.
    """
    from scipy.optimize import curve_fit

    t, y = np.asarray(t, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    n, k = len(t), 3
    out = []
    for form, fn in FORMS.items():
        best = None
        if n > k + 1:
            span = max(float(t.max() - t.min()), 1.0)
            tail = float(np.mean(y[-max(1, n // 10) :]))
            for rate in 10.0 ** np.linspace(np.log10(0.3 / span), np.log10(30.0 / span), 7):
                try:
                    params, _ = curve_fit(
                        fn,
                        t,
                        y,
                        p0=(tail, tail - float(y[0]), rate),
                        maxfev=5000,
                        bounds=([-np.inf, -np.inf, 0.0], [np.inf, np.inf, np.inf]),
                    )
                except (RuntimeError, ValueError):
                    continue
                rss = float(((y - fn(t, *params)) ** 2).sum())
                if best is None or rss < best[1]:
                    best = (params, rss)
        if best is None:
            out.append(
                {
                    "form": form,
                    "a": np.nan,
                    "b": np.nan,
                    "c": np.nan,
                    "n": n,
                    "rss": np.nan,
                    "r2": np.nan,
                    "aic": np.nan,
                    "bic": np.nan,
                    "converged": False,
                }
            )
            continue
        params, rss = best
        tss = float(((y - y.mean()) ** 2).sum())
        loglike_term = n * math.log(max(rss, 1e-300) / n)
        out.append(
            {
                "form": form,
                "a": float(params[0]),
                "b": float(params[1]),
                "c": float(params[2]),
                "n": n,
                "rss": rss,
                "r2": 1 - rss / tss if tss > 0 else np.nan,
                "aic": loglike_term + 2 * (k + 1),
                "bic": loglike_term + (k + 1) * math.log(n),
                "converged": True,
            }
        )
    return out


def checkpoint_steps(total_steps: int, steps_per_epoch: int, per_decade: float) -> list[int]:
    """Step 0, log-spaced steps, and every epoch end (sorted, unique)."""
    steps = {0, *log_spaced(total_steps, per_decade)}
    steps |= set(range(steps_per_epoch, total_steps + 1, steps_per_epoch))
    steps.add(total_steps)
    return sorted(s for s in steps if s <= total_steps)
