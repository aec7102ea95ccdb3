"""The two-tower system's peak memory at one width, estimated from its configuration.

One run of :func:`dynsim.simulate` holds, per seed: the training state (``param``: the weights
``W_A, W_B``, m × d each, with their gradient, update and optimizer slots; ``gram``: the
``2q × 2q`` matrices ``Phi``, ``K_0`` and their updates), the temporaries of a step (the
``B × B`` similarities and, for ``param``, the ``B × m`` embeddings, forward and backward), and
the records kept, one ``2q × 2q`` latent Gram matrix per record, from the training program to the
metrics. Every device holds the inputs (the bases and latent maps, ``d × q`` per tower) and one
batch of metric evaluations: :func:`metric_bytes` per record (the ``N × N`` similarities of the
``N = run.alignment_samples`` Monte-Carlo pairs), :func:`records_at_once` records at a time.

The coefficients (how many copies of each array are alive at the peak) were read off XLA's
buffer assignment on the CPU (``compiled.memory_analysis()``) and checked against the measured
peak resident memory (tests/engine/test_memory.py).
"""

from __future__ import annotations

import numpy as np

from ..engine.memory import DEVICE, SEED, Term, check_fits
from ..engine.runner import record_steps
from ..engine.schedule import steps_per_record
from .config import Config

TRAINING, METRICS = "training", "metrics"  # the two programs of a run, one after the other
# Records are evaluated in batches of records_at_once: as many as METRIC_BUDGET bytes hold, a
# number fixed by the configuration (never by the seeds or the records), so that a record's
# metrics do not depend on how many records or seeds run beside it. At least two: XLA's CPU
# program for a batch of one holds about 2.5 times its buffer assignment at run time (measured
# at N = 1024 to 4096), a batch of two or more about once.
METRIC_BUDGET = 128 * 2**20
MIN_RECORDS_AT_ONCE = 2
MAX_RECORDS_AT_ONCE = 256
# Copies of W_A, W_B alive in a param step (weights in and out of the step, gradient, update, the
# loop's carry), and of Phi in a gram step; each optimizer slot (momentum, Adam's two) adds one.
PARAM_STATE_COPIES = 5
GRAM_STATE_COPIES = 8
OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}
# Arrays of B × B (similarities, their softmax and gradients) and of B × m (embeddings and their
# gradients, both towers) alive in a step.
SIMILARITY_COPIES = 6
EMBEDDING_COPIES = 5
# Recorded Q's are held twice by the training program: the scan's stacked records and their
# concatenation with the first and last, its output (which the metrics then read in place).
RECORD_COPIES = 2


def metric_bytes(samples: int, q: int, itemsize: int) -> int:
    """Bytes of metric evaluation of one record: about five ``N × N`` arrays (similarities, margins,
    the loss's softmax), the ``N × 2q`` embeddings of both towers and a few ``2q × 2q`` matrices
    (the eigendecompositions), ``N = run.alignment_samples``."""
    return itemsize * (5 * samples**2 + 8 * samples * 2 * q + 4 * (2 * q) ** 2)


def records_at_once(samples: int, q: int, itemsize: int) -> int:
    """How many records a device evaluates at once: as many as :data:`METRIC_BUDGET` holds, within
    ``[MIN_RECORDS_AT_ONCE, MAX_RECORDS_AT_ONCE]``."""
    fit = METRIC_BUDGET // metric_bytes(samples, q, itemsize)
    return int(np.clip(fit, MIN_RECORDS_AT_ONCE, MAX_RECORDS_AT_ONCE))


def record_count(config: Config) -> int:
    """Records of one seed: every ``run.record_every`` of training time, and the last step."""
    every = steps_per_record(config.run.record_every, config.train.lr)
    return len(record_steps(sum(config.steps_per_stage), every))


def size_fields(config: Config) -> tuple[str, ...]:
    """The fields that set the dimensions ``q = r + n`` and ``d``."""
    return ("data.r", "data.n") if config.data.d is None else ("data.r", "data.n", "data.d")


def training_terms(config: Config, width: int, backend: str, init: str) -> list[Term]:
    """One seed's training state and step temporaries on ``backend``, held while it trains."""
    data, train = config.data, config.train
    itemsize = np.dtype(train.precision).itemsize
    q, batch, slots = data.r + data.n, train.batch, OPTIMIZER_SLOTS[train.optimizer]
    weights = 2 * width * data.dim * itemsize  # W_A and W_B
    similarities = SIMILARITY_COPIES * batch**2 * itemsize
    if backend == "param":
        embeddings = EMBEDDING_COPIES * batch * width * itemsize
        return [
            Term(
                "weights W (m × d) in a step",
                (PARAM_STATE_COPIES + slots) * weights,
                ("run.widths", *size_fields(config), "train.optimizer"),
                SEED,
                TRAINING,
            ),
            Term(
                "step temporaries (B × B, B × m)",
                similarities + embeddings,
                ("train.batch", "run.widths"),
                SEED,
                TRAINING,
            ),
        ]
    embeddings = EMBEDDING_COPIES * batch * 2 * q * itemsize
    terms = [
        Term(
            "Gram-space state (2q × 2q) in a step",
            (GRAM_STATE_COPIES + slots) * (2 * q) ** 2 * itemsize,
            ("data.r", "data.n", "train.optimizer"),
            SEED,
            TRAINING,
        ),
        Term("step temporaries (B × B, B × 2q)", similarities + embeddings, ("train.batch",), SEED, TRAINING),
    ]
    if init == "exact":  # K_0 is formed from the very W_0 that param draws
        terms.append(
            Term(
                "initial weights W_0 (m × d)", weights, ("run.widths", *size_fields(config), "run.init"), SEED, TRAINING
            )
        )
    return terms


def estimate(config: Config, width: int, backend: str, init: str) -> list[Term]:
    """The :class:`~dynsim.engine.memory.Term` s of a run at ``width`` on ``backend`` with the
    resolved ``init`` (``SEED`` terms for one seed)."""
    data, samples = config.data, config.run.alignment_samples
    itemsize = np.dtype(config.train.precision).itemsize
    q = data.r + data.n
    records = RECORD_COPIES * record_count(config) * (2 * q) ** 2 * itemsize
    metrics = records_at_once(samples, q, itemsize) * metric_bytes(samples, q, itemsize)
    return [
        Term("inputs: bases and latent maps (d × q)", 4 * data.dim * q * itemsize, size_fields(config), DEVICE),
        *training_terms(config, width, backend, init),
        Term("records kept (2q × 2q each)", records, ("data.r", "data.n", "loss.stages", "run.record_every"), SEED),
        Term("metric evaluation (N × N per record)", metrics, ("run.alignment_samples",), DEVICE, METRICS),
    ]


def check_memory(config: Config, width: int, seeds: int, backend: str, init: str, devices) -> None:
    """Refuse a run at ``width`` with ``seeds`` seeds on ``devices`` that will not fit in memory
    (:func:`dynsim.engine.memory.check_fits`).

    Raises:
        ConfigError: one line naming the estimate, the memory free and the fields that drive it.
    """
    check_fits(estimate(config, width, backend, init), seeds, devices, f"width {width}")
