"""The `email` notifier: one mail per notification, over SMTP with STARTTLS (or implicit TLS) and auth.

    notifiers:
      email/oncall:
        smarthost: smtp.example.com:587
        from: vigil@example.com
        to: [ml-oncall@example.com]
        username: vigil
        password: ${env:SMTP_PASSWORD}

The standard library's smtplib does the talking, in a worker thread (it
blocks); the delivery's timeout bounds each attempt. Credentials are never
sent over a connection that is not encrypted.
"""

from __future__ import annotations

import asyncio
import email.utils
import smtplib
import ssl
from email.message import EmailMessage
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from agent.alerts.notifiers.base import DeliveryError, Notification, NotifierConfig, rfc3339


class EmailConfig(NotifierConfig):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    smarthost: str = Field(pattern=r"^[^\s:]+:\d+$")  # host:port
    from_: str = Field(alias="from", min_length=3)
    to: list[str] = Field(min_length=1)
    username: str = ""
    password: str = ""
    # starttls: plain connection upgraded with STARTTLS (port 587, 25); tls: TLS from the start (465);
    # none: no encryption, only for a relay on the same host (and never with credentials).
    security: Literal["starttls", "tls", "none"] = "starttls"
    ca_file: str = ""  # trust this CA (PEM) instead of the system's
    insecure_skip_verify: bool = False
    hello: str = ""  # the name given in EHLO (default: this host's FQDN)
    headers: dict[str, str] = {}

    @model_validator(mode="after")
    def _check(self) -> EmailConfig:
        if self.security == "none" and (self.username or self.password):
            raise ValueError("username and password need security starttls or tls: "
                             "they would cross the network in the clear")
        if bool(self.username) != bool(self.password):
            raise ValueError("username and password go together")
        return self

    @property
    def host(self) -> str:
        return self.smarthost.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.smarthost.rsplit(":", 1)[1])


def email_message(n: Notification, config: EmailConfig) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = n.title()
    message["From"] = config.from_
    message["To"] = ", ".join(config.to)
    message["Date"] = email.utils.formatdate(n.created, localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain=config.host)
    message["X-Vigil-Group-Key"] = n.group_key
    for key, value in config.headers.items():
        message[key] = value
    lines = [n.title(), ""]
    for alert in n.alerts:
        lines.append(n.line(alert))
        since = alert.fired_at if alert.fired_at is not None else alert.active_since
        lines.append(f"  since {rfc3339(since)}" + (f", resolved {rfc3339(alert.resolved_at)}"
                                                   if alert.resolved_at is not None else ""))
        description = alert.annotations.get("description")
        if description:
            lines.append(f"  {description}")
        for key, value in sorted(alert.labels.items()):
            lines.append(f"  {key}: {value}")
        lines.append("")
    if n.external_url:
        lines.append(n.external_url)
    message.set_content("\n".join(lines))
    return message


class EmailNotifier:
    def __init__(self, id: str, config: EmailConfig, timeout: float) -> None:
        self.id = id
        self.config = config
        self._timeout = config.timeout or timeout  # smtplib's socket timeout: the thread ends with the attempt
        self._context: ssl.SSLContext | None = None

    async def start(self) -> None:
        if self.config.security != "none":
            context = ssl.create_default_context(cafile=self.config.ca_file or None)
            if self.config.insecure_skip_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._context = context

    async def close(self) -> None:
        pass

    def secrets(self) -> list[str]:
        return [self.config.password]

    async def send(self, notification: Notification) -> None:
        message = email_message(notification, self.config)
        await asyncio.to_thread(self._send, message, self._timeout)

    def _send(self, message: EmailMessage, timeout: float) -> None:
        c = self.config
        try:
            if c.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(c.host, c.port, local_hostname=c.hello or None,
                                                        timeout=timeout, context=self._context)
            else:
                client = smtplib.SMTP(c.host, c.port, local_hostname=c.hello or None, timeout=timeout)
            with client:
                client.ehlo()
                if c.security == "starttls":
                    if not client.has_extn("starttls"):
                        raise DeliveryError("the server does not offer STARTTLS", retryable=False)
                    client.starttls(context=self._context)
                    client.ehlo()
                if c.username:
                    client.login(c.username, c.password)
                client.send_message(message, from_addr=c.from_, to_addrs=c.to)
        except DeliveryError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP authentication failed ({exc.smtp_code})", retryable=False) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise DeliveryError(f"SMTP recipients refused ({codes})", retryable=all(400 <= c < 500 for c in codes)) \
                from None
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            raise DeliveryError(f"SMTP {exc.smtp_code}: {text[:200]}", retryable=400 <= exc.smtp_code < 500) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(f"TLS certificate not trusted: {exc.verify_message}", retryable=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from None
