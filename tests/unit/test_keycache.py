import asyncio

import pytest

from audit_ingest.errors import KeyStoreUnavailable
from audit_ingest.keycache import KeyResolver
from tests.unit.fakes import FakeKeyStore
from tests.unit.samples import stored


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resolver(store: FakeKeyStore, clock: Clock) -> KeyResolver:
    return KeyResolver(store, ttl=30, negative_ttl=5, stale=300, size=100, clock=clock)


async def test_positive_entries_live_for_the_ttl() -> None:
    store, clock = FakeKeyStore({"h": stored()}), Clock()
    keys = resolver(store, clock)
    assert (await keys.resolve("h")) == stored()
    clock.now += 29
    await keys.resolve("h")
    assert store.calls == 1
    clock.now += 2
    store.keys["h"] = stored(is_active=False)  # revoked in the database
    assert (await keys.resolve("h")).is_active is False  # type: ignore[union-attr]
    assert store.calls == 2


async def test_negative_entries_live_for_the_negative_ttl() -> None:
    store, clock = FakeKeyStore(), Clock()
    keys = resolver(store, clock)
    assert await keys.resolve("nope") is None
    assert await keys.resolve("nope") is None
    assert store.calls == 1
    clock.now += 6
    await keys.resolve("nope")
    assert store.calls == 2


async def test_store_down_serves_known_keys_until_stale_limit() -> None:
    store, clock = FakeKeyStore({"h": stored()}), Clock()
    keys = resolver(store, clock)
    await keys.resolve("h")
    store.down = True
    clock.now += 100
    assert await keys.resolve("h") == stored()
    clock.now += 300
    with pytest.raises(KeyStoreUnavailable):
        await keys.resolve("h")


async def test_store_down_unknown_key_is_unavailable_never_unknown() -> None:
    store, clock = FakeKeyStore(), Clock()
    keys = resolver(store, clock)
    store.down = True
    with pytest.raises(KeyStoreUnavailable):
        await keys.resolve("never-seen")


async def test_concurrent_misses_share_one_query() -> None:
    class SlowStore(FakeKeyStore):
        async def find(self, key_hash: str):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0.01)
            return await super().find(key_hash)

    store = SlowStore({"h": stored()})
    keys = resolver(store, Clock())
    results = await asyncio.gather(*(keys.resolve("h") for _ in range(20)))
    assert all(r == stored() for r in results)
    assert store.calls == 1


async def test_a_down_store_is_asked_once_per_backoff_not_per_request() -> None:
    store, clock = FakeKeyStore({"h": stored()}), Clock()
    keys = KeyResolver(
        store, ttl=30, negative_ttl=5, stale=300, size=100, clock=clock, failure_backoff=5
    )
    await keys.resolve("h")
    store.down = True
    clock.now += 31  # expired: the next lookup asks the store, which fails
    assert await keys.resolve("h") == stored()
    calls = store.calls
    for _ in range(10):
        assert await keys.resolve("h") == stored()
    assert store.calls == calls  # served stale without waiting on the store again
    clock.now += 5
    store.down = False
    await keys.resolve("h")
    assert store.calls == calls + 1  # the backoff ended: asked again, and it answered
