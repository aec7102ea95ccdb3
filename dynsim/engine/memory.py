"""Memory planning: refuse, before anything is allocated, a run that will not fit in memory.

A system estimates the peak memory of one run (one point of its axis, the seeds simulated
together) as a list of :class:`Term`: what holds the memory, how many bytes, the configuration
fields that set its size, and whether it is paid per seed, once per device or once on the host.
:func:`check_fits` adds the terms up as the devices hold them and compares the sum with the
memory free now (:func:`host_available`, :func:`device_available`); a run that does not fit is
refused with one line naming the estimate, the memory available and the fields that drive the
largest terms. The estimate is the system's; what it covers and how close it comes to the
measured peak is documented with each system (docs/configuration.md, "Memory").
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path

from .config import ConfigError

SEED, DEVICE, HOST = "seed", "device", "host"
SWITCH_VARIABLE = "DYNSIM_MEMORY_CHECK"  # "off": run whatever the estimate says
SEEDS_FIELD = "run.seed_chunk"  # how many seeds run together: it multiplies every SEED term
# A refusal names the terms of at least this share of the estimate, the largest first, at most
# NAMED_MOST of them (and always the largest).
NAMED_SHARE = 0.1
NAMED_MOST = 3
# cgroup limit, usage and page-cache line of memory.stat: v2, then v1 (a container's limit).
CGROUPS = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat", "inactive_file"),
    (
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        "/sys/fs/cgroup/memory/memory.stat",
        "total_inactive_file",
    ),
)


@dataclasses.dataclass(frozen=True)
class Term:
    """One part of a run's peak memory.

    Attributes:
        name: what holds it, for the refusal (``"weights W (m × d)"``).
        bytes: its size: for one seed (``per = SEED``), or in all (``DEVICE``, ``HOST``).
        fields: the configuration fields that set its size (``"data.r"``, ``"run.seed_chunk"``).
        per: ``SEED``: every seed holds its own, on the device that runs it; ``DEVICE``: every
            device holds one (replicated inputs, a bounded batch of work); ``HOST``: host memory,
            whatever the device (NumPy arrays).
        phase: terms of different phases are never held at the same time (training, then the
            metrics); ``None``: held throughout. A peak is what every phase shares plus the
            largest phase.
    """

    name: str
    bytes: int
    fields: tuple[str, ...]
    per: str = DEVICE
    phase: str | None = None


def format_bytes(count: float) -> str:
    """``count`` bytes in binary units, three significant digits (``"1.50 GiB"``)."""
    for unit, scale in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count:.0f} B"


def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (Linux), or ``None``."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _sysconf_available() -> int | None:
    """Free physical pages times the page size (``os.sysconf``), or ``None`` where unsupported."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available(limit_path: str, usage_path: str, stat_path: str, cache_key: str) -> int | None:
    """Bytes left under a cgroup's memory limit (its reclaimable page cache counts as free), or
    ``None`` without a cgroup or a limit."""
    try:
        limit_text = Path(limit_path).read_text().strip()
        usage = int(Path(usage_path).read_text())
        stat = dict(line.split() for line in Path(stat_path).read_text().splitlines())
    except (OSError, ValueError):
        return None
    if limit_text == "max" or int(limit_text) >= 2**60:  # v1 writes "no limit" as a huge number
        return None
    return int(limit_text) - usage + int(stat.get(cache_key, 0))


def host_available() -> int | None:
    """Bytes of host memory a new allocation can get now: ``MemAvailable`` (else the free pages),
    capped by the container's cgroup limit; ``None`` where the system does not say."""
    found = [_meminfo_available() or _sysconf_available(), *(_cgroup_available(*paths) for paths in CGROUPS)]
    found = [value for value in found if value is not None]
    return min(found) if found else None


def device_available(device) -> int | None:
    """Bytes free on an accelerator, ``bytes_limit - bytes_in_use`` of ``device.memory_stats()``;
    ``None`` where JAX does not report them (the CPU: see :func:`host_available`)."""
    stats = device.memory_stats()
    if not stats or "bytes_limit" not in stats:
        return None
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0)


def _peak(terms: Sequence[Term], held: dict[str, int]) -> int:
    """The peak of ``terms``, each held ``held[term.per]`` times: what every phase shares, plus
    the largest phase."""
    phases: dict[str | None, int] = {}
    for term in terms:
        phases[term.phase] = phases.get(term.phase, 0) + held[term.per] * term.bytes
    shared = phases.pop(None, 0)
    return shared + max(phases.values(), default=0)


