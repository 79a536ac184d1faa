"""Header rewriting and path splitting over raw ASGI header lists."""

from __future__ import annotations

import pytest
from gateway.forwarding import response_headers, split_api_path, upstream_headers


def forwarded(headers: list[tuple[bytes, bytes]], client: str | None = "10.0.0.9",
              scheme: str = "http") -> dict[bytes, bytes]:
    return dict(upstream_headers(headers, client=client, scheme=scheme, prefix="/api/data"))


def test_end_to_end_headers_pass_and_hop_by_hop_ones_do_not() -> None:
    sent = forwarded([(b"accept", b"application/json"), (b"connection", b"keep-alive, x-hop"),
                      (b"keep-alive", b"timeout=5"), (b"x-hop", b"1"), (b"te", b"trailers"),
                      (b"transfer-encoding", b"chunked"), (b"upgrade", b"websocket"),
                      (b"proxy-authorization", b"secret"), (b"authorization", b"Bearer t")])
    assert sent[b"accept"] == b"application/json"
    assert sent[b"authorization"] == b"Bearer t"
    for hop in (b"connection", b"keep-alive", b"x-hop", b"te", b"transfer-encoding",
                b"upgrade", b"proxy-authorization"):
        assert hop not in sent


def test_headers_the_upstream_leg_writes_itself_are_dropped() -> None:
    sent = forwarded([(b"host", b"shop.example"), (b"content-length", b"3"),
                      (b"x-request-id", b"from client"), (b"expect", b"100-continue")])
    assert {b"host", b"content-length", b"x-request-id", b"expect"}.isdisjoint(sent)


def test_the_client_is_appended_to_the_forwarded_for_chain() -> None:
    assert forwarded([])[b"x-forwarded-for"] == b"10.0.0.9"
    chain = forwarded([(b"x-forwarded-for", b"1.1.1.1, 2.2.2.2")])[b"x-forwarded-for"]
    assert chain == b"1.1.1.1, 2.2.2.2, 10.0.0.9"


def test_proto_prefix_and_host_say_what_the_client_asked_for() -> None:
    sent = forwarded([(b"host", b"shop.example"), (b"x-forwarded-proto", b"gopher")],
                     scheme="https")
    assert sent[b"x-forwarded-proto"] == b"https"
    assert sent[b"x-forwarded-host"] == b"shop.example"
    assert sent[b"x-forwarded-prefix"] == b"/api/data"


def test_a_forwarded_host_set_in_front_of_the_gateway_is_kept() -> None:
    sent = forwarded([(b"host", b"gateway:8080"), (b"x-forwarded-host", b"shop.example")])
    assert sent[b"x-forwarded-host"] == b"shop.example"


def test_repeated_headers_are_all_relayed_back() -> None:
    relayed = response_headers([(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"),
                                (b"Content-Length", b"9"), (b"Date", b"x"), (b"Server", b"y"),
                                (b"Transfer-Encoding", b"chunked"),
                                (b"Content-Encoding", b"gzip")], keep_length=False)
    assert relayed == [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"),
                       (b"content-encoding", b"gzip")]


def test_a_head_answer_keeps_its_length() -> None:
    relayed = response_headers([(b"content-length", b"9")], keep_length=True)
    assert relayed == [(b"content-length", b"9")]


@pytest.mark.parametrize(("raw", "split"), [
    (b"/api/data/items/7", ("data", "/items/7")),
    (b"/api/data/", ("data", "/")),
    (b"/api/data", ("data", "/")),
    (b"/api/data/a%2Fb/c%20d", ("data", "/a%2Fb/c%20d")),
    (b"/api/d%61ta/x", ("d%61ta", "/x")),
    (b"/other/data", None),
])
def test_the_path_splits_into_app_and_rest_as_encoded(
        raw: bytes, split: tuple[str, str] | None) -> None:
    assert split_api_path(raw) == split
