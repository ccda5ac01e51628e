"""Sending one email with aiosmtplib, and telling apart "not accepted", "rejected" and "outcome unknown".

Every failure before the DATA command is safe to retry because the server has not taken the message. A
definite reply to DATA (4xx or 5xx) is a rejection. Any other failure once DATA has started (a timeout, a
dropped connection) leaves the outcome unknown: the server may have stored the message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import aiosmtplib

from whaled.config import SmtpSettings
from whaled.log import mail_logger as logger
from whaled.notify.errors import PermanentDeliveryError, TransientDeliveryError, UnknownOutcomeError
from whaled.notify.message import envelope_sender

__all__ = ["EmailTransport"]

_QUIT_TIMEOUT_S = 2.0


class EmailTransport:
    """One SMTP session per message, following the TLS mode and timeouts of :class:`SmtpSettings`."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        _, self.envelope_from = envelope_sender(settings.sender)

    @property
    def server(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _client(self) -> aiosmtplib.SMTP:
        settings = self.settings
        mode = settings.tls_mode
        start_tls = {"starttls": True, "opportunistic": None}.get(mode, False)
        helo = settings.helo_name or self.envelope_from.rpartition("@")[2] or "localhost"
        return aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            use_tls=mode == "implicit",
            start_tls=start_tls,
            validate_certs=settings.validate_certs,
            timeout=settings.command_timeout_s,
            local_hostname=helo,
        )

    async def send(
        self, recipient: str, message: bytes, *, before_data: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Send ``message`` to ``recipient``.

        :param before_data: awaited just before the DATA command, so the caller can record that the
            outcome is uncertain from then on.
        :raises TransientDeliveryError: not accepted; retry later.
        :raises PermanentDeliveryError: rejected with a 5xx reply.
        :raises UnknownOutcomeError: DATA started and no definite reply came.
        """
        client = self._client()
        stage = "connect"
        try:
            await client.connect(timeout=self.settings.connect_timeout_s)
            stage = "login"
            await self._login(client)
            stage = "MAIL FROM"
            await client.mail(self.envelope_from)
            stage = "RCPT TO"
            await client.rcpt(recipient)
            if before_data is not None:
                await before_data()
            stage = "DATA"
            await client.data(message)
        except aiosmtplib.SMTPResponseException as exc:
            raise self._rejected(recipient, stage, exc) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            detail = f"{stage} on {self.server} failed: {type(exc).__name__}: {self._scrub(str(exc))}"
            if stage == "DATA":
                raise UnknownOutcomeError(recipient, detail) from None
            raise TransientDeliveryError(recipient, detail) from None
        finally:
            await self._disconnect(client)
        logger.debug("Mail to %s accepted by %s", recipient, self.server)

    async def _login(self, client: aiosmtplib.SMTP) -> None:
        settings = self.settings
        if settings.username is None:
            return
        password = settings.password.get_secret_value() if settings.password is not None else ""
        await client.login(settings.username, password)

    def _rejected(
        self, recipient: str, stage: str, exc: aiosmtplib.SMTPResponseException
    ) -> TransientDeliveryError | PermanentDeliveryError:
        detail = f"{stage} on {self.server} rejected: {exc.code} {self._scrub(exc.message)}"
        if 400 <= exc.code < 500:
            return TransientDeliveryError(recipient, detail)
        return PermanentDeliveryError(recipient, detail)

    def _scrub(self, text: str) -> str:
        password = self.settings.password
        if password is not None and password.get_secret_value():
            return text.replace(password.get_secret_value(), "***")
        return text

    async def _disconnect(self, client: aiosmtplib.SMTP) -> None:
        if not client.is_connected:
            return
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            await client.quit(timeout=_QUIT_TIMEOUT_S)
        client.close()
