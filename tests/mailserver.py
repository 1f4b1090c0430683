"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for e-mail tests."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.servers import free_port


class Inbox:
    """The aiosmtpd handler: every message accepted is parsed and kept in ``messages``."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content, policy=policy.default))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


class MailServer:
    def __init__(self) -> None:
        self.inbox = Inbox()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=free_port())

    @property
    def port(self) -> int:
        return self.controller.port

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
