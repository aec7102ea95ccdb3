"""``dynsim.ode.solve`` and ``solve_batch``: against the independent SciPy reference in
``ode/reference.py``, against each other, on the seed paper's claims, and on bad input."""

import numpy as np
import pytest

import dynsim
from dynsim import ode
from dynsim.engine import exported
from dynsim.two_tower import ode as two_tower_ode

NAMES = ("a", "b", "p", "nu_a", "nu_b")

# Each case: the config, and what the reference needs to rebuild the problem on its own.
CASES = {
    "infonce-two-stage": (
        {},
        {"sigma_a": ("geometric", 4.0, 8), "sigma_b": ("geometric", 4.0, 8), "eta": [0.3] * 24},
    ),
    "infonce-three-stage-unequal-no-rescale": (
        {
            "data": {"r": 5, "n": 7, "kappa": 3.0, "kappa_b": 6.0, "noise": 0.5},
            "loss": {"stages": [[0.1, 10.0], [1.0, 20.0], [4.0, 30.0]], "rescale": False, "lam": 2.0},
            "run": {"record_every": 5.0},
        },
        {"sigma_a": ("geometric", 3.0, 5), "sigma_b": ("geometric", 6.0, 5), "eta": [0.5] * 7},
    ),
    "positive-spike": (
        {
            "data": {"r": 6, "n": 10, "spectrum": "spike", "kappa": 5.0},
            "loss": {"kind": "positive", "stages": [[1.0, 200.0]]},
        },
        {"sigma_a": ("spike", 5.0, 6), "sigma_b": ("spike", 5.0, 6), "eta": [0.3] * 10},
    ),
    "spectral-linear-three-stage": (
        {
            "data": {"r": 4, "n": 3, "spectrum": "linear", "kappa": 2.5, "eta": [0.2, 0.4, 0.6]},
            "loss": {"kind": "spectral", "stages": [[1.0, 20.0], [2.0, 20.0], [0.5, 20.0]], "lam": 0.5},
            "run": {"record_every": 4.0},
        },
        {"sigma_a": ("linear", 2.5, 4), "sigma_b": ("linear", 2.5, 4), "eta": [0.2, 0.4, 0.6]},
    ),
    "infonce-durations-rounded-to-steps": (
        {
            "data": {"r": 3, "n": 4, "kappa": 2.0},
            "loss": {"stages": [[0.2, 10.0], [2.0, 20.0]]},
            "train": {"lr": 0.3},  # stages of 33 and 67 steps: boundaries at 9.9 and 30.0
            "run": {"record_every": 3.0},
        },
        {"sigma_a": ("geometric", 2.0, 3), "sigma_b": ("geometric", 2.0, 3), "eta": [0.3] * 4},
    ),
    "infonce-listed-unequal-spectra": (
        {
            "data": {"r": 3, "n": 2, "spectrum": "list", "sigma": [3.0, 1.5, 1.0], "sigma_b": [1.0, 2.0, 2.5]},
            "loss": {"stages": [[0.05, 30.0], [8.0, 50.0]]},
            "run": {"record_every": 2.0},
        },
        {"sigma_a": [3.0, 1.5, 1.0], "sigma_b": [1.0, 2.0, 2.5], "eta": [0.3, 0.3]},
    ),
}


def _sigma(reference, value):
    return reference.spectrum(*value) if isinstance(value, tuple) else np.asarray(value)


def _stack(solution):
    return np.concatenate([getattr(solution, name) for name in NAMES], axis=-1)


def _reference_solution(reference, config, spec, times):
    lr = config.train.lr  # stages switch where the simulator does: after round(T_k / lr) steps
    stages = [(tau, round(duration / lr) * lr) for tau, duration in config.loss.stages]
    sigma_a, sigma_b = _sigma(reference, spec["sigma_a"]), _sigma(reference, spec["sigma_b"])
    eta = np.asarray(spec["eta"])
    y = reference.solve(
        sigma_a, sigma_b, eta, eta, stages, config.loss.lam, config.loss.kind, config.loss.rescale, times
    )
    ends = np.cumsum([duration for _, duration in stages])
    taus = [stages[min(np.searchsorted(ends, t, side="right"), len(stages) - 1)][0] for t in times]
    values = [
        reference.metrics(row, config.data.r, tau, config.loss.lam, config.loss.kind)
        for row, tau in zip(y, taus, strict=True)
    ]
    return y, {name: np.array([v[name] for v in values]) for name in values[0]}


@pytest.mark.parametrize("case", CASES)
def test_solve_equals_the_scipy_reference(reference, case):
    overrides, spec = CASES[case]
    config = dynsim.load_config(overrides)
    solution = ode.solve(config)
    y, values = _reference_solution(reference, config, spec, solution.times)
    scale = np.abs(y).max(axis=0)  # each coordinate's own scale over the run
    assert np.max(np.abs(_stack(solution) - y) / scale) < 1e-6
    for name, expected in values.items():
        np.testing.assert_allclose(solution.metrics[name], expected, rtol=1e-6, atol=1e-9, err_msg=name)
    assert np.all(solution.metrics["offdiag"] == 0)
    assert 0 < solution.num_steps < ode.DEFAULT_MAX_STEPS


