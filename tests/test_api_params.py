"""The JSON API's parameter checks, over real HTTP: every invalid value gets a JSON 400 that names it."""

from __future__ import annotations

import base64

import aiohttp
import pytest
from yarl import URL

from whaled.web import WebServer
from whaled.web.api_params import encode_cursor


def _raw_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def _get(http: aiohttp.ClientSession, server: WebServer, path_and_query: str) -> tuple[int, str, dict]:
    # The URL is sent exactly as written, so that percent-escapes and repeated parameters reach the server.
    url = URL(f"{server.url}/api/v1{path_and_query}", encoded=True)
    async with http.get(url) as response:
        return response.status, response.content_type, await response.json()


@pytest.mark.parametrize(
    ("path_and_query", "parameter"),
    [
        ("/markets?status=%C2%B2", "status"),  # superscript two: str.isdigit() accepts it, int() does not
        ("/markets/%C2%B2", "market_id"),
        ("/markets/9223372036854775808", "market_id"),  # 2**63, one above the largest SQLite integer
        ("/markets/" + "9" * 5000, "market_id"),  # longer than int() converts by default
        ("/trades?limit=%D9%A5", "limit"),  # Arabic-Indic digit five
        ("/trades?limit=5_0", "limit"),
        ("/trades?limit=%205", "limit"),
        ("/trades?limit=5%20", "limit"),
        ("/trades?limit=%2B5", "limit"),
        ("/trades?limit=" + "9" * 5000, "limit"),
        ("/trades?market=%C2%B2", "market"),
        ("/trades?since=1e3", "since"),
        ("/trades?limit=1&limit=1000", "limit"),
        ("/events?after=1&after=2", "after"),
        ("/events?topic=bogus", "topic"),
        ("/events?topic=trade&topic=job", "topic"),
        (f"/trades?cursor={encode_cursor(2**64, 1)}", "cursor"),
        (f"/trades?cursor={encode_cursor(1, 2**63)}", "cursor"),
        (f"/alerts?cursor={encode_cursor(2**63)}", "cursor"),
        (f"/job-runs?cursor={encode_cursor(2**100)}", "cursor"),
        (f"/job-runs?cursor={encode_cursor(-1)}", "cursor"),
        (f"/trades?cursor={_raw_cursor('[' * 5000)}", "cursor"),
        (f"/alerts?cursor={_raw_cursor('[' + '9' * 5000 + ']')}", "cursor"),
    ],
)
async def test_invalid_value_gets_json_400(
    server: WebServer, http: aiohttp.ClientSession, path_and_query: str, parameter: str
) -> None:
    status, content_type, body = await _get(http, server, path_and_query)
    assert status == 400, body
    assert content_type == "application/json"
    assert body["error"]["parameter"] == parameter
    assert body["error"]["message"]


async def test_integer_error_says_ascii_digits(server: WebServer, http: aiohttp.ClientSession) -> None:
    _, _, body = await _get(http, server, "/trades?limit=%D9%A5")
    assert body["error"]["message"] == "limit must be an integer of digits 0-9 (got '٥')"


async def test_repeated_parameter_error_names_it(server: WebServer, http: aiohttp.ClientSession) -> None:
    _, _, body = await _get(http, server, "/trades?limit=1&limit=1000")
    assert "'limit' is given more than once" in body["error"]["message"]


async def test_unknown_event_topic_lists_topics(server: WebServer, http: aiohttp.ClientSession) -> None:
    _, _, body = await _get(http, server, "/events?topic=bogus")
    assert body["error"]["message"] == "topic must be one of trade, market, wallet, alert, system, job (got 'bogus')"


@pytest.mark.parametrize("path_and_query", ["/events?topic=system", "/trades?limit=050", "/markets?status=4"])
async def test_valid_edge_values_are_accepted(
    server: WebServer, http: aiohttp.ClientSession, path_and_query: str
) -> None:
    status, _, body = await _get(http, server, path_and_query)
    assert status == 200, body
