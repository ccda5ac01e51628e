"""The feed's wire format: topic names, client requests and the JSON frames the server sends.

docs/feed.md is the reference for clients; this module is its implementation.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from whaled.errors import WhaledError

__all__ = [
    "EVENT_COLUMNS",
    "PROTOCOL_VERSION",
    "STATIC_TOPICS",
    "ClientRequest",
    "FeedEvent",
    "FeedProtocolError",
    "encode_frame",
    "event_from_row",
    "parse_request",
    "parse_topic",
    "reply_frame",
    "websocket_text_frame",
]

PROTOCOL_VERSION = 1
MAX_TOPICS = 256
_MAX_REF_CHARS = 64

# Topics that name a whole category of events, and the category of each event topic in the events table.
STATIC_TOPICS = ("trades", "whale-trades", "markets", "wallets", "alerts", "jobs")
_CATEGORY_BY_EVENT_TOPIC = {
    "trade": "trades",
    "market": "markets",
    "wallet": "wallets",
    "alert": "alerts",
    "job": "jobs",
}
_WHALE_TYPE = "trade.whale"
_WALLET_TOPIC = re.compile(r"wallet:(0x[0-9a-fA-F]{40})")
_MARKET_TOPIC = re.compile(r"market:([1-9][0-9]{0,18})")

EVENT_COLUMNS = "id, topic, type, wallet, market_id, payload, created_ms"


class FeedProtocolError(WhaledError, ValueError):
    """A client request is invalid; ``code`` is the machine-readable reason sent in the error frame."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One event as the feed sends it: the id, the topics it belongs to and its complete websocket frame."""

    id: int
    topics: tuple[str, ...]
    frame: bytes


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """One parsed client request. ``after`` is set only on a subscribe that resumes from an event id."""

    op: str
    topics: tuple[str, ...] = ()
    after: int | None = None
    ref: str | int | None = None


def websocket_text_frame(payload: bytes) -> bytes:
    """Wrap ``payload`` in one unmasked, uncompressed websocket text frame (RFC 6455, section 5.2).

    The feed encodes each event once as a complete frame and writes the same bytes to every client.
    """
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 65_536:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload


def encode_frame(frame: dict[str, Any]) -> bytes:
    """Encode ``frame`` as JSON inside a websocket text frame."""
    return websocket_text_frame(json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode())


def _event_topics(topic: str, type_: str, wallet: str | None, market_id: int | None) -> tuple[str, ...]:
    # A whale trade is stored twice, as trade.new and trade.whale. Only trade.new counts for the wallet
    # and market topics, so that a client following one wallet gets each trade once.
    if type_ == _WHALE_TYPE:
        return ("whale-trades",)
    topics: list[str] = []
    category = _CATEGORY_BY_EVENT_TOPIC.get(topic)
    if category is not None:
        topics.append(category)
    if wallet:
        topics.append(f"wallet:{wallet.lower()}")
    if market_id is not None:
        topics.append(f"market:{market_id}")
    return tuple(topics)


def event_from_row(row: sqlite3.Row | tuple[Any, ...]) -> FeedEvent:
    """Build the feed's form of one ``events`` row selected with :data:`EVENT_COLUMNS`.

    The stored payload is already JSON, so it is spliced into the frame rather than decoded and encoded again.
    """
    event_id, topic, type_, wallet, market_id, payload, created_ms = tuple(row)
    head = json.dumps(
        {
            "op": "event",
            "id": event_id,
            "topic": topic,
            "type": type_,
            "wallet": wallet,
            "market_id": market_id,
            "created_ms": created_ms,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    frame = websocket_text_frame(f'{head[:-1]},"payload":{payload}}}'.encode())
    return FeedEvent(event_id, _event_topics(topic, type_, wallet, market_id), frame)


def parse_topic(name: object) -> str:
    """Return the canonical form of a topic name, or raise :class:`FeedProtocolError` naming the choices."""
    if isinstance(name, str):
        if name in STATIC_TOPICS:
            return name
        wallet = _WALLET_TOPIC.fullmatch(name)
        if wallet is not None:
            return f"wallet:{wallet.group(1).lower()}"
        market = _MARKET_TOPIC.fullmatch(name)
        if market is not None:
            return f"market:{int(market.group(1))}"
    shown = repr(name)[:80]
    raise FeedProtocolError(
        "invalid_topic",
        f"unknown topic {shown}; use one of {', '.join(STATIC_TOPICS)}, "
        "wallet:<0x address of 40 hex digits> or market:<market id>",
    )


def _parse_topics(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise FeedProtocolError("invalid_topics", "topics must be a non-empty list of topic names")
    if len(value) > MAX_TOPICS:
        raise FeedProtocolError("invalid_topics", f"at most {MAX_TOPICS} topics per request (got {len(value)})")
    return tuple(dict.fromkeys(parse_topic(name) for name in value))


def _parse_after(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FeedProtocolError(
            "invalid_after", f"after must be a non-negative integer event id (got {repr(value)[:40]})"
        )
    return value


def _parse_ref(value: object) -> str | int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and len(value) <= _MAX_REF_CHARS:
        return value
    raise FeedProtocolError("invalid_ref", f"ref must be an integer or a string of at most {_MAX_REF_CHARS} chars")


def parse_request(text: str) -> ClientRequest:
    """Parse one text frame from a client.

    :raises FeedProtocolError: the frame is not JSON, not an object, or names an unknown op or topic.
    """
    try:
        data = json.loads(text)
    except ValueError:
        raise FeedProtocolError("invalid_json", "the message is not valid JSON") from None
    if not isinstance(data, dict):
        raise FeedProtocolError("invalid_request", "the message must be a JSON object with an op field")
    ref = _parse_ref(data.get("ref"))
    op = data.get("op")
    if op in ("subscribe", "unsubscribe"):
        topics = _parse_topics(data.get("topics"))
        after = _parse_after(data.get("after")) if op == "subscribe" else None
        return ClientRequest(op, topics, after, ref)
    if op == "ping":
        return ClientRequest(op, ref=ref)
    raise FeedProtocolError("invalid_op", f"unknown op {repr(op)[:40]}; use subscribe, unsubscribe or ping")


def reply_frame(op: str, ref: str | int | None, **fields: Any) -> bytes:
    """Encode a reply to a client request; ``ref`` is echoed when the request carried one."""
    frame: dict[str, Any] = {"op": op, **fields}
    if ref is not None:
        frame["ref"] = ref
    return encode_frame(frame)