def test_stiff_solver_agrees_at_large_tau_without_rescaling(reference):
    overrides, spec = CASES["infonce-listed-unequal-spectra"]
    config = dynsim.load_config({**overrides, "loss": {"stages": [[0.05, 10.0], [25.0, 10.0]], "rescale": False}})
    explicit = ode.solve(config)
    stiff = ode.solve(config, solver="kvaerno5")
    y, _ = _reference_solution(reference, config, spec, explicit.times)
    scale = np.abs(y).max(axis=0)
    assert np.max(np.abs(_stack(stiff) - y) / scale) < 1e-6
    assert np.max(np.abs(_stack(explicit) - y) / scale) < 1e-6


def test_default_grid_is_the_finite_width_record_grid():
    config = dynsim.load_config(
        {
            "data": {"r": 2, "n": 1},
            "loss": {"stages": [[0.5, 0.7], [2.0, 0.5]]},
            "train": {"batch": 4, "lr": 0.1},
            "run": {"record_every": 0.5, "alignment_samples": 8},
        }
    )
    np.testing.assert_array_equal(ode.solve(config).times, dynsim.simulate(config, width=8, seeds=1).times)


def _batch_configs():
    base = {"data": {"r": 3, "n": 4}, "run": {"record_every": 10.0}}
    return [
        {**base, "loss": {"stages": [[0.05, 20.0], [3.0, 60.0]]}},
        {**base, "data": {"r": 3, "n": 4, "kappa": 8.0, "noise": 0.1}, "loss": {"lam": 4.0}},
        {**base, "loss": {"stages": [[0.2, 40.0]], "rescale": False}},
        {**base, "data": {"r": 3, "n": 4, "spectrum": "spike"}, "loss": {"stages": [[0.1, 5], [1.0, 5], [3.0, 5]]}},
        {**base, "train": {"lr": 0.5}, "run": {"record_every": 7.0}},
    ]


def test_solve_batch_equals_a_loop_of_solve():
    # The batched and single programs round differently, and near the stability limit of the
    # explicit solver (config 1, kappa = 8) that changes which steps are accepted; so the two
    # agree to the solver's accuracy (rtol 1e-8 per step), not bit for bit.
    configs = _batch_configs()
    batch = ode.solve_batch(configs)
    assert len(batch) == len(configs)
    for i, config in enumerate(configs):
        single, member = ode.solve(config), batch[i]
        np.testing.assert_array_equal(member.times, single.times)
        scale = np.abs(_stack(single)).max(axis=0)
        assert np.max(np.abs(_stack(member) - _stack(single)) / scale) < 1e-7
        for name in single.metrics:
            np.testing.assert_allclose(member.metrics[name], single.metrics[name], rtol=1e-6, atol=1e-12)


def test_solve_batch_on_shared_times_and_compiles_once():
    configs = _batch_configs()[:3]
    ts = np.linspace(0.0, 40.0, 9)
    batch = ode.solve_batch(configs, ts)
    assert batch.times.shape == (3, 9) and batch.a.shape == (3, 9, 3) and batch.metrics["loss"].shape == (3, 9)
    for i, config in enumerate(configs):
        single = ode.solve(config, ts)
        np.testing.assert_array_equal(batch[i].times, ts)
        assert np.max(np.abs(_stack(batch[i]) - _stack(single)) / np.abs(_stack(single)).max(axis=0)) < 1e-7
    programs = _programs_in_process()
    changed = [{**config, "loss": {**config["loss"], "lam": 3.0}} for config in configs]
    ode.solve_batch(changed, ts)
    assert _programs_in_process() == programs


def _programs_in_process() -> tuple[int, int, int]:
    # What the solve has traced or loaded in this process: with the compile cache on, the exported
    # programs it loaded; off, the jitted programs it traced.
    return (
        len(exported._LOADED),
        two_tower_ode._flat_program.cache_info().currsize,
        two_tower_ode._solve_arrays._cache_size(),
    )


def test_positive_loss_aligns_and_raises_the_condition_number():
    # Seed 001 Thm 4.3 (i): without negatives the towers align but kappa grows.
    solution = ode.solve({"loss": {"kind": "positive", "stages": [[1.0, 400.0]]}})
    assert solution.metrics["rho_min"][-1] > 0.9999
    assert solution.metrics["kappa_a"][-1] > 2 * solution.metrics["kappa_a"][0]
    assert solution.metrics["alignment"][-1] == 1 - 2.0**-8


