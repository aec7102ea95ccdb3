"""The ``dynsim`` command line: ``sweep``, ``ode``, ``compare``, ``plot``, ``show``, ``reproduce``.

Every user error (unknown option, bad ``--set``, missing file, invalid config, missing
device, a run directory of another configuration) exits with status 2 and one line on
stderr, never a traceback; a diverged simulation exits with status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import tomli_w
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from . import ode as ode_module
from .engine.compare import CONFIDENCE, FLOOR_WIDTH, check_comparable, comparison_of_dataset
from .engine.config import Config, ConfigError, load_config, parse_assignment, with_overrides
from .engine.figures import FIG1_METRICS, draw, metric_trajectories
from .engine.results import (
    ENGINE,
    FLOOR_PREFIX,
    ODE_PREFIX,
    describe,
    final_summary,
    load,
    open_run,
    record_dataset,
    write_atomic,
    write_csv,
)
from .engine.runner import DeviceUnavailable, SimulationDiverged, select_devices
from .engine.sweep import run_sweep
from .two_tower.reproduce import reproduce_fig1
from .two_tower.stages import ALIGNED_RHO, BALANCED_KAPPA, STAGES

app = typer.Typer(
    help="dynsim: training dynamics of contrastive multimodal learning at finite and infinite width.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SUMMARY_METRICS = ("rho_min", "kappa_a", "balance", "nsr", "alignment", "loss")
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override: section.key=value (repeatable).")]
WidthOption = Annotated[list[str] | None, typer.Option(help="Width(s) m: repeat or comma-separate.")]
SeedsOption = Annotated[int | None, typer.Option(help="Seeds per width.")]
DeviceOption = Annotated[str | None, typer.Option(help="auto | cpu | gpu.")]
OutOption = Annotated[Path | None, typer.Option(help="Run directory (default: run.out).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or tables; errors only.")]


class _Fail(Exception):
    """A user error of the command line itself: one line on stderr, exit status 2."""


def _widths(values: list[str]) -> list[int]:
    try:
        return [int(w) for value in values for w in value.split(",") if w.strip()]
    except ValueError:
        raise _Fail(f"--width {values!r} must be integers, e.g. --width 256 --width 1024 or --width 256,1024") from None


def _resolve(config, set_, run: dict) -> Config:
    """The configuration of a command: file or default, then ``--set``, then the options."""
    overrides: dict[str, dict] = {}
    for assignment in set_ or []:
        section, key, value = parse_assignment(assignment)
        overrides.setdefault(section, {})[key] = value
    overrides.setdefault("run", {}).update({k: v for k, v in run.items() if v is not None})
    resolved = with_overrides(load_config(config), overrides)
    select_devices(resolved.run.device)  # fail now, in one line, if the device is missing
    return resolved


def _run_options(width, seeds, device, backend, out) -> dict:
    return {
        "widths": _widths(width) if width else None,
        "seeds": seeds,
        "device": device,
        "backend": backend,
        "out": None if out is None else str(out),
    }


class _StepsPerSecond(ProgressColumn):
    def render(self, task) -> Text:
        return Text("" if task.speed is None else f"{task.speed:,.0f} steps/s")


def _sweep_with_progress(config: Config, quiet: bool, **options):
    """:func:`run_sweep` with a progress bar over the SGD steps of its unfinished parts."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _StepsPerSecond(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    progress = Progress(*columns, console=Console(stderr=True), disable=quiet)
    task = None

    def start(total_steps):  # after every check, so that a refusal prints one line only
        nonlocal task
        if not total_steps:  # everything is done already (a resumed run): no empty bar
            return
        progress.start()
        task = progress.add_task("SGD steps", total=total_steps)

    def advance(part, steps):
        progress.update(task, advance=steps, description=f"done: width {part.width}, seeds {part.first}+")

    try:
        return run_sweep(config, on_start=start, on_part=advance, **options)
    finally:
        progress.stop()


def _metrics_table(title: str, rows: list[tuple[str, dict]]) -> Table:
    table = Table(title=title)
    table.add_column("width", justify="right")
    for name in SUMMARY_METRICS:
        table.add_column(name, justify="right")
    for label, values in rows:
        table.add_row(label, *[values.get(name, "") for name in SUMMARY_METRICS])
    return table


