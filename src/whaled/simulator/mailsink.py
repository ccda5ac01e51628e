"""A local SMTP server (aiosmtpd) that keeps every message it receives as a ``.eml`` file in a folder.

``whaled demo`` points the SMTP settings at it, so that alert emails can be read without a mail server.
It runs on the caller's event loop and accepts any sender and recipient, without TLS or authentication.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from whaled.clock import now_ms
from whaled.log import simulator_logger as logger

__all__ = ["MailSink", "MailSinkHandler", "start_mail_sink"]


class MailSinkHandler:
    """The aiosmtpd handler: writes each message to ``folder`` as ``<ms>-<n>.eml``, then replies 250."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.received = 0
        self._numbers = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        path = self.folder / f"{now_ms()}-{next(self._numbers):05d}.eml"
        await asyncio.to_thread(_write_atomically, path, content)
        self.received += 1
        logger.info("Mail sink stored a message for %s as %s", ", ".join(envelope.rcpt_tos), path.name)
        return "250 Message accepted for delivery"


def _write_atomically(path: Path, content: bytes) -> None:
    partial = path.with_suffix(".part")
    partial.write_bytes(content)
    partial.replace(path)


class MailSink:
    """A running sink. ``port`` is the bound port (useful with ``port=0``); stop it with :meth:`close`."""

    def __init__(self, server: asyncio.Server, folder: Path, handler: MailSinkHandler) -> None:
        self._server = server
        self.folder = folder
        self.handler = handler
        self.host, self.port = server.sockets[0].getsockname()[:2]

    def messages(self) -> list[Path]:
        """List the stored message files, oldest first."""
        return sorted(self.folder.glob("*.eml"))

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()
        logger.info("Mail sink on %s:%d stopped after %d messages", self.host, self.port, self.handler.received)


async def start_mail_sink(
    folder: Path | str, host: str = "127.0.0.1", port: int = 0, *, handler: MailSinkHandler | None = None
) -> MailSink:
    """Start the sink on ``host:port`` (``port=0`` picks a free port), storing messages in ``folder``.

    :param handler: a replacement handler (tests pass one that delays or rejects replies).
    """
    target = Path(folder)
    await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
    sink_handler = handler or MailSinkHandler(target)
    loop = asyncio.get_running_loop()

    def protocol() -> Any:
        # hostname is given so that aiosmtpd does not look up the machine's FQDN.
        return SMTP(sink_handler, hostname="localhost", ident="whaled mail sink", loop=loop)

    server = await loop.create_server(protocol, host, port)
    sink = MailSink(server, target, sink_handler)
    logger.info("Mail sink listening on %s:%d, storing into %s", sink.host, sink.port, target)
    return sink
