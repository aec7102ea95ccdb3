r"""Stage detection: when a trajectory aligns (stage 1) and when it then balances (stage 2).

Seed 001 §4–5 splits training into two stages: positive pairs first align the towers,
:math:`\rho_{\min}(t) \to 1`, while the condition number :math:`\kappa_A(t) = s_1(S_A)/s_r(S_A)`
grows; negative pairs then shrink :math:`\kappa_A` back towards 1. The two times reported here
read those stages off recorded metrics, finite width or infinite alike:

- alignment time :math:`t_1 = \min\{t : \rho_{\min}(t) \ge \rho^*\}` with :math:`\rho^* = 0.9`
  (:data:`ALIGNED_RHO`);
- balance time :math:`t_2 = \min\{t \ge t_1 : \kappa_A(t) \le \kappa^*\}` with
  :math:`\kappa^* = 1.5` (:data:`BALANCED_KAPPA`); ``NaN`` when :math:`t_1` is.

Both are read off the piecewise-linear interpolant of the records, so they are not rounded up
to the record grid; ``NaN`` means the threshold is never reached within the records.

Why these thresholds. :math:`\rho^* = 0.9` is 90% of the way from :math:`\rho_{\min} = 0`
at initialization (:math:`p_k(0) = 0`) to perfect alignment: the end of the fast phase.
A stricter 0.99 would time the slow exponential tail of the worst coordinate instead, whose
rate is set by the smallest :math:`\sigma_k^2`, and it falls deep into stage 2 of the
two-stage schedule, after the condition number has started to shrink. :math:`\kappa^* = 1.5`
is the "balanced" bound of the Theorem 4.3 miniature (``tests/test_theorem.py``), an
absolute bound on purpose: a relative one (say, half-way from the peak back to 1) would call a
run balanced whose :math:`\kappa_A` is still 4, and would depend on how high stage 1 pushed it.
"""

from __future__ import annotations

import numpy as np

from ..engine.events import first_crossing

ALIGNED_RHO = 0.9
BALANCED_KAPPA = 1.5
STAGES = ("t_align", "t_balance")  # the names of what stage_times returns, in summaries and grids


def stage_times(times, rho_min, kappa_a) -> tuple[np.ndarray, np.ndarray]:
    r"""Alignment time :math:`t_1` and balance time :math:`t_2` of each trajectory (module docstring).

    Args:
        times: record times, (T,).
        rho_min: :math:`\rho_{\min}(t)`, (..., T): any leading axes (seeds, widths, configurations).
        kappa_a: :math:`\kappa_A(t)`, the same shape.

    Returns:
        ``(t_align, t_balance)``, each of shape ``rho_min.shape[:-1]`` (a 0-d array for one
        trajectory); ``NaN`` where the threshold is never reached.

    Example:
        >>> import numpy as np
        >>> times = np.array([0.0, 10.0, 20.0, 30.0])
        >>> t1, t2 = stage_times(times, np.array([0.0, 0.8, 1.0, 1.0]), np.array([4.0, 8.0, 2.0, 1.0]))
        >>> float(t1), float(t2)
        (15.0, 25.0)
    """
    rho_min, kappa_a = np.asarray(rho_min, dtype=float), np.asarray(kappa_a, dtype=float)
    if rho_min.shape != kappa_a.shape or rho_min.shape[-1:] != np.shape(times):
        raise ValueError(f"rho_min {rho_min.shape} and kappa_a {kappa_a.shape} must both be (..., {np.size(times)})")
    t_align, t_balance = np.empty(rho_min.shape[:-1]), np.empty(rho_min.shape[:-1])
    for index in np.ndindex(rho_min.shape[:-1]):
        t_align[index] = first_crossing(times, rho_min[index], ALIGNED_RHO, rising=True)
        t_balance[index] = first_crossing(times, kappa_a[index], BALANCED_KAPPA, rising=False, start=t_align[index])
    return t_align, t_balance
