"""Print whale trades from a whaled feed, and resume without a gap after the connection drops.

Run: python examples/feed_client.py [ws://127.0.0.1:8420/ws] [--token TOKEN]

The client remembers the id of the last event it printed. After a disconnect it reconnects with
``after`` set to that id, so the server replays what was missed. A ``reset`` frame means the events
after that id were deleted by retention: a real client would reload its state from the JSON API here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any

import aiohttp

RETRY_S = (1, 2, 5, 10, 30)


async def follow(url: str, token: str | None) -> None:
    last_id: int | None = None
    failures = 0
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            try:
                async with session.ws_connect(url, heartbeat=30) as ws:
                    failures = 0
                    last_id = await stream(ws, last_id)
                    print(f"connection closed with code {ws.close_code}; resuming after event {last_id}")
            except aiohttp.ClientError as exc:
                print(f"cannot connect to {url}: {exc}")
            delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
            failures += 1
            await asyncio.sleep(delay)


async def stream(ws: aiohttp.ClientWebSocketResponse, last_id: int | None) -> int | None:
    """Subscribe (resuming after ``last_id``), print whale trades, and return the last id seen."""
    request: dict[str, Any] = {"op": "subscribe", "topics": ["whale-trades"]}
    if last_id is not None:
        request["after"] = last_id
    await ws.send_json(request)
    async for message in ws:
        if message.type is not aiohttp.WSMsgType.TEXT:
            break
        frame = json.loads(message.data)
        if frame["op"] == "event":
            last_id = frame["id"]
            show(frame)
        elif frame["op"] == "reset":
            print(f"events after {frame['after']} are gone ({frame['reason']}); reload state from the API")
            last_id = frame["resume_after"]
        elif frame["op"] == "subscribed" and last_id is None:
            last_id = frame["after"]
        elif frame["op"] == "error":
            print(f"server rejected a request: {frame['code']}: {frame['message']}")
    return last_id


def show(frame: dict[str, Any]) -> None:
    trade = frame["payload"]
    print(
        f"#{frame['id']} {trade.get('label') or trade['wallet']} {trade['side']} {trade['shares']} "
        f"{trade['outcome']} @ {trade['price']} (${trade['notional_usd']}) in {trade['market_title']!r}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Print whale trades from a whaled feed.")
    parser.add_argument("url", nargs="?", default="ws://127.0.0.1:8420/ws")
    parser.add_argument("--token", help="web.access_token, if the server requires one")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow(args.url, args.token))


if __name__ == "__main__":
    main()