def _width_label(row: dict) -> str:
    """The width of a :func:`final_summary` row as shown: ``∞ (ODE)`` for the ODE's."""
    return "∞ (ODE)" if row["width"] == "inf" else str(row["width"])


def _metric_cell(row: dict, name: str) -> str:
    """``mean ± sd`` of one metric of a :func:`final_summary` row (the ODE's without sd; empty if absent)."""
    if f"{name}_mean" not in row:
        return ""
    mean = f"{row[f'{name}_mean']:.4g}"
    return mean if row["width"] == "inf" else f"{mean} ± {row[f'{name}_sd']:.2g}"


def _final_rows(rows: list[dict]) -> list[tuple[str, dict]]:
    """Rows of :func:`final_summary` as table cells: ``mean ± sd`` (the ODE's without sd)."""
    return [(_width_label(row), {n: _metric_cell(row, n) for n in SUMMARY_METRICS}) for row in rows]


def _stages_table(rows: list[dict]) -> Table:
    """Stage times of :func:`final_summary` rows: ``mean ± sd (reached/seeds)``, ``never`` if none reached."""
    table = Table(title=f"stage times: rho_min >= {ALIGNED_RHO}, then kappa_a <= {BALANCED_KAPPA}")
    for column in ("width", *STAGES):
        table.add_column(column, justify="right")

    for row in rows:
        cells = [_stage_cell(row, name, sd=True) for name in STAGES]
        table.add_row(_width_label(row), *cells)
    return table


def _stage_cell(row: dict, name: str, sd: bool = False) -> str:
    """``mean [± sd] (reached/seeds)`` of one stage time; ``never`` if no seed reached it."""
    reached, seeds = row[f"{name}_reached"], row["seeds"]
    if not reached:
        return "never"
    mean = f"{row[f'{name}_mean']:.4g}"
    if row["width"] == "inf":
        return mean
    return mean + (f" ± {row[f'{name}_sd']:.2g}" if sd else "") + ("" if reached == seeds else f" ({reached}/{seeds})")


def _comparison_table(comparison) -> Table:
    columns = {"sup over time": "sup_all", "final time": "final_all", "a (sup)": "sup_a", "p (sup)": "sup_p"}
    columns["nu_a (sup)"] = "sup_nu_a"
    table = Table(title="relative error to the ODE, mean ± sd over seeds")
    for column in ("width", *columns):
        table.add_column(column, justify="right")
    for row in comparison.rows():
        cells = [
            f"{row[f'{k}_mean']:.3g} ± {row[f'{k}_sd']:.2g}" if f"{k}_mean" in row else "" for k in columns.values()
        ]
        table.add_row(str(row["width"]), *cells)
    return table


def _slope_line(comparison) -> str:
    low, high = comparison.slope_ci
    return (
        f"slope of log error vs log width: {comparison.slope:.3f} ({CONFIDENCE:.0%} CI {low:.3f} .. {high:.3f}; "
        f"theory -0.5); SGD floor (width {FLOOR_WIDTH:.0e}, same batch and lr): "
        f"{comparison.floor:.3g} ± {comparison.floor_sd:.2g}"
    )


def _finish(dataset, run_dir: Path, quiet: bool, comparison=None) -> None:
    draw(dataset, comparison, run_dir / "figures")
    if quiet:
        return
    console = Console(width=max(Console().width, 150))
    title = f"final metrics, mean ± sd over {dataset.sizes['seed']} seeds"
    rows = final_summary(dataset)
    console.print(_metrics_table(title, _final_rows(rows)))
    console.print(_stages_table(rows))
    if comparison is not None:
        console.print(_comparison_table(comparison))
        console.print(_slope_line(comparison))
    console.print(f"results in {run_dir}/ (dynsim.load({str(run_dir)!r}); figures in {run_dir / 'figures'}/)")


@app.callback()
def _group():
    """dynsim: training dynamics of contrastive multimodal learning at finite and infinite width."""


