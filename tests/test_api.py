"""The JSON API: filters, sorting, pagination, errors and the OpenAPI document it is checked against."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.fixtures.web import WALLET_A, WALLET_B, append_events
from whaled.store import Database
from whaled.web import WebServer
from whaled.web.api_queries import DECIMAL_COLUMNS

WALLET_C = "0x" + "c3" * 20


async def _seed(db: Database) -> None:
    markets = [
        (1, "Will BTC reach 100k?", 2, "Activated", "900.5", "0.61", 1000),
        (2, "Will ETH flip BTC?", 2, "Activated", "12000", "0.05", 2000),
        (3, "Election 100% sure_thing", 4, "Resolved", "450", "1", 3000),
    ]
    trades = [
        (WALLET_A, "0x01", 1, "0.61", "6100.25", 1, 1_000),
        (WALLET_A, "0x02", 2, "0.05", "50", 0, 2_000),
        (WALLET_B, "0x03", 1, "0.60", "9000", 1, 2_000),
        (WALLET_B, "0x04", 2, "0.06", "10", 0, 3_000),
        (WALLET_A, "0x05", 1, "0.62", "7000", 1, 4_000),
    ]
    async with db.transaction() as tx:
        for market_id, title, status, status_name, volume, price, updated in markets:
            await tx.execute(
                "INSERT INTO markets (market_id, root_market_id, is_root, title, root_title, status, status_name, "
                "volume, yes_price, first_seen_ms, updated_ms) VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, 0, ?)",
                (market_id, market_id, title, title, status, status_name, volume, price, updated),
            )
        for taken_ms, price in ((100, "0.5"), (200, "0.55"), (300, "0.61")):
            await tx.execute(
                "INSERT INTO market_snapshots (market_id, taken_ms, volume, yes_price) VALUES (1, ?, '900', ?)",
                (taken_ms, price),
            )
        for address, label, is_whale in ((WALLET_A, "alpha", 1), (WALLET_B, "beta", 0), (WALLET_C, "", 0)):
            await tx.execute(
                "INSERT INTO wallets (address, label, source, added_ms, is_whale) VALUES (?, ?, 'config', 0, ?)",
                (address, label, is_whale),
            )
        for address, volume, micro, pnl in (
            (WALLET_A, "13150.25", 13_150_250_000, "-5.5"),
            (WALLET_B, "9010", 9_010_000_000, "120.75"),
        ):
            await tx.execute(
                "INSERT INTO wallet_stats (wallet, computed_ms, trade_count, volume_24h, volume_7d, volume_30d, "
                "volume_30d_micro, markets_traded, realized_pnl, wins, losses, win_rate, open_positions, open_value, "
                "unrealized_pnl, is_whale, rank) VALUES (?, 5, 3, ?, ?, ?, ?, 2, ?, 1, 1, '0.5', 1, '10', '0', 0, NULL)",
                (address, volume, volume, volume, micro, pnl),
            )
        for wallet, tx_hash, market_id, price, notional, is_whale, created in trades:
            await tx.execute(
                "INSERT INTO trades (wallet, tx_hash, market_id, root_market_id, market_title, root_market_title, "
                "side, outcome, outcome_side, price, shares, amount, fee, profit, quote_token, quote_token_usd_price, "
                "notional_usd, notional_micro, is_whale, status, chain_id, created_at_ms, stored_ms) "
                "VALUES (?, ?, ?, ?, 't', 't', 'buy', 'YES', 1, ?, '10', ?, '0', '0', 'USDT', '1', ?, 0, ?, 2, '56', ?, 0)",
                (wallet, tx_hash, market_id, market_id, price, notional, notional, is_whale, created),
            )
        await tx.execute(
            "INSERT INTO positions (wallet, market_id, outcome_side, root_market_id, market_title, root_market_title, "
            "outcome, token_id, market_status, shares_owned, shares_frozen, avg_entry_price, current_value, "
            "unrealized_pnl, claim_status, updated_ms) VALUES (?, 1, 1, 1, 't', 't', 'YES', 'tok', 2, '100.000001', "
            "'0', '0.61', '61', '0.5', 0, 9)",
            (WALLET_A,),
        )
        for job, outcome in (
            ("sync-markets", "success"),
            ("sync-whale-trades", "failure"),
            ("sync-markets", "success"),
        ):
            await tx.execute(
                "INSERT INTO job_runs (job, trigger, started_ms, finished_ms, outcome, details) "
                "VALUES (?, 'interval', 1, 2, ?, '{\"pages\": 2}')",
                (job, outcome),
            )


@pytest.fixture
async def seeded(db: Database, server: WebServer) -> WebServer:
    await _seed(db)
    return server


@pytest.fixture
async def document(server: WebServer, http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(f"{server.url}/api/v1/openapi.json") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
    return body


class Api:
    """Calls the API and checks every 200 body against the response schema of the OpenAPI document."""

    def __init__(self, server: WebServer, http: aiohttp.ClientSession, document: dict[str, Any]) -> None:
        self.server = server
        self.http = http
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource("urn:whaled", resource)

    async def get(self, path: str, expect: int = 200, **params: Any) -> dict[str, Any]:
        async with self.http.get(f"{self.server.url}/api/v1{path}", params=params) as response:
            body: dict[str, Any] = await response.json()
            assert response.status == expect, body
        if expect == 200:
            self._validate(path, body)
        return body

    def _validate(self, path: str, body: dict[str, Any]) -> None:
        template = next(name for name in self.document["paths"] if _matches(name, path.split("?")[0]))
        schema = self.document["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        OAS31Validator({"$ref": "urn:whaled" + schema["$ref"]}, registry=self.registry).validate(body)


def _matches(template: str, path: str) -> bool:
    template_parts, path_parts = template.split("/"), path.split("/")
    return len(template_parts) == len(path_parts) and all(
        t == p or t.startswith("{") for t, p in zip(template_parts, path_parts, strict=True)
    )


@pytest.fixture
def api(server: WebServer, http: aiohttp.ClientSession, document: dict[str, Any]) -> Api:
    return Api(server, http, document)


def test_openapi_document_is_valid(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_openapi_lists_every_api_route(server: WebServer, document: dict[str, Any]) -> None:
    routes = {
        resource.canonical.removeprefix("/api/v1")
        for resource in server.app.router.resources()
        if resource.canonical.startswith("/api/v1/") and not resource.canonical.startswith("/api/v1/dashboard/")
    }
    assert routes == set(document["paths"])


async def test_markets_filter_sort_and_search(seeded: WebServer, api: Api) -> None:
    body = await api.get("/markets")
    assert [market["market_id"] for market in body["markets"]] == [2, 1, 3]
    assert body["markets"][0]["volume"] == "12000"
    assert body["markets"][0]["is_root"] is True
    assert body["total"] == 3
    active = await api.get("/markets", status="activated", sort="price", order="asc")
    assert [market["market_id"] for market in active["markets"]] == [2, 1]
    assert (await api.get("/markets", status="4"))["total"] == 1
    found = await api.get("/markets", search="100%")
    assert [market["market_id"] for market in found["markets"]] == [3]
    assert (await api.get("/markets", search="btc"))["total"] == 2
    paged = await api.get("/markets", limit="1", offset="1")
    assert [market["market_id"] for market in paged["markets"]] == [1]


async def test_market_detail_has_price_history(seeded: WebServer, api: Api) -> None:
    body = await api.get("/markets/1")
    assert body["market"]["title"] == "Will BTC reach 100k?"
    assert [point["yes_price"] for point in body["history"]] == ["0.5", "0.55", "0.61"]
    recent = await api.get("/markets/1", since="150", limit="1")
    assert [point["taken_ms"] for point in recent["history"]] == [300]


async def test_unknown_market_is_404(seeded: WebServer, api: Api) -> None:
    body = await api.get("/markets/99", expect=404)
    assert body["error"] == {"message": "market 99 not found", "parameter": "market_id"}


async def test_wallet_leaderboard(seeded: WebServer, api: Api) -> None:
    body = await api.get("/wallets")
    assert [wallet["address"] for wallet in body["wallets"]] == [WALLET_A, WALLET_B, WALLET_C]
    assert body["wallets"][0]["stats"]["volume_30d"] == "13150.25"
    assert "volume_30d_micro" not in body["wallets"][0]["stats"]
    assert body["wallets"][2]["stats"] is None
    by_pnl = await api.get("/wallets", sort="realized_pnl")
    assert by_pnl["wallets"][0]["address"] == WALLET_B
    whales = await api.get("/wallets", whales="true")
    assert [wallet["address"] for wallet in whales["wallets"]] == [WALLET_A]


async def test_wallet_detail(seeded: WebServer, api: Api) -> None:
    body = await api.get(f"/wallets/{WALLET_A.upper().replace('0X', '0x')}", trades_limit="2")
    wallet = body["wallet"]
    assert wallet["label"] == "alpha"
    assert wallet["is_whale"] is True
    assert [trade["tx_hash"] for trade in wallet["recent_trades"]] == ["0x05", "0x02"]
    assert wallet["positions"][0]["shares_owned"] == "100.000001"
    assert (await api.get(f"/wallets/{WALLET_C}"))["wallet"]["stats"] is None
    missing = await api.get("/wallets/0x" + "d4" * 20, expect=404)
    assert missing["error"]["parameter"] == "address"


async def test_trades_cursor_pagination_visits_each_trade_once(seeded: WebServer, api: Api) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = await api.get("/trades", **params)
        seen += [trade["tx_hash"] for trade in page["trades"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["0x05", "0x04", "0x03", "0x02", "0x01"]


async def test_trades_filters(seeded: WebServer, api: Api) -> None:
    whale = await api.get("/trades", whale="true")
    assert [trade["tx_hash"] for trade in whale["trades"]] == ["0x05", "0x03", "0x01"]
    assert whale["trades"][0]["notional_usd"] == "7000"
    assert "notional_micro" not in whale["trades"][0]
    by_wallet = await api.get("/trades", wallet=WALLET_B, market="2")
    assert [trade["tx_hash"] for trade in by_wallet["trades"]] == ["0x04"]
    since = await api.get("/trades", since="2000", until="4000")
    assert [trade["tx_hash"] for trade in since["trades"]] == ["0x04", "0x03", "0x02"]


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/trades", {"limit": "0"}, "limit"),
        ("/trades", {"limit": "ten"}, "limit"),
        ("/trades", {"wallet": "0x12"}, "wallet"),
        ("/trades", {"whale": "maybe"}, "whale"),
        ("/trades", {"cursor": "bm9wZQ"}, "cursor"),
        ("/trades", {"since": "-1"}, "since"),
        ("/trades", {"satus": "x"}, "satus"),
        ("/markets", {"status": "open"}, "status"),
        ("/markets", {"sort": "colour"}, "sort"),
        ("/markets", {"search": "x" * 201}, "search"),
        ("/markets/abc", {}, "market_id"),
        ("/wallets", {"sort": "luck"}, "sort"),
        ("/wallets/0xnothex", {}, "address"),
        ("/events", {"after": "x"}, "after"),
        ("/job-runs", {"cursor": "!!"}, "cursor"),
    ],
)
async def test_invalid_parameter_names_itself(api: Api, path: str, params: dict[str, str], parameter: str) -> None:
    body = await api.get(path, expect=400, **params)
    assert body["error"]["parameter"] == parameter
    assert body["error"]["message"]


async def test_unknown_api_path_is_json_404(api: Api) -> None:
    body = await api.get("/nothing", expect=404)
    assert body["error"]["message"].startswith("Not Found")


async def test_job_runs_filter_by_job(seeded: WebServer, api: Api) -> None:
    body = await api.get("/job-runs", job="sync-markets")
    assert [run["job"] for run in body["job_runs"]] == ["sync-markets", "sync-markets"]
    assert body["job_runs"][0]["details"] == {"pages": 2}
    first = await api.get("/job-runs", limit="1")
    second = await api.get("/job-runs", limit="1", cursor=first["next_cursor"])
    assert second["job_runs"][0]["id"] == first["job_runs"][0]["id"] - 1


async def test_alerts_read_the_alerts_table(db: Database, api: Api) -> None:
    assert await api.get("/alerts") == {"alerts": [], "next_cursor": None}
    async with db.transaction() as tx:
        for n in range(3):
            await tx.execute(
                "INSERT INTO alerts (rule, kind, dedupe_key, wallet, source_event_id, title, payload, created_ms) "
                "VALUES ('whale-trade', 'new', ?, ?, 1, 'Whale bought', ?, 5)",
                (f"k{n}", WALLET_A if n else WALLET_B, json.dumps({"amount": "5000.5"})),
            )
    body = await api.get("/alerts", wallet=WALLET_A)
    assert len(body["alerts"]) == 2
    assert body["alerts"][0]["payload"] == {"amount": "5000.5"}
    page = await api.get("/alerts", limit="2")
    rest = await api.get("/alerts", limit="2", cursor=page["next_cursor"])
    assert [alert["wallet"] for alert in rest["alerts"]] == [WALLET_B]


async def test_alerts_empty_without_alerts_table(db: Database, api: Api) -> None:
    async with db.transaction() as tx:
        await tx.execute("DROP TABLE IF EXISTS outbox")
        await tx.execute("DROP TABLE IF EXISTS alerts")
    assert await api.get("/alerts") == {"alerts": [], "next_cursor": None}


async def test_events_after_id(db: Database, api: Api) -> None:
    ids = await append_events(db, 5)
    await append_events(db, 2, topic="job", type_="job.run", wallet=None, market_id=None)
    body = await api.get("/events", after=str(ids[1]), topic="trade", limit="2")
    assert [event["id"] for event in body["events"]] == ids[2:4]
    assert body["last_id"] == ids[3]
    assert body["events"][0]["payload"]["amount"] == "1234.5"
    assert body["expired"] is False
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM events WHERE id <= ?", (ids[2],))
    expired = await api.get("/events", after="0")
    assert expired["expired"] is True
    assert expired["oldest_id"] == ids[3]


def _decimal_fields(schema: Any) -> set[str]:
    if isinstance(schema, list):
        return set().union(*(_decimal_fields(item) for item in schema))
    if not isinstance(schema, dict):
        return set()
    found = {
        name
        for name, field in schema.get("properties", {}).items()
        if isinstance(field, dict) and str(field.get("description", "")).startswith("exact decimal")
    }
    return found.union(*(_decimal_fields(value) for value in schema.values()))


def test_every_decimal_field_is_rendered_plain(document: dict[str, Any]) -> None:
    assert _decimal_fields(document["components"]["schemas"]) == DECIMAL_COLUMNS


async def test_decimals_with_exponent_are_sent_plain(db: Database, seeded: WebServer, api: Api) -> None:
    # Rows written before decimals were stored in plain notation may hold an exponent.
    async with db.transaction() as tx:
        await tx.execute("UPDATE trades SET profit = '0E-18', fee = '1E+2', price = '-2.5E-3' WHERE tx_hash = '0x05'")
        await tx.execute("UPDATE markets SET volume = '1.20E+3' WHERE market_id = 1")
        await tx.execute("UPDATE wallet_stats SET realized_pnl = '5E-1' WHERE wallet = ?", (WALLET_A,))
    trade = (await api.get("/trades", limit="1"))["trades"][0]
    assert trade["profit"] == "0.000000000000000000"
    assert trade["fee"] == "100"
    assert trade["price"] == "-0.0025"
    assert (await api.get("/markets/1"))["market"]["volume"] == "1200"
    wallet = (await api.get(f"/wallets/{WALLET_A}"))["wallet"]
    assert wallet["stats"]["realized_pnl"] == "0.5"
    assert wallet["recent_trades"][0]["profit"] == "0.000000000000000000"
