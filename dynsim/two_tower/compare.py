"""``dynsim.compare``: finite widths of the two-tower model against the infinite-width ODE, in memory.

The engine's comparison (:mod:`dynsim.engine.compare`) on the width axis: per width and seed the
relative error of the per-coordinate state, the fitted slope of the error in the width (theory
``-1/2``), and the SGD floor measured at width ``10^12``.
"""

from __future__ import annotations

from ..engine.compare import Comparison, compare_runs
from ..engine.config import with_overrides
from .config import Config, load_config
from .system import SYSTEM


def compare(
    config: Config | dict | str | None = None,
    widths=None,
    seeds: int | None = None,
    backend: str = "gram",
) -> Comparison:
    """Run the finite widths and the infinite-width ODE on the same grid and compare them.

    Args:
        config: a :class:`Config`, nested dict, TOML path or ``None`` (the default).
        widths: widths to run; default ``config.run.widths`` (at least two distinct).
        seeds: seeds per width; default ``config.run.seeds`` (at least two for an sd).
        backend: ``"gram"`` (default: exact, cost independent of width) or ``"param"``.
            The floor run always uses ``"gram"``, the only backend that reaches 10^12.

    Returns:
        The :class:`~dynsim.engine.compare.Comparison` (``widths`` its axis values).

    Example:
        >>> import dynsim
        >>> config = {"data": {"r": 2, "n": 2}, "loss": {"stages": [[1.0, 1.0]]},
        ...     "train": {"lr": 0.05, "batch": 128, "precision": "float64"},
        ...     "run": {"record_every": 0.25, "alignment_samples": 16}}
        >>> comparison = dynsim.compare(config, widths=[100, 1000, 10000], seeds=4)
        >>> -0.7 < comparison.slope < -0.3
        True
    """
    run = {"backend": backend}
    if widths is not None:
        run["widths"] = list(widths)
    if seeds is not None:
        run["seeds"] = seeds
    return compare_runs(SYSTEM, with_overrides(load_config(config), {"run": run}))
