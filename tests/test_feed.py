"""The websocket feed's protocol: hello, subscriptions by topic, replies and errors."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.fixtures.web import WALLET_A, WALLET_B, ConnectFeed, StartServer, append_events, hub_of, wait_until
from whaled.store import Database
from whaled.web import WebServer
from whaled.web.feed_protocol import FeedProtocolError, parse_request, parse_topic


async def test_hello_reports_newest_event_and_limits(
    db: Database, start_server: StartServer, connect_feed: ConnectFeed
) -> None:
    ids = await append_events(db, 3)
    server = await start_server()
    feed = await connect_feed(server)
    assert feed.hello["protocol"] == 1
    assert feed.hello["last_id"] == ids[-1]
    assert feed.hello["send_queue_max"] == 1000
    assert feed.hello["max_topics"] == 64
    assert "whale-trades" in feed.hello["topics"]


async def test_subscribed_client_gets_new_events_with_ids(
    db: Database, server: WebServer, connect_feed: ConnectFeed
) -> None:
    feed = await connect_feed(server)
    reply = await feed.subscribe("trades")
    assert reply["topics"] == ["trades"]
    ids = await append_events(db, 3)
    events = await feed.events(3)
    assert [event["id"] for event in events] == ids
    assert events[0]["type"] == "trade.new"
    assert events[0]["wallet"] == WALLET_A
    assert events[0]["payload"] == {"seq": 0, "amount": "1234.5"}


async def _publish_one_of_each(db: Database) -> dict[str, int]:
    kinds = {
        "trade": ("trade", "trade.new", WALLET_A, 7),
        "whale": ("trade", "trade.whale", WALLET_A, 7),
        "other_wallet": ("trade", "trade.new", WALLET_B, 8),
        "market": ("market", "market.changed", None, 7),
        "wallet": ("wallet", "wallet.stats_changed", WALLET_A, None),
        "job": ("job", "job.run", None, None),
        "alert": ("alert", "alert.new", WALLET_B, 8),
    }
    ids = {}
    async with db.transaction() as tx:
        for name, (topic, type_, wallet, market_id) in kinds.items():
            ids[name] = await tx.append_event(topic, type_, {"name": name}, wallet=wallet, market_id=market_id)
    return ids


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("trades", ["trade", "other_wallet"]),
        ("whale-trades", ["whale"]),
        (f"wallet:{WALLET_A.upper().replace('0X', '0x')}", ["trade", "wallet"]),
        ("markets", ["market"]),
        ("market:7", ["trade", "market"]),
        ("wallets", ["wallet"]),
        ("jobs", ["job"]),
        ("alerts", ["alert"]),
    ],
)
async def test_topic_selects_its_events(
    db: Database, server: WebServer, connect_feed: ConnectFeed, topic: str, expected: list[str]
) -> None:
    feed = await connect_feed(server)
    await feed.subscribe(topic)
    ids = await _publish_one_of_each(db)
    names = {event_id: name for name, event_id in ids.items()}
    events = await feed.events(len(expected))
    assert [names[event["id"]] for event in events] == expected
    await feed.send({"op": "ping", "ref": "after"})
    assert (await feed.expect("pong"))["ref"] == "after", "an unexpected event arrived before the pong"


async def test_event_in_two_subscribed_topics_arrives_once(
    db: Database, server: WebServer, connect_feed: ConnectFeed
) -> None:
    feed = await connect_feed(server)
    await feed.subscribe("trades", f"wallet:{WALLET_A}", "market:7")
    ids = await append_events(db, 2)
    assert [event["id"] for event in await feed.events(2)] == ids
    await feed.send({"op": "ping"})
    pong = await feed.expect("pong")
    assert pong["last_id"] == ids[-1]


async def test_unsubscribe_stops_delivery(db: Database, server: WebServer, connect_feed: ConnectFeed) -> None:
    feed = await connect_feed(server)
    await feed.subscribe("trades", "jobs")
    await feed.send({"op": "unsubscribe", "topics": ["trades"], "ref": 5})
    reply = await feed.expect("unsubscribed")
    assert reply == {"op": "unsubscribed", "topics": ["jobs"], "ref": 5}
    await append_events(db, 2)
    job_ids = await append_events(db, 1, topic="job", type_="job.run", wallet=None, market_id=None)
    assert [event["id"] for event in await feed.events(1)] == job_ids


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_request"),
        ('{"op": "dance"}', "invalid_op"),
        ('{"op": "subscribe"}', "invalid_topics"),
        ('{"op": "subscribe", "topics": []}', "invalid_topics"),
        ('{"op": "subscribe", "topics": ["everything"]}', "invalid_topic"),
        ('{"op": "subscribe", "topics": ["wallet:0x12"]}', "invalid_topic"),
        ('{"op": "subscribe", "topics": ["market:0"]}', "invalid_topic"),
        ('{"op": "subscribe", "topics": ["trades"], "after": -1}', "invalid_after"),
        ('{"op": "subscribe", "topics": ["trades"], "after": "5"}', "invalid_after"),
        ('{"op": "ping", "ref": {"a": 1}}', "invalid_ref"),
    ],
)
async def test_invalid_request_gets_error_frame(
    server: WebServer, connect_feed: ConnectFeed, frame: str, code: str
) -> None:
    feed = await connect_feed(server)
    await feed.ws.send_str(frame)
    error = await feed.expect("error")
    assert error["code"] == code
    assert error["message"]
    await feed.send({"op": "ping"})
    await feed.expect("pong")


async def test_binary_frame_gets_error_frame(server: WebServer, connect_feed: ConnectFeed) -> None:
    feed = await connect_feed(server)
    await feed.ws.send_bytes(b'{"op": "ping"}')
    assert (await feed.expect("error"))["code"] == "binary_not_supported"


async def test_after_on_second_subscribe_is_rejected(server: WebServer, connect_feed: ConnectFeed) -> None:
    feed = await connect_feed(server)
    await feed.subscribe("trades")
    await feed.send({"op": "subscribe", "topics": ["jobs"], "after": 0, "ref": "r"})
    error = await feed.expect("error")
    assert error["code"] == "after_not_first"
    assert error["ref"] == "r"


async def test_topics_per_connection_are_capped(start_server: StartServer, connect_feed: ConnectFeed) -> None:
    server = await start_server(max_client_topics=3)
    feed = await connect_feed(server)
    assert (await feed.subscribe("trades", "alerts"))["topics"] == ["alerts", "trades"]
    await feed.send({"op": "subscribe", "topics": ["jobs", "markets"], "ref": 1})
    error = await feed.expect("error")
    assert error["code"] == "too_many_topics"
    assert error["ref"] == 1
    assert "at most 3 topics" in error["message"]
    # The rejected request changed nothing; topics already held and one new topic still fit.
    assert (await feed.subscribe("trades", "jobs"))["topics"] == ["alerts", "jobs", "trades"]
    (client,) = hub_of(server)._clients
    assert client.topics == {"alerts", "jobs", "trades"}


async def test_repeated_subscribe_replies_stay_bounded(start_server: StartServer, connect_feed: ConnectFeed) -> None:
    server = await start_server(max_client_topics=64)
    feed = await connect_feed(server)
    sizes = []
    for first in range(0, 4 * 256, 256):
        await feed.send({"op": "subscribe", "topics": [f"market:{first + n + 1}" for n in range(256)]})
        frame = await feed.receive()
        sizes.append(len(json.dumps(frame)))
        assert frame["op"] == "error"
    assert max(sizes) < 500, sizes
    for market_id in range(1, 65):
        reply = await feed.subscribe(f"market:{market_id}")
        assert len(reply["topics"]) == market_id
    await feed.send({"op": "subscribe", "topics": ["market:999"]})
    assert (await feed.expect("error"))["code"] == "too_many_topics"


def test_parse_topic_normalises_wallet_and_market() -> None:
    assert parse_topic("wallet:0x" + "AB" * 20) == "wallet:0x" + "ab" * 20
    assert parse_topic("market:42") == "market:42"
    with pytest.raises(FeedProtocolError, match="unknown topic"):
        parse_topic("market:-1")


def test_parse_request_rejects_too_many_topics() -> None:
    topics = ", ".join(f'"market:{n}"' for n in range(1, 300))
    with pytest.raises(FeedProtocolError, match="at most 256 topics"):
        parse_request(f'{{"op": "subscribe", "topics": [{topics}]}}')


async def test_server_close_sends_going_away(db: Database, server: WebServer, connect_feed: ConnectFeed) -> None:
    feed = await connect_feed(server)
    await feed.subscribe("trades")
    closing = asyncio.create_task(server.close())
    message = await feed.closed()
    await closing
    assert feed.ws.close_code == 1001, message
    assert hub_of(server).stats().clients == 0


async def test_client_close_gets_close_reply(db: Database, server: WebServer, connect_feed: ConnectFeed) -> None:
    feed = await connect_feed(server)
    await feed.subscribe("trades")
    await append_events(db, 3)
    async with asyncio.timeout(5):
        assert await feed.ws.close(code=1000, message=b"done") is True
    assert feed.ws.close_code == 1000
    hub = hub_of(server)
    await wait_until(lambda: hub.stats().clients == 0)
    assert hub.stats().clients_closed_slow == 0
