"""The ``dynsim`` command line.

Every user error (bad option, bad ``--set``, missing file, invalid config, missing
device) exits with status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import tomli_w
import typer
from rich.console import Console
from rich.table import Table

from ._config import ConfigError, load_config, parse_assignment, with_overrides
from ._runner import DeviceUnavailable, SimulationDiverged
from ._simulate import backend_and_init, simulate

app = typer.Typer(
    help="dynsim: training dynamics of contrastive multimodal learning at finite and infinite width.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _group():
    """dynsim: training dynamics of contrastive multimodal learning at finite and infinite width."""


SUMMARY_METRICS = ("rho_min", "kappa_a", "balance", "nsr", "alignment", "loss")


def _fail(message: str, code: int = 2):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _widths(values: list[str]) -> list[int]:
    try:
        return [int(w) for value in values for w in value.split(",") if w.strip()]
    except ValueError:
        _fail(f"--width {values!r} must be integers, e.g. --width 256 --width 1024 or --width 256,1024")


def _summary(trajectory) -> dict[str, str]:
    return {
        name: f"{np.mean(values[:, -1]):.4g} ± {np.std(values[:, -1]):.2g}"
        for name, values in ((name, trajectory.metrics[name]) for name in SUMMARY_METRICS)
    }


@app.command()
def sweep(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")] = None,
    width: Annotated[list[str] | None, typer.Option(help="Width(s) m: repeat or comma-separate.")] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per width.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | gpu.")] = None,
    backend: Annotated[
        str | None, typer.Option(help="param (literal SGD on W) | gram (exact Gram-space recursion, flat in width).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default: run.out).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: section.key=value.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
):
    """Simulate the finite-width model at each width and print the final metrics.

    Writes OUT/config.toml (the resolved config) and OUT/width_<m>.npz (trajectories).

    Examples:

        dynsim sweep

        dynsim sweep --width 256,1024 --seeds 8 --set loss.kind=positive

        dynsim sweep --config my.toml --device gpu --out runs/gpu

        dynsim sweep --backend gram --width 1000,10000,100000,1000000
    """
    try:
        resolved = load_config(config)
        overrides: dict[str, dict] = {}
        for assignment in set_ or []:
            section, key, value = parse_assignment(assignment)
            overrides.setdefault(section, {})[key] = value
        run = {"widths": _widths(width)} if width else {}
        run.update({k: v for k, v in (("seeds", seeds), ("device", device), ("backend", backend)) if v is not None})
        run.update({"out": str(out)} if out is not None else {})
        overrides.setdefault("run", {}).update(run)
        resolved = with_overrides(resolved, overrides)
        for m in resolved.run.widths:  # refuse before anything is written
            backend_and_init(resolved, m)
        out_dir = Path(resolved.run.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.toml").write_text(tomli_w.dumps(resolved.to_dict()))
        table = Table(title=f"final metrics, mean ± sd over {resolved.run.seeds} seeds")
        table.add_column("width", justify="right")
        for name in SUMMARY_METRICS:
            table.add_column(name, justify="right")
        for m in resolved.run.widths:
            trajectory = simulate(resolved, width=m)
            trajectory.save(out_dir / f"width_{m}.npz")
            table.add_row(str(m), *_summary(trajectory).values())
    except (ConfigError, DeviceUnavailable, OSError) as err:
        _fail(str(err))
    except SimulationDiverged as err:
        _fail(str(err), code=1)
    if not quiet:
        Console(width=max(Console().width, 140)).print(table)
        Console().print(f"trajectories written to {out_dir}/")


def main():
    """Entry point of the ``dynsim`` script."""
    app()
