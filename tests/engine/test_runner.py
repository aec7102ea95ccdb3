"""The generic scan runner on a toy system whose trajectory is known exactly."""

import jax.numpy as jnp
import numpy as np

from dynsim.engine.runner import first_divergence, record_steps, scan_run


def test_records_land_on_the_grid_with_a_final_record():
    np.testing.assert_array_equal(record_steps(10, 4), [0, 4, 8, 10])
    np.testing.assert_array_equal(record_steps(8, 4), [0, 4, 8])
    records, diverged_at = scan_run(jnp.float64(1.0), lambda x, step: 2 * x + step, lambda x, step: (x, step), 10, 4)
    values, steps = records
    # x_{s+1} = 2 x_s + s from x_0 = 1
    expected, x = [1.0], 1.0
    for s in range(10):
        x = 2 * x + s
        expected.append(x)
    np.testing.assert_array_equal(steps, [0, 4, 8, 10])
    np.testing.assert_array_equal(values, np.array(expected)[[0, 4, 8, 10]])
    assert int(diverged_at) == -1


def test_divergence_is_reported_at_the_exact_step():
    step_fn = lambda x, step: jnp.where(step == 6, jnp.nan, x + 1.0)  # noqa: E731
    _, diverged_at = scan_run(jnp.zeros(3), step_fn, lambda x, step: x[0], 20, 5)
    assert int(diverged_at) == 7  # the 7th step (index 6) produced the NaN


def test_first_divergence_takes_the_earlier_of_state_and_records():
    steps = np.array([0, 5, 10])
    records = np.ones((3, 3, 2))
    records[1, 2, 0] = np.inf
    records[2, 1, 1] = np.nan
    state = np.array([-1, -1, 7], dtype=np.int32)
    np.testing.assert_array_equal(first_divergence(state, records, steps), [-1, 10, 5])