@app.command()
def sweep(
    config: ConfigOption = None,
    width: WidthOption = None,
    seeds: SeedsOption = None,
    device: DeviceOption = None,
    backend: Annotated[
        str | None, typer.Option(help="param (literal SGD on W) | gram (exact Gram-space recursion, flat in width).")
    ] = None,
    out: OutOption = None,
    set_: SetOption = None,
    with_ode: Annotated[bool, typer.Option("--ode", help="Add the infinite-width ODE overlay.")] = False,
    quiet: QuietOption = False,
):
    """Simulate the finite-width model at each width, save, plot and summarize.

    OUT holds config.toml, parts/ (one netCDF file per width and seed chunk, written
    atomically), ode.nc (with --ode), summary.csv, figures/*.png and run.log. Running the
    same command again resumes: finished parts are skipped.

    Examples:

        dynsim sweep --ode

        dynsim sweep --width 256,1024 --seeds 8 --set loss.kind=positive --out runs/positive

        dynsim sweep --config my.toml --device gpu --out runs/gpu

        dynsim sweep --backend gram --width 1000,10000,100000,1000000 --ode
    """
    resolved = _resolve(config, set_, _run_options(width, seeds, device, backend, out))
    dataset = _sweep_with_progress(resolved, quiet, with_ode=with_ode)
    _finish(dataset, Path(resolved.run.out), quiet)


@app.command()
def compare(
    config: ConfigOption = None,
    width: WidthOption = None,
    seeds: SeedsOption = None,
    device: DeviceOption = None,
    backend: Annotated[
        str, typer.Option(help="gram (default; exact, flat in width) | param. The config's run.backend is not used.")
    ] = "gram",
    out: OutOption = None,
    set_: SetOption = None,
    quiet: QuietOption = False,
):
    """Finite widths against the infinite-width ODE: error table, fitted slope, SGD floor, figures.

    Runs the widths (and a width-10^12 run on the Gram backend that measures the SGD floor),
    solves the ODE on the same grid and writes comparison.csv and figures/error_vs_width.png
    beside the sweep's outputs. Resumable like sweep.

    Examples:

        dynsim compare --width 256,1024,4096,16384 --seeds 8

        dynsim compare --set train.batch=256 --set train.lr=0.05 --out runs/compare
    """
    resolved = _resolve(config, set_, _run_options(width, seeds, device, backend, out))
    check_comparable(resolved.run.widths, resolved.run.seeds)
    dataset = _sweep_with_progress(resolved, quiet, floor=True)
    comparison = comparison_of_dataset(dataset)
    run_dir = Path(resolved.run.out)
    write_csv(run_dir / "comparison.csv", comparison.rows())
    fit = {"slope": comparison.slope, "slope_ci": list(comparison.slope_ci), "confidence": CONFIDENCE}
    fit.update(floor=comparison.floor, floor_sd=comparison.floor_sd, floor_width=FLOOR_WIDTH)
    write_atomic(run_dir / "comparison.toml", lambda p: p.write_text(tomli_w.dumps(fit)))
    _finish(dataset, run_dir, quiet, comparison)


@app.command()
def ode(
    config: ConfigOption = None,
    out: OutOption = None,
    set_: SetOption = None,
    quiet: QuietOption = False,
):
    """Solve the infinite-width reduced ODE of a configuration; write ode.nc and a figure.

    Examples:

        dynsim ode

        dynsim ode --set loss.kind=positive --set "loss.stages=[[1.0, 400.0]]" --out runs/ode
    """
    resolved = _resolve(config, set_, _run_options(None, None, None, None, out))
    dataset = record_dataset(ode_module.solve(resolved), prefix=ODE_PREFIX)
    run_dir = open_run(Path(resolved.run.out), resolved)
    (run_dir / "figures").mkdir(exist_ok=True)
    write_atomic(run_dir / "ode.nc", lambda p: dataset.to_netcdf(p, engine=ENGINE))
    figure = metric_trajectories(
        dataset.assign_attrs(describe(resolved), backend="ode"), run_dir / "figures" / "ode.png"
    )
    if not quiet:
        final = dataset.isel(time=-1)
        values = {n: f"{float(final[ODE_PREFIX + n]):.4g}" for n in SUMMARY_METRICS if ODE_PREFIX + n in final}
        Console(width=max(Console().width, 150)).print(_metrics_table("infinite width, final time", [("∞", values)]))
        Console().print(f"written {run_dir / 'ode.nc'} and {figure}")


@app.command()
def plot(run_dir: Annotated[Path, typer.Argument(help="A run directory of sweep or compare.")]):
    """Redraw the figures of a finished run from its saved data.

    Example:

        dynsim plot runs/default
    """
    dataset = _load(run_dir)
    comparison = comparison_of_dataset(dataset) if _has_comparison(dataset) else None
    for path in draw(dataset, comparison, run_dir / "figures"):
        typer.echo(str(path))


