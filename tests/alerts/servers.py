"""Local stand-ins for the endpoints notifiers talk to: an HTTP server (aiohttp, port 0) that records what
it is sent and answers as told, and an SMTP server (aiosmtpd) with STARTTLS and AUTH."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

from aiohttp import web

from tests.conftest import free_port

TESTDATA = Path(__file__).parent / "testdata"
CERT, KEY = TESTDATA / "smtp-cert.pem", TESTDATA / "smtp-key.pem"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class HttpEndpoint:
    """What the server received; `answers` are (status, headers) used in turn (the last one repeats)."""

    url: str
    received: list[Received] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=lambda: [(200, {})])
    delay: float = 0.0  # seconds before answering (a hanging endpoint)

    def bodies(self, path: str | None = None) -> list[Any]:
        return [r.body for r in self.received if path is None or r.path == path]


@contextlib.asynccontextmanager
async def http_endpoint() -> AsyncIterator[HttpEndpoint]:
    endpoint = HttpEndpoint("")

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        endpoint.received.append(Received(request.path_qs, dict(request.headers), body))
        if endpoint.delay:
            await asyncio.sleep(endpoint.delay)
        index = min(len(endpoint.received) - 1, len(endpoint.answers) - 1)
        status, headers = endpoint.answers[index]
        return web.Response(status=status, text="ok" if status < 300 else "nope", headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    endpoint.url = f"http://127.0.0.1:{port}"
    try:
        yield endpoint
    finally:
        await runner.cleanup()


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage
    tls: bool
    login: str


@dataclass
class SmtpServer:
    port: int
    mails: list[Mail] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)


@contextlib.contextmanager
def smtp_server(user: str = "vigil", password: str = "s3cret-pass") -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 that requires STARTTLS, then AUTH (LOGIN or PLAIN) as `user`."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    server = SmtpServer(free_port())

    def authenticate(smtp, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user \
            and auth_data.password.decode() == password
        server.logins.append((auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    class Handler:
        async def handle_DATA(self, smtp, session, envelope) -> str:
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else ""
            server.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message,
                                     bool(session.ssl), login))
            return "250 Message accepted for delivery"

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(CERT, KEY)
    controller = Controller(Handler(), hostname="127.0.0.1", port=server.port, tls_context=context,
                            require_starttls=True, authenticator=authenticate, auth_required=True,
                            auth_require_tls=True, server_hostname="localhost")
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
