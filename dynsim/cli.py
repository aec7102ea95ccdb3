"""The ``dynsim`` command line: ``systems``, ``sweep``, ``compare``, ``ode``, ``plot``, ``show``, ``reproduce``.

Every command runs any system: the configuration names it (``system = "spectral"`` in a TOML
file), or ``--system`` does; the two-tower system is the default. Every user error (unknown
option, bad ``--set``, missing file, invalid config, missing device, a run directory of another
configuration) exits with status 2 and one line on stderr, never a traceback; a diverged
simulation or a failed limit solve exits with status 1.
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

from . import registry
from .engine import cache
from .engine.compare import CONFIDENCE, check_comparable, comparison_of_dataset, has_comparison
from .engine.config import ConfigError, parse_assignment, with_overrides
from .engine.figures import draw, metric_trajectories
from .engine.infinite import SolverError
from .engine.results import ENGINE, FLOOR_PREFIX, describe, final_summary, open_run, write_atomic, write_csv
from .engine.runner import DeviceUnavailable, SimulationDiverged, select_devices
from .engine.sweep import PartsUnfinished, limit_dataset, parts, run_sweep
from .engine.system import System
from .engine.tables import Report, comparison_report, events_report, metric_cell, metrics_report

app = typer.Typer(
    help="dynsim: training dynamics of models from ML theory, at finite size and in their exact limits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SystemOption = Annotated[
    str | None, typer.Option(help="The system (dynsim systems lists them); default: the config's, else two_tower.")
]
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override: section.key=value (repeatable).")]
WidthOption = Annotated[list[str] | None, typer.Option(help="Width(s) m (two_tower): repeat or comma-separate.")]
SeedsOption = Annotated[int | None, typer.Option(help="Seeds per point of the sweep.")]
DeviceOption = Annotated[str | None, typer.Option(help="auto | cpu | gpu.")]
OutOption = Annotated[Path | None, typer.Option(help="Run directory (default: run.out).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or tables; errors only.")]
ExecutorOption = Annotated[
    str | None,
    typer.Option(
        "--executor", help="Where parts run: inline (default) | local (processes) | slurm (job arrays) | debug."
    ),
]
JobsOption = Annotated[
    int | None, typer.Option("--jobs", help="Jobs at once (local: processes, default the CPU count; slurm: array %N).")
]
DetachOption = Annotated[
    bool, typer.Option("--detach", help="slurm: submit and return; the same command later re-attaches and collects.")
]
RetryOption = Annotated[bool, typer.Option("--retry-failed", help="Run again the parts that failed before.")]


class _Fail(Exception):
    """A user error of the command line itself: one line on stderr, exit status 2."""


def _widths(values: list[str]) -> list[int]:
    try:
        return [int(w) for value in values for w in value.split(",") if w.strip()]
    except ValueError:
        raise _Fail(f"--width {values!r} must be integers, e.g. --width 256 --width 1024 or --width 256,1024") from None


def _resolve(system: str | None, config, set_, run: dict):
    """The system and configuration of a command: file or default, then ``--set``, then the options
    (``run`` may hold an ``executor`` table of executor options, merged into ``[run.executor]``)."""
    resolved = registry.load_config(config, system)
    overrides: dict[str, dict] = {}
    for assignment in set_ or []:
        section, key, value = parse_assignment(assignment)
        overrides.setdefault(section, {})[key] = value
    executor = {k: v for k, v in run.pop("executor", {}).items() if v is not None and v != []}
    overrides.setdefault("run", {}).update({k: v for k, v in run.items() if v is not None})
    if executor:
        overrides["run"]["executor"] = executor
    resolved = with_overrides(resolved, overrides)
    select_devices(resolved.run.device)  # fail now, in one line, if the device is missing
    return registry.system_of(resolved), resolved


def _run_options(width, seeds, device, backend, out, **executor) -> dict:
    return {
        "widths": _widths(width) if width else None,
        "seeds": seeds,
        "device": device,
        "backend": backend,
        "out": None if out is None else str(out),
        "executor": executor,
    }


class _StepsPerSecond(ProgressColumn):
    def render(self, task) -> Text:
        return Text("" if task.speed is None else f"{task.speed:,.0f} steps/s")


def _sweep_with_progress(system: System, config, quiet: bool, **options):
    """:func:`run_sweep` with a progress bar over the training steps of its unfinished parts."""
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
    axis = system.axis(config).name

    def start(total_steps):  # after every check, so that a refusal prints one line only
        nonlocal task
        if not total_steps:  # everything is done already (a resumed run): no empty bar
            return
        progress.start()
        task = progress.add_task("training steps", total=total_steps)

    def advance(part, steps):
        progress.update(task, advance=steps, description=f"done: {axis} {part.value}, seeds {part.first}+")

    try:
        return run_sweep(system, config, on_start=start, on_part=advance, **options)
    finally:
        progress.stop()


def _detached(run_dir: Path, quiet: bool) -> None:
    if not quiet:
        _console().print(
            f"submitted; dynsim status {run_dir} follows the jobs, and the same command again collects "
            "the results (it re-attaches to the jobs still queued or running)"
        )


def _console() -> Console:
    return Console(width=max(Console().width, 150))


def _print(report: Report) -> None:
    table = Table(title=report.title)
    for column in report.columns:
        table.add_column(column, justify="right")
    for row in report.rows:
        table.add_row(*row)
    console = _console()
    console.print(table)
    if report.message:
        console.print(report.message)


def _summary(system: System, dataset, title: str) -> None:
    """Print the final metrics, the event times (where the run has any) and, for a comparison run,
    the comparison."""
    rows = final_summary(dataset, system)
    _print(metrics_report(title, rows, dataset.attrs, system.table))
    if system.events is not None and any(key.endswith("_reached") for key in rows[0]):
        _print(events_report(rows, dataset.attrs, system.events.title))
    if has_comparison(dataset, system):
        _print(comparison_report(comparison_of_dataset(dataset, system)))


def _finish(system: System, dataset, run_dir: Path, quiet: bool, comparison=None) -> None:
    draw(dataset, comparison, run_dir / "figures", system)
    if quiet:
        return
    _summary(system, dataset, f"final metrics, mean ± sd over {dataset.sizes['seed']} seeds")
    _console().print(f"results in {run_dir}/ (dynsim.load({str(run_dir)!r}); figures in {run_dir / 'figures'}/)")


@app.callback()
def _group(
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Compiled programs' cache (default: $DYNSIM_CACHE_DIR, else ~/.cache/dynsim/jax-<version>; "
            "DYNSIM_CACHE=off turns it off). Created with mode 0700.",
        ),
    ] = None,
):
    """dynsim: training dynamics of models from ML theory, at finite size and in their exact limits."""
    if cache_dir is not None:
        cache.enable(cache_dir)


@app.command()
def systems():
    """List the systems dynsim simulates, one line each.

    Example:

        dynsim systems
    """
    for name, system in registry.SYSTEMS.items():
        typer.echo(f"{name}: {system.summary}")


@app.command()
def sweep(
    system: SystemOption = None,
    config: ConfigOption = None,
    width: WidthOption = None,
    seeds: SeedsOption = None,
    device: DeviceOption = None,
    backend: Annotated[
        str | None,
        typer.Option(help="two_tower: param (literal SGD on W) | gram (exact Gram-space recursion, flat in width)."),
    ] = None,
    out: OutOption = None,
    set_: SetOption = None,
    with_limit: Annotated[
        bool, typer.Option("--ode", "--limit", help="Add the limit overlay (two_tower: the infinite-width ODE).")
    ] = False,
    executor: ExecutorOption = None,
    jobs: JobsOption = None,
    partition: Annotated[str | None, typer.Option(help="slurm: the partition.")] = None,
    gpus_per_job: Annotated[
        int | None, typer.Option(help="GPUs per job (default 1 with --device gpu, else 0).")
    ] = None,
    cpus_per_job: Annotated[int | None, typer.Option(help="slurm: CPU cores per job.")] = None,
    mem_gb: Annotated[float | None, typer.Option(help="slurm: memory per job, GB.")] = None,
    time_min: Annotated[
        int | None, typer.Option(help="Wall-clock limit per job, minutes (default 60); past it a job is requeued.")
    ] = None,
    slurm_arg: Annotated[
        list[str] | None, typer.Option(help="slurm: an extra #SBATCH option KEY=VALUE (repeatable).")
    ] = None,
    setup: Annotated[
        list[str] | None, typer.Option(help='A shell line each job runs first, e.g. "module load cuda" (repeatable).')
    ] = None,
    parts_per_job: Annotated[
        int | None, typer.Option(help="Parts of one point of the axis per job (they compile once).")
    ] = None,
    detach: DetachOption = False,
    retry_failed: RetryOption = False,
    quiet: QuietOption = False,
):
    """Simulate a system at each point of its sweep axis, save, plot and summarize.

    OUT holds config.toml, parts/ (one netCDF file per point of the axis and seed chunk,
    written atomically), the limit with --ode (ode.nc for two_tower, flow.nc for spectral),
    summary.csv, figures/*.png and run.log. Running the same command again resumes: finished
    parts are skipped.

    The parts run here one after another (--executor inline), or as jobs: local processes, SLURM
    job arrays, or submitit in this process (debug, for pdb); docs/cluster.md. A part that
    raises in a job is recorded and the others go on; the sweep then exits with status 1 naming
    it, and a rerun skips it unless --retry-failed. Results do not depend on the executor.

    Examples:

        dynsim sweep --ode

        dynsim sweep --width 256,1024 --seeds 8 --set loss.kind=positive --out runs/positive

        dynsim sweep --config my.toml --device gpu --out runs/gpu

        dynsim sweep --backend gram --width 1000,10000,100000,1000000 --ode

        dynsim sweep --system spectral --limit --set "run.values=[0.5, 0.25]"

        dynsim sweep --width 256,1024,4096 --seeds 64 --executor local --jobs 2

        dynsim sweep --width 4096 --device gpu --executor slurm --partition gpu --jobs 8 --setup "module load cuda"
    """
    options = _run_options(
        width,
        seeds,
        device,
        backend,
        out,
        kind=executor,
        jobs=jobs,
        partition=partition,
        gpus_per_job=gpus_per_job,
        cpus_per_job=cpus_per_job,
        mem_gb=mem_gb,
        time_min=time_min,
        slurm_args=slurm_arg,
        setup=setup,
        parts_per_job=parts_per_job,
    )
    found, resolved = _resolve(system, config, set_, options)
    dataset = _sweep_with_progress(
        found, resolved, quiet, with_limit=with_limit, detach=detach, retry_failed=retry_failed
    )
    if dataset is None:
        return _detached(Path(resolved.run.out), quiet)
    _finish(found, dataset, Path(resolved.run.out), quiet)


@app.command()
def compare(
    system: SystemOption = None,
    config: ConfigOption = None,
    width: WidthOption = None,
    seeds: SeedsOption = None,
    device: DeviceOption = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="two_tower: gram (its default here; exact, flat in width) | param. "
            "The config's run.backend is not used."
        ),
    ] = None,
    out: OutOption = None,
    set_: SetOption = None,
    executor: ExecutorOption = None,
    jobs: JobsOption = None,
    detach: DetachOption = False,
    retry_failed: RetryOption = False,
    quiet: QuietOption = False,
):
    """A finite process along its sweep axis against its limit: error table, fitted slope, floor, figures.

    two_tower: runs the widths (and a width-10^12 run on the Gram backend that measures the SGD
    floor) and solves the infinite-width ODE on the same grid, and predicts the errors from its
    fluctuation theory (a predicted column and floor, the curve on the figure, and
    figures/variance.png with 8 seeds or more; docs/fluctuations.md). spectral: runs the learning
    rates or batch sizes of run.values and the exact gradient flow. Writes comparison.csv,
    comparison.toml and figures/error_vs_<axis>.png beside the sweep's outputs. Resumable like
    sweep, and run by the same executors (--executor; the other executor options through
    --set run.executor.KEY=VALUE or the config's [run.executor] table).

    Examples:

        dynsim compare --width 256,1024,4096,16384 --seeds 8

        dynsim compare --set train.batch=256 --set train.lr=0.05 --out runs/compare

        dynsim compare --system spectral --set run.axis=batch --set "run.values=[8, 32, 128]"
    """
    options = _run_options(width, seeds, device, None, out, kind=executor, jobs=jobs)
    found, resolved = _resolve(system, config, set_, options)
    resolved = with_overrides(resolved, found.compare_defaults)
    if backend is not None:
        resolved = with_overrides(resolved, {"run": {"backend": backend}})
    check_comparable(found.axis(resolved), resolved.run.seeds)
    dataset = _sweep_with_progress(found, resolved, quiet, floor=True, detach=detach, retry_failed=retry_failed)
    if dataset is None:
        return _detached(Path(resolved.run.out), quiet)
    comparison = comparison_of_dataset(dataset, found)
    run_dir = Path(resolved.run.out)
    write_csv(run_dir / "comparison.csv", comparison.rows())
    fit = {"slope": comparison.slope, "slope_ci": list(comparison.slope_ci), "confidence": CONFIDENCE}
    fit["expected_slope"] = comparison.axis.slope
    if comparison.floor_value is not None:
        fit.update(floor=comparison.floor, floor_sd=comparison.floor_sd)
        fit[f"floor_{comparison.axis.name}"] = comparison.floor_value
    if comparison.prediction is not None:
        fit.update(predicted_floor=comparison.prediction.floor, predicted=comparison.prediction.label)
    write_atomic(run_dir / "comparison.toml", lambda p: p.write_text(tomli_w.dumps(fit)))
    _finish(found, dataset, run_dir, quiet, comparison)


@app.command()
def ode(
    system: SystemOption = None,
    config: ConfigOption = None,
    out: OutOption = None,
    set_: SetOption = None,
    quiet: QuietOption = False,
):
    """Solve the limit of a configuration (two_tower: the infinite-width ODE; spectral: the exact
    gradient flow of every seed); write <limit>.nc and a figure.

    Examples:

        dynsim ode

        dynsim ode --set loss.kind=positive --set "loss.stages=[[1.0, 400.0]]" --out runs/ode

        dynsim ode --system spectral --out runs/flow
    """
    found, resolved = _resolve(system, config, set_, _run_options(None, None, None, None, out))
    dataset = limit_dataset(found, resolved).assign_attrs(describe(resolved, found))
    run_dir = open_run(Path(resolved.run.out), resolved)
    (run_dir / "figures").mkdir(exist_ok=True)
    write_atomic(run_dir / f"{found.limit_name}.nc", lambda p: dataset.to_netcdf(p, engine=ENGINE))
    figure = metric_trajectories(dataset, found.panels, run_dir / "figures" / f"{found.limit_name}.png")
    if not quiet:
        final = dataset.isel(time=-1)
        prefix = f"{found.limit_name}_"
        seeds = final.sizes.get("seed", 0)
        row = {"seeds": seeds}
        for name in found.table:
            if prefix + name in final:
                values = final[prefix + name]
                row[f"{name}_mean"] = float(values.mean())
                row[f"{name}_sd"] = float(values.std())
        cells = [(dataset.attrs["limit_label"], *(metric_cell(row, name) for name in found.table))]
        _print(Report("the limit, final time", (dataset.attrs["axis"], *found.table), cells))
        _console().print(f"written {run_dir / f'{found.limit_name}.nc'} and {figure}")


@app.command()
def plot(run_dir: Annotated[Path, typer.Argument(help="A run directory of sweep or compare.")]):
    """Redraw the figures of a finished run from its saved data.

    Example:

        dynsim plot runs/default
    """
    dataset, system = _load(run_dir)
    comparison = comparison_of_dataset(dataset, system) if has_comparison(dataset, system) else None
    for path in draw(dataset, comparison, run_dir / "figures", system):
        typer.echo(str(path))


@app.command()
def show(run_dir: Annotated[Path, typer.Argument(help="A run directory of sweep or compare.")]):
    """Print the summary of a run: final metrics and event times per point, and the comparison if there is one.

    Example:

        dynsim show runs/default
    """
    dataset, system = _load(run_dir)
    _summary(system, dataset, f"{run_dir}: final metrics, mean ± sd over seeds")


@app.command()
def reproduce(
    figure: Annotated[
        str,
        typer.Argument(help="What to reproduce: fig1 (two_tower), spectral, debiased, large-step, jghm, practical."),
    ],
    quick: Annotated[
        bool,
        typer.Option(
            help="A small variant: fig1 (r = 4, n = 12) under a minute on 2 CPU cores (the full one: about 70 s); "
            "spectral, debiased: a few minutes."
        ),
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Output directory (default runs/<figure>).")] = None,
    device: DeviceOption = None,
    quiet: QuietOption = False,
):
    """Reproduce a figure set of a source: its runs (each a run directory that resumes like sweep),
    figures and summary tables.

    fig1: the seed paper's Figure 1 (two_tower): four sweeps with the infinite-width ODE overlay
    (gram backend): InfoNCE with the two-stage temperature schedule, the positive-pair loss alone,
    and both on the spike spectrum of Lemma B.17; then the phase diagram (final kappa_a and
    rho_min over initial kappa and stage-2 tau) into OUT/phase.nc, and OUT/figures/
    fig1_trajectories.png, fig1_phase.png, fig1_summary.csv (final metrics and stage times per
    panel and width) and fig1_phase.csv.

    spectral: spectral contrastive learning on the augmentation graph (docs/spectral.md).

    debiased: biased, debiased and unbiased InfoNCE on augmentation graphs, and the debiased
    estimator's bias (docs/spectral.md#debiased-contrastive-learning).

    large-step: gradient descent at any stepsize on the logistic risk: phases, margins,
    acceleration, against gradient flow (docs/large_step.md).

    jghm: CLIP on the joint generative hierarchical model against exact Bayes references: risk
    against p, excess risk beside sufficiency, zero-shot against M, the root-label control
    (docs/jghm.md; --quick about 3.5 minutes on 2 CPU cores).

    practical: the seed paper's practical experiment on the packaged digits: frozen features, MLP
    heads with batch norm, InfoNCE against positive pairs only; zero-shot accuracy, condition
    number, stable rank and the linear probe along training, and InfoNCE at each temperature held
    (docs/practical.md; --quick about 45 s).

    Examples:

        dynsim reproduce fig1 --quick

        dynsim reproduce fig1 --out runs/fig1-full

        dynsim reproduce spectral --quick

        dynsim reproduce debiased --device gpu
    """
    targets = registry.reproduce_targets()
    if figure not in targets:
        raise _Fail(f"unknown figure {figure!r}: dynsim reproduce knows {', '.join(targets)}")
    system, target = targets[figure]
    if device is not None:
        select_devices(device)  # fail now, in one line, if the device is missing

    def sweep(config, floor: bool = False, limit: bool = True):
        if device is not None:
            config = with_overrides(config, {"run": {"device": device}})
        return _sweep_with_progress(system, config, quiet, with_limit=limit, floor=floor)

    report = target(Path("runs") / figure if out is None else out, quick, sweep)
    if not quiet:
        _print(report)


def _parts_of(run_dir: Path) -> list[str]:
    """The part names of the run in ``run_dir``: its sweep's, and its floor run's if it has one."""
    if not (run_dir / "fingerprint").exists():
        raise _Fail(f"{run_dir} is not a dynsim run directory (no fingerprint file)")
    config = with_overrides(registry.load_config(run_dir / "config.toml"), {"run": {"out": str(run_dir)}})
    floor = any((run_dir / "parts").glob(f"{FLOOR_PREFIX}*"))
    return [part.name for part in parts(registry.system_of(config), config, floor)]


@app.command()
def status(run_dir: Annotated[Path, typer.Argument(help="A run directory of sweep or compare.")]):
    """Where each part of a run stands: done, failed (with the error), queued or running (with the
    job id), lost (its job ended without it: the next run submits it again) or missing.

    Example:

        dynsim status runs/default
    """
    from .engine.executors import live_jobs, part_state  # imports submitit

    names = _parts_of(run_dir)
    live = live_jobs(run_dir, names)
    states = {name: part_state(run_dir, name, live) for name in names}
    counts: dict[str, int] = {}
    for state, _ in states.values():
        counts[state] = counts.get(state, 0) + 1
    rows = [(name, state, detail) for name, (state, detail) in states.items() if state != "done"]
    message = ", ".join(f"{count} {state}" for state, count in counts.items())
    _print(Report(f"{run_dir}: {len(states)} parts", ("part", "state", "detail"), rows, message))


@app.command()
def cancel(run_dir: Annotated[Path, typer.Argument(help="A run directory of sweep or compare.")]):
    """Cancel the jobs still queued or running for a run (scancel; local jobs are interrupted).
    Finished parts stay; the next run submits the rest again.

    Example:

        dynsim cancel runs/default
    """
    from .engine.executors import cancel_run  # imports submitit

    cancelled = cancel_run(run_dir, _parts_of(run_dir))
    typer.echo(f"cancelled {len(cancelled)} job(s){': ' + ', '.join(cancelled) if cancelled else ''}")


def _load(run_dir: Path):
    try:
        dataset = registry.load(run_dir)
    except FileNotFoundError as err:
        raise _Fail(str(err)) from None
    return dataset, registry.get(dataset.attrs["system"])


def main():
    """Entry point of the ``dynsim`` script: one-line errors, exit status 2 for user errors."""
    try:
        code = app(standalone_mode=False)
    except (_Fail, ConfigError, DeviceUnavailable, OSError) as err:
        _exit(str(err), 2)
    except (SimulationDiverged, SolverError, PartsUnfinished) as err:
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