def on_host(terms: Sequence[Term], seeds: int, devices: int) -> int:
    """Peak bytes when every device is the host's CPU: ``HOST`` terms, each device's ``DEVICE``
    terms, and ``SEED`` terms for every seed (the seed axis is padded to a multiple of ``devices``)."""
    padded = math.ceil(seeds / devices) * devices
    return _peak(terms, {HOST: 1, DEVICE: devices, SEED: padded})


def per_device(terms: Sequence[Term], seeds: int, devices: int) -> int:
    """Peak bytes of one accelerator: its ``DEVICE`` terms and its share of the seeds' ``SEED`` terms."""
    return _peak(terms, {HOST: 0, DEVICE: 1, SEED: math.ceil(seeds / devices)})


def in_host_memory(terms: Sequence[Term]) -> int:
    """Peak bytes of the ``HOST`` terms alone (the host's share of a run on accelerators)."""
    return _peak(terms, {HOST: 1, DEVICE: 0, SEED: 0})


def _scaled(term: Term, seeds: int) -> int:
    return term.bytes * (seeds if term.per == SEED else 1)


def _fields(term: Term) -> tuple[str, ...]:
    return (*term.fields, SEEDS_FIELD) if term.per == SEED else term.fields


def refusal(terms: Sequence[Term], seeds: int, where: str, needed: int, available: int, memory: str) -> str:
    """The one line of a refusal: the estimate, the memory available, and the largest terms
    (:data:`NAMED_SHARE`, :data:`NAMED_MOST`) with the fields that set them."""
    ranked = sorted(terms, key=lambda term: -_scaled(term, seeds))
    total = sum(_scaled(term, seeds) for term in terms)
    named = [term for term in ranked if _scaled(term, seeds) >= NAMED_SHARE * total][:NAMED_MOST] or ranked[:1]
    parts = "; ".join(
        f"{term.name} {format_bytes(_scaled(term, seeds))} (set by {', '.join(_fields(term))})" for term in named
    )
    return (
        f"the run at {where} with {seeds} seed{'s' if seeds > 1 else ''} at once does not fit in memory: it needs "
        f"about {format_bytes(needed)} and {memory} has {format_bytes(available)} free; mostly {parts} "
        f"(docs/configuration.md#memory; {SWITCH_VARIABLE}=off runs it anyway)"
    )


def check_fits(terms: Sequence[Term], seeds: int, devices: Sequence, where: str) -> None:
    """Refuse a run whose estimated peak exceeds the memory free now.

    On the CPU every term is host memory: :func:`on_host` against :func:`host_available`. On
    accelerators, :func:`per_device` against the least :func:`device_available` of ``devices``,
    and :func:`in_host_memory` against :func:`host_available`. Memory that is not reported is
    not checked.

    Args:
        terms: the system's estimate of the run.
        seeds: the seeds simulated together.
        devices: the JAX devices the seeds are sharded over.
        where: the point of the axis, for the message (``"width 1024"``).

    Raises:
        ConfigError: one line: the estimate, the memory free, the largest terms and their fields;
            or an invalid ``DYNSIM_MEMORY_CHECK`` (``on`` or ``off``; ``off`` skips the check).
    """
    switch = os.environ.get(SWITCH_VARIABLE, "on").strip().lower()
    if switch not in ("on", "off"):
        raise ConfigError(f"{SWITCH_VARIABLE} = {switch!r} is invalid: must be 'on' or 'off'")
    if switch == "off":
        return
    checks = []
    if devices[0].platform == "cpu":
        checks.append((on_host(terms, seeds, len(devices)), host_available(), "host memory"))
    else:
        free = [device_available(device) for device in devices]
        known = [value for value in free if value is not None]
        if known:
            memory = f"each {devices[0].platform} device" if len(devices) > 1 else f"the {devices[0].platform}"
            checks.append((per_device(terms, seeds, len(devices)), min(known), memory))
        checks.append((in_host_memory(terms), host_available(), "host memory"))
    for needed, available, memory in checks:
        if available is not None and needed > available:
            raise ConfigError(refusal(terms, seeds, where, needed, available, memory))
