"""Resuming the feed from an event id: no gap and no duplicate at the seam, and a reset past retention."""

from __future__ import annotations

import asyncio

from tests.fixtures.web import ConnectFeed, StartServer, append_events, hub_of
from whaled.store import Database
from whaled.web import WebServer

BURST = 3000


async def _burst(db: Database, started: asyncio.Event, stop: asyncio.Event) -> list[int]:
    """Append events in small transactions until ``stop`` is set and at least BURST were appended."""
    ids: list[int] = []
    while len(ids) < BURST or not stop.is_set():
        ids += await append_events(db, 50, per_transaction=50)
        if len(ids) >= 500:
            started.set()
        await asyncio.sleep(0)
    return ids


async def test_resume_mid_burst_is_exact(db: Database, server: WebServer, connect_feed: ConnectFeed) -> None:
    first = await connect_feed(server)
    await first.subscribe("trades")
    started, stop = asyncio.Event(), asyncio.Event()
    burst = asyncio.create_task(_burst(db, started, stop))
    async with asyncio.timeout(10):
        await started.wait()
    seen = [event["id"] for event in await first.events(300)]
    await first.ws.close()

    second = await connect_feed(server)
    reply = await second.subscribe("trades", after=seen[-1])
    assert reply["after"] == seen[-1]
    # The burst goes on while the second connection replays, so the switch to live happens mid-burst.
    seen += [event["id"] for event in await second.events(500)]
    assert not burst.done()
    stop.set()
    ids = await burst
    seen += [event["id"] for event in await second.events(len(ids) - len(seen))]
    assert seen == ids

    more = await append_events(db, 5)
    assert [event["id"] for event in await second.events(5)] == more


async def test_resume_with_topic_filter_replays_only_that_topic(
    db: Database, server: WebServer, connect_feed: ConnectFeed
) -> None:
    trades = await append_events(db, 20)
    await append_events(db, 20, topic="job", type_="job.run", wallet=None, market_id=None)
    feed = await connect_feed(server)
    await feed.subscribe("trades", after=trades[4])
    assert [event["id"] for event in await feed.events(15)] == trades[5:]
    await feed.send({"op": "ping"})
    await feed.expect("pong")


async def test_resume_from_zero_replays_every_event(db: Database, server: WebServer, connect_feed: ConnectFeed) -> None:
    ids = await append_events(db, 1200)
    feed = await connect_feed(server)
    await feed.subscribe("trades", after=0)
    assert [event["id"] for event in await feed.events(1200)] == ids


async def test_replay_longer_than_lag_limit_is_not_closed(
    db: Database, start_server: StartServer, connect_feed: ConnectFeed
) -> None:
    # The full replay that a reset frame suggests must work when more than max_lag_events are stored.
    stored = await append_events(db, 600)
    server = await start_server(send_queue_max=10, max_lag_events=50)
    feed = await connect_feed(server)
    await feed.subscribe("trades", after=0)
    assert [event["id"] for event in await feed.events(600)] == stored
    live = await append_events(db, 20)
    assert [event["id"] for event in await feed.events(20)] == live
    assert hub_of(server).stats().clients_closed_slow == 0


async def test_resumed_client_behind_new_events_is_closed(
    db: Database, start_server: StartServer, connect_feed: ConnectFeed
) -> None:
    # Events stored after the resume began count as lag, whether they arrive during the replay or after it.
    await append_events(db, 100)
    server = await start_server(send_queue_max=10, max_lag_events=50)
    feed = await connect_feed(server)
    await feed.send({"op": "subscribe", "topics": ["trades"], "after": 0})
    await append_events(db, 200, per_transaction=200)
    await feed.closed()
    assert feed.ws.close_code == 4001


async def test_resume_before_retention_gets_reset(db: Database, server: WebServer, connect_feed: ConnectFeed) -> None:
    ids = await append_events(db, 10)
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM events WHERE id <= ?", (ids[4],))
    feed = await connect_feed(server)
    await feed.send({"op": "subscribe", "topics": ["trades"], "after": ids[2], "ref": 1})
    reset = await feed.expect("reset")
    assert reset["reason"] == "expired"
    assert reset["after"] == ids[2]
    assert reset["oldest_id"] == ids[5]
    assert reset["resume_after"] == ids[-1]
    assert reset["ref"] == 1
    assert (await feed.expect("subscribed"))["after"] == ids[-1]
    live = await append_events(db, 2)
    assert [event["id"] for event in await feed.events(2)] == live
    assert hub_of(server).stats().resets == 1


async def test_resume_right_at_retention_edge_replays(
    db: Database, server: WebServer, connect_feed: ConnectFeed
) -> None:
    ids = await append_events(db, 10)
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM events WHERE id <= ?", (ids[4],))
    feed = await connect_feed(server)
    await feed.subscribe("trades", after=ids[4])
    assert [event["id"] for event in await feed.events(5)] == ids[5:]


async def test_resume_after_all_events_deleted_gets_reset(
    db: Database, server: WebServer, connect_feed: ConnectFeed
) -> None:
    ids = await append_events(db, 3)
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM events")
    feed = await connect_feed(server)
    await feed.send({"op": "subscribe", "topics": ["trades"], "after": ids[0]})
    reset = await feed.expect("reset")
    assert reset["reason"] == "expired"
    assert reset["oldest_id"] is None


async def test_resume_from_unknown_future_id_gets_reset(
    db: Database, server: WebServer, connect_feed: ConnectFeed
) -> None:
    ids = await append_events(db, 3)
    feed = await connect_feed(server)
    await feed.send({"op": "subscribe", "topics": ["trades"], "after": ids[-1] + 100})
    reset = await feed.expect("reset")
    assert reset["reason"] == "unknown_id"
    await feed.expect("subscribed")
