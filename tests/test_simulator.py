"""The Opinion simulator: payload shapes against the captured samples, the world's evolution, and faults.

Every check goes through a real server on 127.0.0.1, read either raw (to check the wire shapes) or with the
real ``OpinionClient`` (to check what the daemon receives, typed errors included).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fixtures.simulator import SIMULATOR_START_S
from whaled.opinion import (
    OpinionAPIError,
    OpinionClient,
    OpinionConnectionError,
    OpinionHTTPError,
    OpinionPayloadError,
    OpinionTimeoutError,
)
from whaled.opinion.models import Trade
from whaled.simulator import RunningSimulator, SimulatorError, SimulatorState, start_simulator
from whaled.simulator._render import TRADE_FIELDS

API_KEY = "simulator-test-key-0123456789"


def sample(name: str) -> dict[str, Any]:
    """Load a captured API sample from the shared folder beside the repository, or skip the test."""
    repository = Path(__file__).resolve().parents[1]
    for base in (repository.parent / "shared", Path("/work/shared")):
        path = base / "opinion" / "samples" / name
        if path.is_file():
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return data
    pytest.skip(f"captured sample {name} is not available")


def fixed_state(seed: int = 7) -> SimulatorState:
    return SimulatorState(seed, now=lambda: SIMULATOR_START_S)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_json(session: aiohttp.ClientSession, url: str, **params: Any) -> tuple[int, dict[str, Any]]:
    async with asyncio.timeout(5), session.get(url, params=params) as response:
        body: dict[str, Any] = await response.json(content_type=None)
        return response.status, body


def snapshot(state: SimulatorState) -> str:
    """Return every payload of the world as one JSON text."""
    world = {
        "markets": state.markets(),
        "trades": {wallet: state.trades(wallet) for wallet in state.wallets},
        "positions": {wallet: state.positions(wallet) for wallet in state.wallets},
        "leaderboard": state.leaderboard("profit", 7, 100),
    }
    return json.dumps(world, sort_keys=True)


# Shapes


async def test_market_list_matches_sample_shapes(simulator: RunningSimulator, http: aiohttp.ClientSession) -> None:
    captured = sample("market-list.json")
    by_type = {item["marketType"]: item for item in captured["result"]["list"]}
    captured_child = by_type[1]["childMarkets"][0]

    status, body = await get_json(http, f"{simulator.base_url}/market", marketType=2, limit=20)

    assert status == 200
    assert set(body) == set(captured)
    assert (body["errno"], body["errmsg"]) == (0, "")
    assert set(body["result"]) == set(captured["result"])
    items = body["result"]["list"]
    assert {item["marketType"] for item in items} == {0, 1}
    for item in items:
        reference = by_type[item["marketType"]]
        assert set(item) == set(reference), item["marketId"]
        assert {key: type(value) for key, value in item.items()} == {
            key: type(value) for key, value in reference.items()
        }
        for child in item["childMarkets"] or []:
            assert set(child) == set(captured_child)
            assert {key: type(value) for key, value in child.items()} == {
                key: type(value) for key, value in captured_child.items()
            }


async def test_market_values_use_api_units(simulator: RunningSimulator) -> None:
    for item in simulator.state.markets():
        assert item["chainId"] == "56"
        assert item["createdAt"] < 10**11, "createdAt is in seconds"
        assert len(item["volume"].split(".")[1]) == 18, "volume has 18 decimal places"
        if item["marketType"] == 0:
            assert item["childMarkets"] is None
            assert item["yesTokenId"].isdigit()
            assert len(item["yesTokenId"]) >= 70
            continue
        assert (item["yesTokenId"], item["noTokenId"], item["yesLabel"]) == ("", "", "")
        assert 2 <= len(item["childMarkets"]) <= 5
        for child in item["childMarkets"]:
            assert "marketType" not in child
            assert child["noTokenId"].isdigit()


async def test_token_endpoints_match_sample_shapes(simulator: RunningSimulator, http: aiohttp.ClientSession) -> None:
    token = next(m["yesTokenId"] for m in simulator.state.markets() if m["status"] == 2 and m["yesTokenId"])
    for path, name in (
        ("/token/latest-price", "latest-price.json"),
        ("/token/orderbook", "orderbook.json"),
        ("/token/price-history", "price-history.json"),
    ):
        captured = sample(name)["result"]
        status, body = await get_json(http, simulator.base_url + path, token_id=token, interval="1h")
        result = body["result"]
        assert status == 200, path
        assert set(result) == set(captured), path
        assert {key: type(value) for key, value in result.items()} == {
            key: type(value) for key, value in captured.items()
        }
    status, book = await get_json(http, simulator.base_url + "/token/orderbook", token_id=token)
    bids = [Decimal(level["price"]) for level in book["result"]["bids"]]
    asks = [Decimal(level["price"]) for level in book["result"]["asks"]]
    assert bids == sorted(bids, reverse=True)
    assert asks == sorted(asks)
    assert book["result"]["timestamp"] > 10**12, "orderbook timestamp is in milliseconds"
    status, history = await get_json(http, simulator.base_url + "/token/price-history", token_id=token, interval="1h")
    points = history["result"]["history"]
    assert points and all(point["t"] % 3600 == 0 and point["t"] < 10**11 for point in points)


async def test_trade_rows_have_api_fields(simulator: RunningSimulator, http: aiohttp.ClientSession) -> None:
    wallet = simulator.state.whale_wallets[0]

    status, body = await get_json(http, f"{simulator.base_url}/trade/user/{wallet}", limit=20)

    assert status == 200
    rows = body["result"]["list"]
    assert len(rows) == 20
    for row in rows:
        assert set(row) == TRADE_FIELDS
        assert row["txHash"].startswith("0x")
        assert len(row["txHash"]) == 66
        assert isinstance(row["createdAt"], int) and row["createdAt"] < 10**11
        assert row["side"] in ("Buy", "Sell")
        assert isinstance(row["price"], str) and isinstance(row["amount"], str)
        assert row["outcomeSideEnum"] == {1: "Yes", 2: "No"}[row["outcomeSide"]]
    times = [row["createdAt"] for row in rows]
    assert times == sorted(times, reverse=True)


def test_world_has_whales_multi_fill_and_resolved_markets() -> None:
    state = fixed_state()
    rows = [row for wallet in state.whale_wallets for row in state.trades(wallet)]
    hashes = [row["txHash"] for row in rows]

    assert len(state.whale_wallets) == 8
    assert all(wallet == wallet.lower() and len(wallet) == 42 for wallet in state.wallets)
    assert len(set(hashes)) < len(hashes), "some transactions hold several fills"
    assert sum(Decimal(row["amount"]) >= 5000 for row in rows) >= 50
    roots = state.markets()
    assert 8 <= len(roots) <= 12
    resolved = [m for m in roots if m["status"] == 4]
    assert resolved
    for market in resolved:
        assert market["resultTokenId"] in (market["yesTokenId"], market["noTokenId"])
        assert market["resolvedAt"] > 0
    categorical = [m for m in roots if m["marketType"] == 1 and all(c["status"] == 4 for c in m["childMarkets"])]
    assert len(categorical) == 1
    winners = [c for c in categorical[0]["childMarkets"] if c["resultTokenId"] == c["yesTokenId"]]
    assert len(winners) == 1


async def test_client_parses_every_endpoint(simulator: RunningSimulator, opinion_client: OpinionClient) -> None:
    state = simulator.state
    wallet = state.whale_wallets[1]

    active = await opinion_client.list_markets(1)
    resolved = await opinion_client.list_markets(1, status="resolved", sort_by=1)
    binary = next(m for m in active.items if m.market_type == 0)
    parent = next(m for m in active.items if m.market_type == 1)
    detail = await opinion_client.get_market(binary.market_id)
    categorical = await opinion_client.get_categorical_market(parent.market_id)
    assert categorical.child_markets
    child = await opinion_client.get_market(categorical.child_markets[0].market_id)
    assert binary.yes_token_id
    price = await opinion_client.latest_price(binary.yes_token_id)
    trades = await opinion_client.user_trades(wallet, 1)
    positions = await opinion_client.user_positions(wallet, 1)

    assert active.total == len(active.items)
    assert resolved.items
    assert all(m.winning_outcome in ("Yes", "No") for m in resolved.items if m.market_type == 0)
    assert detail.market_id == binary.market_id
    assert detail.child_markets is None
    assert child.market_type == 0
    assert child.yes_token_id
    assert price.token_id == binary.yes_token_id
    assert price.timestamp is not None
    assert trades.total == len(state.trades(wallet))
    assert trades.items[0].notional_usd == Decimal(state.trades(wallet)[0]["amount"])
    assert positions.items and all(p.token_id for p in positions.items)
    shares = [p.shares_owned for p in positions.items]
    assert shares == sorted(shares, reverse=True)
    for data_type in ("volume", "profit", "points"):
        for period in (0, 1, 7, 30):
            entries = await opinion_client.leaderboard(data_type, period, limit=5)
            expected = 0 if data_type == "points" and period in (1, 30) else 5
            assert len(entries) == expected, (data_type, period)
    top = await opinion_client.leaderboard("volume", 30, limit=100)
    values = [entry.ranking_value or Decimal(0) for entry in top]
    assert values == sorted(values, reverse=True)
    assert {entry.wallet_address for entry in top[:8]} == set(state.whale_wallets)


# Determinism and evolution


def test_same_seed_and_steps_give_same_json() -> None:
    first, second = fixed_state(), fixed_state()
    for state in (first, second):
        state.advance(90)
        state.add_trade(state.whale_wallets[2], amount="7500")
        state.advance(1_800.5)
        market = next(m for m in state.markets() if m["status"] == 2 and m["marketType"] == 0)
        state.resolve_market(market["marketId"], "yes")
        state.advance(600)

    assert snapshot(first) == snapshot(second)
    assert snapshot(first) != snapshot(fixed_state(seed=8))


def test_advance_adds_whale_trades_and_moves_prices() -> None:
    state = fixed_state()
    before = {wallet: len(state.trades(wallet)) for wallet in state.whale_wallets}
    tokens = [m["yesTokenId"] for m in state.markets() if m["status"] == 2 and m["yesTokenId"]]
    prices = {token: state.latest_price(token) for token in tokens}

    for _ in range(300):
        state.advance(2)

    new_rows = [
        row
        for wallet in state.whale_wallets
        for row in state.trades(wallet)[: len(state.trades(wallet)) - before[wallet]]
    ]
    assert state.now_s == SIMULATOR_START_S + 600
    assert 10 <= len({row["txHash"] for row in new_rows}) <= 120
    assert any(Decimal(row["amount"]) >= 5000 for row in new_rows)
    assert all(row["createdAt"] > SIMULATOR_START_S for row in new_rows)
    moved = [token for token, price in prices.items() if state.latest_price(token) != price]
    assert moved


def test_advance_rejects_negative_time() -> None:
    with pytest.raises(SimulatorError, match="cannot advance"):
        fixed_state().advance(-1)


def test_long_advance_creates_and_resolves_markets() -> None:
    state = fixed_state()
    ids = {m["marketId"] for m in state.markets()}
    resolved = {m["marketId"] for m in state.markets() if m["status"] == 4}

    state.advance(6 * 3600)

    markets = state.markets()
    assert {m["marketId"] for m in markets} - ids
    assert {m["marketId"] for m in markets if m["status"] == 4} - resolved


# Helpers


def test_add_trade_applies_overrides_and_order() -> None:
    state = fixed_state()
    wallet = state.whale_wallets[0]
    market = next(m for m in state.markets() if m["status"] == 2 and m["marketType"] == 0)

    row = state.add_trade(wallet, marketId=market["marketId"], amount="5000", side="Buy", outcomeSide=2)
    same_tx = state.add_trade(wallet, txHash=row["txHash"], shares=Decimal("12.5"), price="0.41")
    older = state.add_trade(wallet, createdAt=state.now_s - 10 * 86_400, amount=9000)

    rows = state.trades(wallet)
    assert row["amount"] == "5000"
    assert row["outcome"] == "No"
    assert row["marketId"] == market["marketId"]
    assert same_tx["txHash"] == row["txHash"]
    assert same_tx["shares"] == "12.5"
    assert rows[:2] == [same_tx, row]
    assert rows.index(older) > 2
    assert [r["createdAt"] for r in rows] == sorted((r["createdAt"] for r in rows), reverse=True)
    with pytest.raises(SimulatorError, match="unknown trade fields"):
        state.add_trade(wallet, tradeNo="x")


def test_add_trade_registers_new_wallet() -> None:
    state = fixed_state()
    wallet = "0x" + "AB" * 20

    state.add_trade(wallet)

    assert wallet.lower() in state.wallets
    assert len(state.trades(wallet)) == 1
    assert state.positions(wallet)[0]["outcomeSide"] == 1
    with pytest.raises(SimulatorError, match="40 hex digits"):
        state.add_trade("0x1234")


def test_add_and_resolve_markets() -> None:
    state = fixed_state()

    binary = state.add_market("Will the test pass?", yes_price="0.3")
    categorical = state.add_market("Which colour?", options=["Red", "Green", "Blue"])
    resolved_binary = state.resolve_market(binary["marketId"], 2)
    resolved_parent = state.resolve_market(categorical["marketId"], "Green")

    assert binary["childMarkets"] is None
    assert binary["marketType"] == 0
    assert [c["marketTitle"] for c in categorical["childMarkets"]] == ["Red", "Green", "Blue"]
    assert resolved_binary["status"] == 4
    assert resolved_binary["resultTokenId"] == binary["noTokenId"]
    winners = {c["marketTitle"]: c["resultTokenId"] == c["yesTokenId"] for c in resolved_parent["childMarkets"]}
    assert winners == {"Red": False, "Green": True, "Blue": False}
    assert all(c["status"] == 4 for c in resolved_parent["childMarkets"])
    with pytest.raises(SimulatorError, match="already resolved"):
        state.resolve_market(binary["marketId"], 1)
    with pytest.raises(SimulatorError, match="not an option"):
        state.resolve_market(state.add_market(options=["A", "B"])["marketId"], "C")
    with pytest.raises(SimulatorError, match="no market"):
        state.resolve_market(999_999, 1)


async def test_resolution_reaches_client(simulator: RunningSimulator, opinion_client: OpinionClient) -> None:
    state = simulator.state
    market = next(m for m in state.markets() if m["status"] == 2 and m["marketType"] == 0)

    state.resolve_market(market["marketId"], "yes")
    detail = await opinion_client.get_market(market["marketId"])

    assert detail.status == 4
    assert detail.winning_outcome == "Yes"
    assert detail.resolved_at == state.now_s * 1000


# Pagination and parameters


async def test_pagination_gives_total_and_short_last_page(
    simulator: RunningSimulator, opinion_client: OpinionClient
) -> None:
    wallet = simulator.state.whale_wallets[3]
    expected = simulator.state.trades(wallet)
    pages = []
    for number in range(1, 20):
        page = await opinion_client.user_trades(wallet, number)
        pages.append(page)
        if len(page.items) < 20:
            break

    assert len(expected) % 20 != 0, "the seed gives a short last page"
    assert all(page.total == len(expected) for page in pages)
    assert [len(page.items) for page in pages[:-1]] == [20] * (len(pages) - 1)
    assert len(pages[-1].items) == len(expected) % 20
    assert [trade.tx_hash for page in pages for trade in page.items] == [row["txHash"] for row in expected]


async def test_market_pages_split_by_limit(simulator: RunningSimulator) -> None:
    client = OpinionClient(simulator.base_url, page_limit=3)
    try:
        first = await client.list_markets(1, status="activated")
        last_number = -(-(first.total or 0) // 3)
        last = await client.list_markets(last_number, status="activated")
        beyond = await client.list_markets(last_number + 1, status="activated")
    finally:
        await client.close()

    assert first.total == sum(1 for m in simulator.state.markets() if m["status"] in (1, 2) and _active(m))
    assert len(first.items) == 3
    assert 1 <= len(last.items) <= 3
    assert beyond.items == []
    assert beyond.total == first.total


def _active(market: dict[str, Any]) -> bool:
    if market["marketType"] == 0:
        return bool(market["status"] == 2)
    return any(child["status"] == 2 for child in market["childMarkets"])


async def test_limit_above_twenty_is_rejected(simulator: RunningSimulator) -> None:
    client = OpinionClient(simulator.base_url, page_limit=21)
    try:
        with pytest.raises(OpinionHTTPError) as caught:
            await client.list_markets(1)
    finally:
        await client.close()

    assert caught.value.status == 400
    assert caught.value.code == 400
    assert "limit" in caught.value.message
    assert not caught.value.transient


async def test_bad_parameters_and_unknown_paths(simulator: RunningSimulator, http: aiohttp.ClientSession) -> None:
    base = simulator.base_url
    cases: list[tuple[str, dict[str, Any], int]] = [
        (f"{base}/nowhere", {}, 404),
        (f"{base}/market", {"status": "open"}, 400),
        (f"{base}/market", {"page": 0}, 400),
        (f"{base}/market/12345678", {}, 404),
        (f"{base}/market/categorical/{simulator.state.markets()[0]['marketId']}", {}, 404),
        (f"{base}/trade/user/not-a-wallet", {}, 400),
        (f"{base}/token/latest-price", {}, 400),
        (f"{base}/token/latest-price", {"token_id": "123"}, 404),
        (f"{simulator.leaderboard_url}/v2/leaderboard", {"dataType": "likes"}, 400),
        (f"{simulator.leaderboard_url}/v2/leaderboard", {"period": 3}, 400),
    ]
    for url, params, expected in cases:
        status, body = await get_json(http, url, **params)
        assert status == expected, url
        assert body["errno"] == expected, url
        assert body["errmsg"], url
        assert body["result"] is None, url


async def test_other_chain_returns_empty_list(simulator: RunningSimulator, http: aiohttp.ClientSession) -> None:
    status, body = await get_json(http, f"{simulator.base_url}/market", chainId="8453")

    assert status == 200
    assert body["result"] == {"total": 0, "list": []}


async def test_api_key_guards_wallet_endpoints() -> None:
    wallet_path = "/trade/user"
    async with await start_simulator(evolve_every_s=None, api_key=API_KEY, state=fixed_state()) as simulator:
        wallet = simulator.state.whale_wallets[0]
        anonymous = OpinionClient(simulator.base_url)
        keyed = OpinionClient(simulator.base_url, api_key=API_KEY)
        wrong = OpinionClient(simulator.base_url, api_key="wrong-key")
        try:
            markets = await anonymous.list_markets(1)
            trades = await keyed.user_trades(wallet, 1)
            with pytest.raises(OpinionHTTPError) as missing:
                await anonymous.user_trades(wallet, 1)
            with pytest.raises(OpinionHTTPError) as invalid:
                await wrong.list_markets(1)
            with pytest.raises(OpinionHTTPError):
                await anonymous.user_positions(wallet, 1)
        finally:
            for client in (anonymous, keyed, wrong):
                await client.close()
        log = repr(simulator.faults.requests)

    assert markets.items and trades.items
    assert (missing.value.status, missing.value.code, missing.value.message) == (401, 11002, "invalid API key")
    assert (invalid.value.status, invalid.value.code) == (401, 11002)
    assert simulator.faults.count(wallet_path) == 2
    assert API_KEY not in log
    assert "wrong-key" not in log


# Faults


async def test_latency_delays_only_matching_requests(
    simulator: RunningSimulator, opinion_client: OpinionClient
) -> None:
    fault = simulator.faults.add_latency(0.08, path="/market", count=1)
    wallet = simulator.state.whale_wallets[0]

    started = time.monotonic()
    await opinion_client.user_trades(wallet, 1)
    unmatched = time.monotonic() - started
    started = time.monotonic()
    await opinion_client.list_markets(1)
    delayed = time.monotonic() - started

    assert delayed >= 0.08
    assert unmatched < 0.08
    assert (fault.hits, fault.remaining) == (1, 0)


async def test_rate_limit_with_seconds_then_recovers(
    simulator: RunningSimulator, opinion_client: OpinionClient
) -> None:
    simulator.faults.rate_limit(retry_after=2, count=1)

    with pytest.raises(OpinionHTTPError) as caught:
        await opinion_client.list_markets(1)
    page = await opinion_client.list_markets(1)

    assert caught.value.status == 429
    assert caught.value.retry_after == "2"
    assert caught.value.transient
    assert page.items
    assert [record.status for record in simulator.faults.requests] == [429, 200]


async def test_rate_limit_with_http_date(simulator: RunningSimulator, opinion_client: OpinionClient) -> None:
    until = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC) + timedelta(seconds=1)
    simulator.faults.rate_limit(retry_after=until, path="/v2/leaderboard")

    with pytest.raises(OpinionHTTPError) as caught:
        await opinion_client.leaderboard("volume", 1)

    assert caught.value.retry_after is not None
    assert parsedate_to_datetime(caught.value.retry_after) == until
    with pytest.raises(SimulatorError, match="aware datetime"):
        simulator.faults.rate_limit(retry_after=datetime(2030, 1, 1))


async def test_server_error_is_transient(simulator: RunningSimulator, opinion_client: OpinionClient) -> None:
    simulator.faults.server_error(502, count=2)

    for _ in range(2):
        with pytest.raises(OpinionHTTPError) as caught:
            await opinion_client.list_markets(1)
        assert caught.value.status == 502
        assert caught.value.transient
    assert (await opinion_client.list_markets(1)).items


async def test_malformed_json_raises_payload_error(simulator: RunningSimulator, opinion_client: OpinionClient) -> None:
    simulator.faults.malformed_json(path="/market", count=1)

    with pytest.raises(OpinionPayloadError, match="not valid JSON"):
        await opinion_client.list_markets(1)


async def test_api_error_with_http_200(simulator: RunningSimulator, opinion_client: OpinionClient) -> None:
    simulator.faults.api_error(10403, "restricted jurisdiction", count=1)
    simulator.faults.api_error(count=1)

    with pytest.raises(OpinionAPIError) as restricted:
        await opinion_client.list_markets(1)
    with pytest.raises(OpinionAPIError) as internal:
        await opinion_client.list_markets(1)

    assert (restricted.value.status, restricted.value.code) == (200, 10403)
    assert restricted.value.message == "restricted jurisdiction"
    assert not restricted.value.transient
    assert internal.value.code == 500
    assert internal.value.transient


async def test_code_msg_envelope_parses(
    simulator: RunningSimulator, opinion_client: OpinionClient, http: aiohttp.ClientSession
) -> None:
    simulator.faults.code_msg_envelope()

    status, raw = await get_json(http, f"{simulator.base_url}/market")
    page = await opinion_client.list_markets(1)
    simulator.faults.api_error(10014, "trading not enabled", count=1)
    with pytest.raises(OpinionAPIError) as caught:
        await opinion_client.list_markets(1)

    assert status == 200
    assert set(raw) == {"code", "msg", "result"}
    assert raw["code"] == 0
    assert page.items
    assert caught.value.code == 10014


async def test_hang_times_out_and_close_completes() -> None:
    simulator = await start_simulator(evolve_every_s=None, state=fixed_state())
    client = OpinionClient(simulator.base_url, read_timeout_s=0.1, total_timeout_s=1.0, connect_timeout_s=0.5)
    try:
        simulator.faults.hang(path="/market", count=1)
        with pytest.raises(OpinionTimeoutError):
            await client.list_markets(1)
        simulator.faults.hang(path="/market")
        waiting = asyncio.create_task(client.list_markets(1))
        async with asyncio.timeout(2):
            await simulator.faults.wait_for_requests(2, "/market")
    finally:
        async with asyncio.timeout(3):
            await simulator.close()
    try:
        with pytest.raises((OpinionConnectionError, OpinionTimeoutError)):
            async with asyncio.timeout(3):
                await waiting
    finally:
        await client.close()

    assert [record.status for record in simulator.faults.requests] == [None, None]


async def test_drop_connection_fails_next_request_on_it(
    simulator: RunningSimulator, opinion_client: OpinionClient
) -> None:
    simulator.faults.drop_connection(path="/market", count=1)

    await opinion_client.list_markets(1)
    # aiohttp resends the dropped GET once on a new connection, so the call itself succeeds.
    await opinion_client.list_markets(1)

    assert [record.status for record in simulator.faults.requests] == [200, None, 200]


async def test_disconnect_raises_connection_error(simulator: RunningSimulator, opinion_client: OpinionClient) -> None:
    simulator.faults.disconnect(path="/trade/user", count=2)

    with pytest.raises(OpinionConnectionError, match="disconnected"):
        await opinion_client.user_trades(simulator.state.whale_wallets[0], 1)
    page = await opinion_client.user_trades(simulator.state.whale_wallets[0], 1)

    assert page.items
    assert [record.status for record in simulator.faults.requests] == [None, None, 200]


async def test_shift_pages_repeats_rows_on_next_page(
    simulator: RunningSimulator, opinion_client: OpinionClient
) -> None:
    wallet = simulator.state.whale_wallets[4]
    total = len(simulator.state.trades(wallet))
    fault = simulator.faults.shift_pages(3, count=1)

    first = await opinion_client.user_trades(wallet, 1)
    second = await opinion_client.user_trades(wallet, 2)

    assert fault.hits == 1
    assert second.total == total + 3
    assert [t.key for t in second.items[:3]] == [t.key for t in first.items[-3:]]
    assert len(simulator.state.trades(wallet)) == total + 3


async def test_repeat_first_page_serves_page_one(simulator: RunningSimulator, opinion_client: OpinionClient) -> None:
    wallet = simulator.state.whale_wallets[5]
    fault = simulator.faults.repeat_first_page(path="/trade/user", count=1)

    first = await opinion_client.user_trades(wallet, 1)
    repeated = await opinion_client.user_trades(wallet, 2)
    second = await opinion_client.user_trades(wallet, 2)

    assert repeated.items == first.items
    assert second.items != first.items
    assert second.items[0] == trade_at(simulator, wallet, 20)
    assert fault.hits == 1
    assert [r.query["page"] for r in simulator.faults.requests] == ["1", "2", "2"]


def trade_at(simulator: RunningSimulator, wallet: str, index: int) -> Trade:
    return Trade.model_validate(simulator.state.trades(wallet)[index])


async def test_faults_stay_on_their_path(simulator: RunningSimulator, opinion_client: OpinionClient) -> None:
    fault = simulator.faults.server_error(path="/positions/user")

    page = await opinion_client.list_markets(1)
    with pytest.raises(OpinionHTTPError):
        await opinion_client.user_positions(simulator.state.whale_wallets[0], 1)
    simulator.faults.clear()
    positions = await opinion_client.user_positions(simulator.state.whale_wallets[0], 1)

    assert page.items and positions.items
    assert fault.hits == 1


async def test_fault_arguments_are_checked(simulator: RunningSimulator) -> None:
    faults = simulator.faults
    with pytest.raises(SimulatorError, match="500 to 599"):
        faults.server_error(404)
    with pytest.raises(SimulatorError, match="non-zero errno"):
        faults.api_error(0)
    with pytest.raises(SimulatorError, match="count must be at least 1"):
        faults.hang(count=0)
    with pytest.raises(SimulatorError, match="at least 0 s"):
        faults.add_latency(-1)


async def test_request_log_counts_and_rates(simulator: RunningSimulator, opinion_client: OpinionClient) -> None:
    for page in (1, 2, 3):
        await opinion_client.list_markets(page)
    await opinion_client.leaderboard("profit", 7)

    faults = simulator.faults
    assert faults.count() == 4
    assert faults.count("/market") == 3
    assert faults.count("/api/bsc/api/v2/leaderboard") == 1
    assert [r.query["page"] for r in faults.matching("/market")] == ["1", "2", "3"]
    assert all(r.status == 200 for r in faults.requests)
    assert faults.rate_per_s("/market") > 0
    assert faults.rate_per_s("/v2/leaderboard") == 0.0
    faults.clear_log()
    assert faults.count() == 0


# Server lifecycle


class SignallingState(SimulatorState):
    """A world that sets ``advanced`` after each step, so that a test can wait for the evolve task."""

    def __init__(self, seed: int, *, now: Callable[[], float]) -> None:
        super().__init__(seed, now=now)
        self.advanced = asyncio.Event()

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        self.advanced.set()


async def test_evolve_task_advances_and_stops() -> None:
    state = SignallingState(7, now=lambda: SIMULATOR_START_S)
    simulator = await start_simulator(evolve_every_s=0.01, state=state)
    try:
        async with asyncio.timeout(2):
            await state.advanced.wait()
        assert state.clock_s > SIMULATOR_START_S
        names = {task.get_name() for task in asyncio.all_tasks()}
        assert f"whaled-simulator-evolve-{simulator.port}" in names
    finally:
        await simulator.close()

    names = {task.get_name() for task in asyncio.all_tasks()}
    assert f"whaled-simulator-evolve-{simulator.port}" not in names
    assert simulator.base_url == f"http://127.0.0.1:{simulator.port}/openapi"
    assert simulator.leaderboard_url == f"http://127.0.0.1:{simulator.port}/api/bsc/api"


async def test_start_rejects_bad_evolve_interval() -> None:
    with pytest.raises(SimulatorError, match="evolve_every_s"):
        await start_simulator(evolve_every_s=0)
