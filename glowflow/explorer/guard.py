"""Who may ask the explorer's server, and what every answer carries: the checks that run before
any route, as one ASGI middleware around the app.

A server on this computer's loopback address is still reachable from every web page the user
opens: a page may send it simple cross-site requests, and a page whose own host name comes to
point at 127.0.0.1 (DNS rebinding) may read its answers. So, before a request reaches a route:

- its ``Host`` must be one the server answers to (the loopback names, the address it listens
  on, and what the user allows), which defeats DNS rebinding;
- a request that writes (anything but GET and HEAD) sent by a browser must come from the
  server's own page: its ``Origin`` must be the server's (or one the user allows);
- with a token (required where the server listens beyond loopback, as notebook servers do),
  the request must carry it: in the ``token`` query parameter (which also sets a cookie, so the
  page's own requests carry it), the cookie, or an ``Authorization: Bearer`` header;
- its query string must be short and have few parameters; it is parsed once, here, into
  ``Query``.

Every answer, refused or not, carries a Content-Security-Policy that lets the page load only
its own script, style and pictures, and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import parse_qsl, urlsplit

MAX_QUERY_BYTES = 4096
MAX_PARAMETERS = 64  # an edit names at most every attribute (40 for CelebA) and the image
TOKEN_PARAMETER = "token"
TOKEN_COOKIE = "glowflow_token"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # a token in the address never leaves in a Referer
    "x-frame-options": "DENY",
}
_SAFE_METHODS = ("GET", "HEAD")

Scope = dict[str, Any]
Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Refused(Exception):
    """A request the guard turns away: ``status`` and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Query:
    """A request's query parameters, parsed once: name -> every value given, in order."""

    values: dict[str, list[str]]

    @classmethod
    def parse(cls, raw: bytes) -> Query:
        """The parameters of a raw query string within ``MAX_QUERY_BYTES`` and
        ``MAX_PARAMETERS``.

        Raises:
            Refused: 414 for a longer query, 400 for more parameters.
        """
        if len(raw) > MAX_QUERY_BYTES:
            raise Refused(414, f"the query is over {MAX_QUERY_BYTES} bytes; send a shorter one")
        if raw.count(b"&") >= MAX_PARAMETERS:
            raise Refused(400, f"the query has over {MAX_PARAMETERS} parameters; send fewer")
        values: dict[str, list[str]] = {}
        text = raw.decode("latin-1")
        for name, value in parse_qsl(text, keep_blank_values=True, errors="replace"):
            values.setdefault(name, []).append(value)
        return cls(values)

    def names(self) -> list[str]:
        return list(self.values)

    def without(self, name: str) -> Query:
        return Query({k: v for k, v in self.values.items() if k != name})


def host_name(host_header: str) -> str:
    """The host of a ``Host`` header (or an ``Origin``'s address) without its port, lower-case;
    an IPv6 address without its brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@dataclass(frozen=True)
class Policy:
    """What the guard lets through.

    Attributes:
        hosts: the host names a request's ``Host`` may name (lower-case, no port); ``*``
            allows any.
        origins: the origins (``scheme://host[:port]``) besides the server's own whose pages
            may write to it; ``*`` allows any.
        token: the secret every request must carry, or None for none.
    """

    hosts: frozenset[str]
    origins: frozenset[str] = frozenset()
    token: str | None = None
    cookie: str = TOKEN_COOKIE

    @classmethod
    def make(
        cls,
        hosts: Iterable[str] = (),
        origins: Iterable[str] = (),
        token: str | None = None,
        port: int | None = None,
    ) -> Policy:
        """The loopback names plus ``hosts``, with ``origins`` and ``token``; the token's
        cookie is named for ``port`` (browsers keep cookies by host, not by port, so two
        servers on one host would otherwise overwrite each other's)."""
        names = {host_name(h) for h in (*LOOPBACK_HOSTS, *hosts)}
        cookie = TOKEN_COOKIE if port is None else f"{TOKEN_COOKIE}_{port}"
        return cls(frozenset(names), frozenset(o.rstrip("/").lower() for o in origins), token,
                   cookie)  # fmt: skip

    def check_host(self, host: str | None) -> None:
        if host is None:
            raise Refused(400, "the request has no Host header")
        if "*" not in self.hosts and host_name(host) not in self.hosts:
            raise Refused(
                400,
                f"this server does not answer to the host {host[:60]!r}; open it by the address "
                f"it printed, or start it with --allow-host {host_name(host)[:60]}",
            )

    def check_origin(self, method: str, host: str, origin: str | None, site: str | None) -> None:
        """A browser's write must come from the server's own page (or an allowed origin)."""
        if method in _SAFE_METHODS:
            return
        if origin is None:
            if site == "cross-site":  # a browser that sends Sec-Fetch-Site but no Origin
                raise Refused(403, "a cross-site request may not write to this server")
            return  # not a browser: a script or curl, which no web page controls
        own = urlsplit(origin).netloc.lower() == host.strip().lower()
        if not own and "*" not in self.origins and origin.rstrip("/").lower() not in self.origins:
            raise Refused(
                403,
                f"a page from {origin[:60]} may not write to this server; use the server's own "
                f"page, or start it with --allow-origin {origin[:60]}",
            )

    def token_given(self, query: Query, cookies: str | None, authorization: str | None) -> bool:
        """Whether the request carries the token (in the query, a cookie or a header)."""
        given = []
        given += query.values.get(TOKEN_PARAMETER, [])
        for part in (cookies or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie:
                given.append(value)
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() in ("bearer", "token"):
            given.append(value.strip())
        return any(hmac.compare_digest(g.encode(), self.token.encode()) for g in given)


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the last of repeated ones)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


class Guard:
    """The ASGI middleware that applies a ``Policy`` to every HTTP request before ``app``
    sees it, puts the parsed ``Query`` in ``scope["glowflow.query"]`` (the token taken
    out), and adds ``SECURITY_HEADERS`` to every answer."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookie: str | None = None
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                if cookie is not None:
                    headers.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": headers}
            await send(message)

        headers = _headers(scope)
        try:
            self.policy.check_host(headers.get("host"))
            query = Query.parse(scope.get("query_string", b""))
            if self.policy.token is not None:
                if not self.policy.token_given(
                    query, headers.get("cookie"), headers.get("authorization")
                ):
                    raise Refused(
                        403,
                        "this server needs its token: open the address with ?token= that it "
                        "printed when it started",
                    )
                if TOKEN_PARAMETER in query.values:
                    cookie = (
                        f"{self.policy.cookie}={self.policy.token}; Path=/; HttpOnly; "
                        f"SameSite=Strict"
                    )
            self.policy.check_origin(
                scope["method"], headers["host"], headers.get("origin"),
                headers.get("sec-fetch-site"),
            )  # fmt: skip
        except Refused as e:
            await refuse(send_with_headers, e.status, str(e))
            return
        scope = {**scope, "glowflow.query": query.without(TOKEN_PARAMETER)}
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:  # a bug: answered as JSON with the headers, then raised to be logged
            if not started:
                await refuse(send_with_headers, 500, "the server failed on this request (a bug)")
            raise


async def refuse(send: Send, status: int, message: str) -> None:
    """Answer ``status`` with ``{"error": message}``."""
    body = json.dumps({"error": message}).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})