@app.command()
def show(run_dir: Annotated[Path, typer.Argument(help="A run directory of sweep or compare.")]):
    """Print the summary of a run: final metrics and stage times per width, and the comparison if there is one.

    Example:

        dynsim show runs/default
    """
    dataset = _load(run_dir)
    console = Console(width=max(Console().width, 150))
    rows = final_summary(dataset)
    console.print(_metrics_table(f"{run_dir}: final metrics, mean ± sd over seeds", _final_rows(rows)))
    console.print(_stages_table(rows))
    if _has_comparison(dataset):
        comparison = comparison_of_dataset(dataset)
        console.print(_comparison_table(comparison))
        console.print(_slope_line(comparison))


@app.command()
def reproduce(
    figure: Annotated[str, typer.Argument(help="The figure to reproduce: fig1.")],
    quick: Annotated[
        bool,
        typer.Option(help="A small variant (r = 4, n = 12): under a minute on 2 CPU cores (the full one: about 70 s)."),
    ] = False,
    out: Annotated[Path, typer.Option(help="Output directory: one run directory per panel, figures/.")] = Path(
        "runs/fig1"
    ),
    quiet: QuietOption = False,
):
    """Reproduce the seed paper's Figure 1: contrastive vs non-contrastive, the spike case, a phase diagram.

    Runs four sweeps with the infinite-width ODE overlay (gram backend): InfoNCE with the
    two-stage temperature schedule, the positive-pair loss alone, and both on the spike
    spectrum of Lemma B.17; each is a run directory OUT/<panel> that resumes like sweep.
    Then solves the phase diagram (final kappa_a and rho_min over initial kappa and stage-2
    tau) into OUT/phase.nc and writes OUT/figures/fig1_trajectories.png, fig1_phase.png, fig1_summary.csv
    (final metrics and stage times per panel and width) and fig1_phase.csv.

    Examples:

        dynsim reproduce fig1 --quick

        dynsim reproduce fig1 --out runs/fig1-full
    """
    if figure != "fig1":
        raise _Fail(f"unknown figure {figure!r}: dynsim reproduce knows fig1")
    size = "quick" if quick else "full"
    result = reproduce_fig1(out, size, lambda config: _sweep_with_progress(config, quiet, with_ode=True))
    if quiet:
        return
    console = Console(width=max(Console().width, 150))
    console.print(_fig1_table(result.rows))
    console.print(f"figures and summaries in {out / 'figures'}/; run directories {', '.join(result.panels)} in {out}/")


def _fig1_table(rows: list[dict]) -> Table:
    """The rows of ``fig1_summary.csv``: final metrics ``mean ± sd`` and stage times per panel and width."""
    table = Table(title=f"final metrics and stage times (rho_min >= {ALIGNED_RHO}, then kappa_a <= {BALANCED_KAPPA})")
    for column in ("panel", "width", *FIG1_METRICS, *STAGES):
        table.add_column(column, justify="right")
    for row in rows:
        cells = [_metric_cell(row, n) for n in FIG1_METRICS] + [_stage_cell(row, n) for n in STAGES]
        table.add_row(row["panel"], _width_label(row), *cells)
    return table


def _has_comparison(dataset) -> bool:
    return FLOOR_PREFIX + "a" in dataset and ODE_PREFIX + "a" in dataset


def _load(run_dir: Path):
    try:
        return load(run_dir)
    except FileNotFoundError as err:
        raise _Fail(str(err)) from None


def main():
    """Entry point of the ``dynsim`` script: one-line errors, exit status 2 for user errors."""
    try:
        code = app(standalone_mode=False)
    except (_Fail, ConfigError, DeviceUnavailable, OSError) as err:
        _exit(str(err), 2)
    except (SimulationDiverged, ode_module.SolverError) as err:
        _exit(str(err), 1)
    except KeyboardInterrupt:
        _exit("interrupted; run the same command again to resume", 130)
    except Exception as err:  # typer's own usage errors (unknown option, missing argument)
        if not hasattr(err, "format_message"):
            raise
        _exit(err.format_message(), getattr(err, "exit_code", 2))
    sys.exit(code or 0)


def _exit(message: str, code: int):
    if message.strip():  # (no message: typer has printed the help, e.g. for no arguments)
        typer.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)
