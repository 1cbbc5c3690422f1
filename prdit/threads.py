"""How many CPU threads torch computes with: chosen from the machine's free cores, overridable.

Why a policy at all: torch's default is one OpenMP thread per core, which is right on an idle
machine and badly wrong on a busy one. OpenMP work is split evenly and every parallel region ends
in a barrier, so one thread that the OS has parked behind another program's process holds up all
the others (which spin, then sleep, waiting for it). Measured on the 2-core development machine
with two other busy processes: sampling two volumes with the bundled 32^3 model took 5.1-5.6 s
with 1 thread and 8.9 s with 2 (36 s on an earlier day); ``OMP_WAIT_POLICY=PASSIVE`` (sleep
instead of spin) barely helped (8.5 s). What helps is not asking for cores that are not free.

The policy, in order:

1. an explicit count (a command's ``--threads N``, the studio's setting, ``train.threads``);
2. the environment variable ``PRDIT_THREADS`` (``auto`` or a number);
3. ``auto``: the cores this process may use (its CPU affinity) minus what other processes keep
   busy, measured from ``/proc/stat`` over a short window with this process's own CPU time taken
   out, rounded, at least 1. Elsewhere (no ``/proc``) all usable cores.

Sampling (``prdit sample``, the studio) re-checks while it runs (:class:`ThreadGovernor`, every
few seconds), so a run that started on a busy machine speeds up when the other program ends, and
the other way round. Training and evaluation choose once at the start: a training run's
arithmetic (and so its exact resume) must not depend on the machine's load.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

ENV_VAR = "PRDIT_THREADS"
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (not idle, iowait, guest*)


class ThreadSettingError(ValueError):
    """A thread count that is not a positive integer or ``auto``."""


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    source: str  # "--threads", "PRDIT_THREADS" or "auto"
    reason: str  # for logs: why this count

    def describe(self) -> str:
        return f"{self.threads} CPU thread{'s' if self.threads != 1 else ''} ({self.source}: {self.reason})"


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity, e.g. a container's or taskset's limit)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def core_budget(cores: int | None, max_threads: int | None) -> int:
    """The most threads the automatic choice may give: usable cores (or ``cores``), capped."""
    return min(cores or usable_cores(), max_threads or 1 << 16)


@dataclass(frozen=True)
class CpuSample:
    wall: float  # seconds (monotonic)
    busy: float  # CPU-seconds all processes have been busy since boot
    own: float  # CPU-seconds of this process (all its threads)


def cpu_sample() -> CpuSample | None:
    """A reading of the machine's and this process's CPU time; None where /proc is missing."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()[1:]
        with open("/proc/self/stat", encoding="ascii") as f:
            own_fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = sum(int(fields[i]) for i in _BUSY_FIELDS if i < len(fields)) / hz
    own = (int(own_fields[11]) + int(own_fields[12])) / hz  # utime, stime (fields 14 and 15)
    return CpuSample(time.monotonic(), busy, own)


def others_busy_cores(before: CpuSample, after: CpuSample) -> float:
    """Cores other processes kept busy between two samples (this process's own time excluded)."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    return max(0.0, ((after.busy - before.busy) - (after.own - before.own)) / wall)


def parse_thread_setting(value: str | int | None, what: str = ENV_VAR) -> int | None:
    """``None``/``""``/``"auto"``/``0`` -> None (auto); a positive integer -> itself."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ThreadSettingError(
            f"{what}: expected a positive number of threads or 'auto', got {value!r}"
        ) from None
    if n < 0:
        raise ThreadSettingError(f"{what}: expected a positive number of threads or 'auto', got {value!r}")
    return n or None


def auto_threads(cores: int, others: float | None) -> int:
    """Free cores, rounded, within [1, cores]; all cores when the load is unknown."""
    if others is None:
        return cores
    return max(1, min(cores, int(cores - others + 0.5)))


def choose_threads(
    requested: int | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cores: int | None = None,
    others: float | None = None,
    window: float = 0.2,
    max_threads: int | None = None,
) -> ThreadChoice:
    """The thread count for a torch computation about to start (see the module docstring).

    ``others`` (busy cores of other processes) is measured over ``window`` seconds when not
    given; tests pass it in. ``max_threads`` caps the automatic choice (the studio's small models
    stop scaling at ~8).
    """
    if requested:
        if requested < 1:
            raise ThreadSettingError(f"--threads: expected a positive number, got {requested}")
        return ThreadChoice(int(requested), "--threads", "set explicitly")
    env = os.environ if env is None else env
    from_env = parse_thread_setting(env.get(ENV_VAR))
    if from_env:
        return ThreadChoice(from_env, ENV_VAR, "set in the environment")
    cores = core_budget(cores, max_threads)
    if others is None:
        before = cpu_sample()
        if before is not None and window > 0:
            time.sleep(window)
            after = cpu_sample()
            others = others_busy_cores(before, after) if after is not None else None
    n = auto_threads(cores, others)
    load = "unknown load" if others is None else f"other programs keep {others:.1f} busy"
    return ThreadChoice(n, "auto", f"{cores} usable cores, {load}")


class ThreadGovernor:
    """Keeps torch's thread count at the free cores during a long computation (auto mode only).

    Call :meth:`tick` between units of work (sampling steps, training steps); every ``period``
    seconds it measures what other processes used since the last check and resets
    ``torch.set_num_threads`` when the free cores changed. With an explicit choice it does nothing.
    """

    def __init__(
        self,
        choice: ThreadChoice,
        period: float = 5.0,
        cores: int | None = None,
        max_threads: int | None = None,
    ) -> None:
        self.choice = choice
        self.period = period
        self.cores = core_budget(cores, max_threads)
        self.threads = choice.threads
        self.changes: list[tuple[float, int]] = []  # (seconds since start, new count), for logs
        self._start = time.monotonic()
        self._last = cpu_sample() if choice.source == "auto" else None

    def tick(self) -> int:
        if self._last is None:
            return self.threads
        now = time.monotonic()
        if now - self._last.wall < self.period:
            return self.threads
        sample = cpu_sample()
        if sample is None:
            self._last = None
            return self.threads
        n = auto_threads(self.cores, others_busy_cores(self._last, sample))
        self._last = sample
        if n != self.threads:
            import torch

            torch.set_num_threads(n)
            self.threads = n
            self.changes.append((now - self._start, n))
        return self.threads


def apply_threads(choice: ThreadChoice, max_threads: int | None = None) -> ThreadGovernor:
    """Set torch's intra-op threads to ``choice`` and return a governor for long loops."""
    import torch

    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return ThreadGovernor(choice, max_threads=max_threads)
