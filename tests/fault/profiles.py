"""Run profiles: SHORT (inside `make test`, a few minutes) and LONG (by hand, the anchors' plan).

`FAULT_PROFILE=short|long` picks one (short by default); `FAULT_REPS` overrides the number
of repetitions and `FAULT_RATE` the offered load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Profile:
    name: str
    rate: float  # requests per second
    partitions: int
    reps: int
    # Timeline of one run: load starts at 0, the fault at `fault_at`, heals after
    # `fault_seconds`; load goes on to `load_seconds` and at least `post_heal` after healing.
    fault_at: float
    fault_seconds: float
    load_seconds: float
    post_heal: float
    # Per-fault overrides of fault_seconds.
    fault_overrides: dict[str, float] = field(default_factory=dict)
    chase_rounds: int = 1  # leader kills in a row ("chase the leader")
    function_kills: int = 1
    retry_window: float = 60.0  # retries go on this long after the load stops
    stable_quiet: float = 2.0  # end offsets unchanged this long before reading
    key_cache_ttl: float = 2.0  # KEY_CACHE_TTL_SECONDS of the function processes
    delivery_timeout_ms: int = 8000  # KAFKA_DELIVERY_TIMEOUT_MS
    only: frozenset[str] | None = None  # faults this profile runs (None: all)

    def seconds(self, fault: str) -> float:
        return self.fault_overrides.get(fault, self.fault_seconds)

    def runs(self, fault: str) -> bool:
        return self.only is None or fault in self.only

    @property
    def attempt_timeout(self) -> float:
        # The handler answers by delivery timeout + 1 s; leave room for a slow key lookup.
        return self.delivery_timeout_ms / 1000 + 6.0

    @property
    def test_timeout(self) -> int:
        """Bound of one test (pytest-timeout): start, run, retries, drain, verification."""
        longest = max([self.fault_seconds, *self.fault_overrides.values()])
        chase = self.chase_rounds * (longest + 40)
        return int(self.load_seconds + chase + self.retry_window + self.post_heal + 240)


SHORT = Profile(
    name="short",
    rate=60.0,
    partitions=3,
    reps=1,
    fault_at=2.0,
    fault_seconds=5.0,
    load_seconds=10.0,
    post_heal=2.0,
    fault_overrides={
        "two_brokers_down": 8.0,
        "all_brokers_down": 8.0,
        "postgres_down": 5.0,
        "redis_down": 5.0,
        # Network faults (namespaced topology): the isolation outlasts the fencing delay
        # (broker.session.timeout.ms, 9 s), the functions' cut the delivery timeout + 1 s.
        "leader_isolated": 18.0,  # past FENCING_S + MOVE_S (16.5 s): test_network.py
        # 30 s, as in the long profile: with librdkafka's default timeouts a 30 s cut was
        # followed by 11-26 s more of 503s (a 16 s cut, by 0.2 s), so this length is what
        # holds the producer's recovery to test_function_isolated's bound.
        "function_isolated": 30.0,
        "client_cut": 6.0,
        "slow_leader": 6.0,
        "broker_disk_full": 6.0,
        "postgres_disk_full": 5.0,
    },
    retry_window=45.0,
    stable_quiet=1.0,
    # Fits ~4 minutes on 2 cores, plus ~2.5 for the network and disk faults (as root); the
    # pauses (broker, Redis) run in the long profile only.
    only=frozenset(
        {
            "leader_isolated",
            "function_isolated",
            "client_cut",
            "slow_leader",
            "broker_disk_full",
            "postgres_disk_full",
            "leader_kill",
            "two_brokers_down",
            "all_brokers_down",
            "function_kill",
            "function_sigterm",
            "postgres_down",
            "redis_down",
            "key_revocation",
        }
    ),
)

LONG = Profile(
    name="long",
    rate=100.0,
    partitions=6,
    reps=3,
    fault_at=30.0,
    fault_seconds=30.0,
    load_seconds=120.0,
    post_heal=10.0,
    fault_overrides={
        "leader_kill": 20.0,
        "broker_pause": 20.0,
        "postgres_down": 60.0,
        "client_cut": 20.0,
    },
    chase_rounds=3,
    function_kills=3,
    retry_window=90.0,
    stable_quiet=10.0,
    key_cache_ttl=5.0,
)

PROFILES = {"short": SHORT, "long": LONG}


def current() -> Profile:
    name = os.environ.get("FAULT_PROFILE", "short").strip().lower() or "short"
    if name not in PROFILES:
        raise ValueError(f"FAULT_PROFILE must be one of {sorted(PROFILES)}, not {name!r}")
    profile = PROFILES[name]
    if reps := os.environ.get("FAULT_REPS"):
        profile = replace(profile, reps=max(1, int(reps)))
    if rate := os.environ.get("FAULT_RATE"):
        profile = replace(profile, rate=float(rate))
    return profile
