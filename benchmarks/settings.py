"""How much the suite measures: the full run and the smoke run."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FULL", "SMOKE", "Settings"]


@dataclass(frozen=True)
class Settings:
    """Counts and durations of one run. Server runs alternate variants within a round."""

    smoke: bool
    #: In-process: rounds per (group, kind) and the seconds each timed batch aims at.
    inproc_rounds: int
    inproc_batch_s: float
    #: Pass-through through a server: rounds, seconds per measured run, seconds of warm-up.
    rounds: int
    duration: float
    warmup: float
    #: Pass-through side by side (bare and variant at once): rounds, seconds per run.
    paired_rounds: int
    paired_duration: float
    #: Keep-alive connections of the load generator (pass-through and logout).
    concurrency: int
    #: Logout: rounds and seconds per measured run (same warm-up as pass-through).
    logout_rounds: int
    logout_duration: float
    #: Scaling: revoked keys in Redis, connections, rounds alone and side by side,
    #: seconds per run.
    scaling_sizes: tuple[int, ...]
    scaling_concurrency: tuple[int, ...]
    scaling_rounds: int
    scaling_paired_rounds: int
    scaling_duration: float
    #: Scaling: sequential ``EXISTS`` calls timed directly with redis-py per size.
    exists_calls: int
    #: Logout everywhere: sessions of the subject (half used on each of two processes).
    everywhere_sessions: int
    #: Revocation mirror: revoked tokens and session tombstones (each) whose memory is
    #: measured, and subjects with a not-before.
    memory_items: int
    memory_subjects: int
    #: Revocation mirror: logouts whose arrival in another process's mirror is timed,
    #: per follower flavour (asyncio task, thread).
    staleness_trials: int
    #: Audit stream throughput (cluster section): concurrent writers, rounds, seconds
    #: per burst.
    stream_writers: tuple[int, ...]
    stream_rounds: int
    stream_duration: float


FULL = Settings(
    smoke=False,
    inproc_rounds=15,
    inproc_batch_s=0.03,
    rounds=6,
    duration=0.5,
    paired_rounds=8,
    paired_duration=0.5,
    warmup=0.4,
    concurrency=16,
    logout_rounds=6,
    logout_duration=0.7,
    scaling_sizes=(1, 10_000, 1_000_000),
    scaling_concurrency=(1, 8, 64),
    scaling_rounds=2,
    scaling_paired_rounds=4,
    scaling_duration=0.4,
    exists_calls=3000,
    everywhere_sessions=100,
    memory_items=100_000,
    memory_subjects=10_000,
    staleness_trials=300,
    stream_writers=(1, 8, 64),
    stream_rounds=3,
    stream_duration=1.0,
)

SMOKE = Settings(
    smoke=True,
    inproc_rounds=2,
    inproc_batch_s=0.004,
    rounds=1,
    duration=0.1,
    paired_rounds=1,
    paired_duration=0.1,
    warmup=0.05,
    concurrency=4,
    logout_rounds=1,
    logout_duration=0.1,
    scaling_sizes=(1, 1_000),
    scaling_concurrency=(2,),
    scaling_rounds=1,
    scaling_paired_rounds=1,
    scaling_duration=0.1,
    exists_calls=50,
    everywhere_sessions=100,
    memory_items=5_000,
    memory_subjects=1_000,
    staleness_trials=20,
    stream_writers=(4,),
    stream_rounds=1,
    stream_duration=0.1,
)
