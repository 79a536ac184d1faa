"""What the gateway changes in a request on its way to an instance, and in the answer on
its way back. Pure functions over raw ASGI header lists (lowercase names, bytes)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["HOP_BY_HOP", "RawHeaders", "response_headers", "split_api_path",
           "upstream_headers"]

RawHeaders = list[tuple[bytes, bytes]]

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate",
                        b"proxy-authorization", b"te", b"trailer", b"transfer-encoding",
                        b"upgrade", b"proxy-connection"})
# Set anew for the upstream leg: the HTTP client writes Host and Content-Length for the
# request it sends, the request id hook writes the id servicekit accepted (not whatever
# the client sent), and Expect was answered by the gateway's own server.
_REQUEST_REWRITTEN = frozenset({b"host", b"content-length", b"x-request-id", b"expect"})
# The gateway's server writes its own Date and Server, servicekit its X-Request-ID, and
# Starlette the length of the body as relayed.
_RESPONSE_REWRITTEN = frozenset({b"content-length", b"date", b"server", b"x-request-id"})


def _connection_tokens(headers: Sequence[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Headers a Connection header names are hop-by-hop too."""
    return frozenset(token.strip().lower() for name, value in headers
                     if name.lower() == b"connection" for token in value.split(b","))


def upstream_headers(headers: Sequence[tuple[bytes, bytes]], *, client: str | None,
                     scheme: str, prefix: str) -> RawHeaders:
    """The headers to send upstream: the client's, less hop-by-hop ones, plus
    X-Forwarded-For (the client appended to any chain it sent), X-Forwarded-Proto (the
    scheme the client used), X-Forwarded-Host (the Host it asked for, unless a proxy in
    front already set one) and X-Forwarded-Prefix (the `prefix` the gateway removed)."""
    dropped = HOP_BY_HOP | _REQUEST_REWRITTEN | _connection_tokens(headers)
    forwarded_for: list[bytes] = []
    host = forwarded_host = None
    kept: RawHeaders = []
    for name, value in headers:
        lower = name.lower()
        if lower == b"x-forwarded-for":
            forwarded_for.append(value)
        elif lower == b"host":
            host = value
        elif lower == b"x-forwarded-host":
            forwarded_host = value
        elif lower in (b"x-forwarded-proto", b"x-forwarded-prefix"):
            continue
        elif lower not in dropped:
            kept.append((lower, value))
    if client:
        forwarded_for.append(client.encode("latin-1"))
    if forwarded_for:
        kept.append((b"x-forwarded-for", b", ".join(forwarded_for)))
    kept.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    if forwarded_host or host:
        kept.append((b"x-forwarded-host", forwarded_host or host or b""))
    kept.append((b"x-forwarded-prefix", prefix.encode("latin-1")))
    return kept


def response_headers(headers: Sequence[tuple[bytes, bytes]], *, keep_length: bool) -> RawHeaders:
    """The instance's answer headers to relay, less hop-by-hop ones and those the gateway
    writes itself. `keep_length` keeps Content-Length (a HEAD answer has no body to
    measure, so its length must come from the instance)."""
    dropped = HOP_BY_HOP | _connection_tokens(headers) | _RESPONSE_REWRITTEN
    if keep_length:
        dropped -= {b"content-length"}
    return [(name.lower(), value) for name, value in headers if name.lower() not in dropped]


def split_api_path(raw_path: bytes) -> tuple[str, str] | None:
    """("app", "/rest") from the raw path b"/api/app/rest", with the rest exactly as the
    client encoded it ("/" when there is none). None if the path is not under /api/."""
    if not raw_path.startswith(b"/api/"):
        return None
    app, slash, rest = raw_path[len(b"/api/"):].partition(b"/")
    return app.decode("latin-1"), ("/" + rest.decode("latin-1") if slash else "/")