def test_two_stage_infonce_shrinks_the_condition_number_in_stage_two():
    # Seed 001 Thm 4.3 (ii): stage 1 aligns, stage 2 (negatives at tau = O(1)) rebalances.
    config = dynsim.load_config(None)
    contrastive = ode.solve(config)
    positive = ode.solve({"loss": {"kind": "positive", "stages": [[1.0, 1660.0]]}})
    boundary = int(np.flatnonzero(contrastive.times == 60.0)[0])
    kappa = contrastive.metrics["kappa_a"]
    assert kappa[boundary] > kappa[0]  # stage 1 raised it
    assert kappa[-1] < kappa[boundary] / 4 and kappa[-1] < positive.metrics["kappa_a"][-1] / 4
    assert contrastive.metrics["rho_min"][-1] > 0.99
    for solution in (contrastive, positive):  # the noise norms decay, monotonically
        assert np.all(np.diff(solution.nu_a, axis=0) <= 0) and np.all(solution.nu_a[-1] < solution.nu_a[0])


def test_basis_dimension_and_batch_normalization_are_accepted_and_do_not_enter():
    base = ode.solve({"data": {"r": 3, "n": 2}})
    other = ode.solve(
        {"data": {"r": 3, "n": 2, "basis": "random", "d": 9}, "train": {"normalization": "batch", "batch": 2}}
    )
    np.testing.assert_array_equal(_stack(base), _stack(other))


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_optimizers_without_a_reduced_ode_are_refused(optimizer):
    with pytest.raises(
        dynsim.ConfigError, match="train.optimizer = .* has no reduced ODE.*use train.optimizer = 'sgd'"
    ):
        ode.solve({"train": {"optimizer": optimizer}})


def test_configs_that_cannot_share_a_program_are_refused_with_the_field():
    with pytest.raises(dynsim.ConfigError, match=r"configs\[1\] cannot be batched.*data.r = 4 differs from 8"):
        ode.solve_batch([{}, {"data": {"r": 4}}])
    with pytest.raises(dynsim.ConfigError, match=r"configs\[2\].*loss.kind = 'positive' differs from 'infonce'"):
        ode.solve_batch([{}, {}, {"loss": {"kind": "positive"}}])
    with pytest.raises(dynsim.ConfigError, match="non-empty sequence"):
        ode.solve_batch([])


def test_exhausted_steps_raise_a_solver_error_naming_the_time():
    with pytest.raises(ode.SolverError, match=r"stopped at t = [0-9.e-]+ of 1660.*max_steps = 20.*kvaerno5") as info:
        ode.solve(None, max_steps=20)
    assert 0 < info.value.time < 1660
    with pytest.raises(ode.SolverError, match=r"configs\[1\]: the ODE solver stopped"):
        ode.solve_batch([{"loss": {"stages": [[1.0, 1.0]]}}, {}], max_steps=20)


@pytest.mark.parametrize(
    "ts, message",
    [([0.0, 2.0, 1.0], "strictly increasing"), ([0.0, 5000.0], r"ts must lie in \[0, 1660\]"), ([[0.0]], "1-D")],
)
def test_bad_save_times_are_refused(ts, message):
    with pytest.raises(dynsim.ConfigError, match=message):
        ode.solve(None, ts)


def test_bad_solver_and_single_solution_indexing():
    with pytest.raises(ValueError, match="solver = 'rk4' is invalid: must be one of 'tsit5'"):
        ode.solve(None, solver="rk4")
    with pytest.raises(TypeError, match="cannot be indexed"):
        ode.solve({"data": {"r": 2, "n": 1}})[0]
    with pytest.raises(TypeError, match="one integer"):
        ode.solve_batch([{"data": {"r": 2, "n": 1}}] * 2)[0:1]
    with pytest.raises(dynsim.ConfigError, match="strictly increasing .after clipping"):
        ode.solve_batch([{}, {}], [0.0, 1660.0 - 1e-13, 1660.0 * (1 + 1e-13)])


@pytest.mark.parametrize("name", ["tsit5", "dopri5"])
def test_unrolled_solvers_equal_diffrax_own(name):
    # dynsim's tsit5/dopri5 write diffrax's Runge-Kutta stages out one by one (for speed): the
    # same tableau, step control and dense output, so the same steps and the same states up to
    # the order of floating-point sums. Batched with different stage boundaries, so that one
    # configuration's jump forces a fresh first stage while the others carry theirs over.
    import diffrax

    configs = [
        {"data": {"r": 3, "n": 4}, "loss": {"stages": stages}}
        for stages in (
            [[0.05, 30.0], [3.0, 200.0]],
            [[0.05, 45.0], [1.0, 185.0]],
            [[0.1, 10.0], [2.0, 20.0], [3.0, 200.0]],
        )
    ]
    ours = ode.solve_batch(configs, solver=name)
    theirs = ode.solve_batch(configs, solver={"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5}[name]())
    np.testing.assert_array_equal(ours.num_steps, theirs.num_steps)
    single = ode.solve(configs[0], solver=name)
    for part in ("a", "b", "p", "nu_a", "nu_b"):
        scale = np.max(np.abs(getattr(theirs, part)), axis=(1, 2), keepdims=True)
        np.testing.assert_allclose(getattr(ours, part) / scale, getattr(theirs, part) / scale, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            getattr(single, part) / scale[0], getattr(theirs[0], part) / scale[0], rtol=0, atol=1e-12
        )
