"""A flood of GitHub deliveries as data, and a sender for it (issue 14).

:func:`build_flood` makes the same deliveries for the same seed: pushes of one allowed
repository, each its own commit (plus replays of some under new delivery ids, and pushes
the webhook ignores), copies of them (same id, same bytes, same signature; some sent at
the same moment as their original, the rest once the original was answered), forged
ones (no signature, a wrong one, one under another secret, or a true signature of
another body) and malformed ones (signed, but not JSON, not a push, a field wrong, a
header missing, too large), each carrying what it must be answered. Every body names a
commit of its own, so a run in the store tells which delivery made it.

:func:`send_flood` sends them over keep-alive connections, a bounded number of jobs in
flight, every request and the whole flood under a deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from shipyard.domain.webhooks import sign
from tests.support.webhooks import CLONE_URL, push_payload

__all__ = ["MALFORMATIONS", "Answer", "Delivery", "Flood", "Job", "Kind", "Malformation",
           "Sent", "build_flood", "group_by_commit", "send_flood"]

Kind = Literal["push", "replay", "ignored", "copy", "forged", "malformed"]
"""``push``: a new commit of the allowed repository on main, which starts a run;
``replay``: the same push under a new delivery id; ``ignored``: a push of another branch
or repository; ``copy``: a delivery sent again; ``forged`` and ``malformed``."""

MAX_BODY_BYTES = 1024 * 1024  # SHIPYARD_WEBHOOK_MAX_BODY_BYTES's default
OTHER_REPOSITORY = "umbrella/labs"
PUSHERS = ("Ada Tester", "Grace Hopper", "José Núñez", "李雷")


@dataclass(frozen=True)
class Delivery:
    """One request of the flood, and what it stands for."""

    kind: Kind
    delivery_id: str | None  # the X-GitHub-Delivery sent, if any
    body: bytes
    headers: dict[str, str]
    commit: str | None = None  # the commit the body names ("after"), if it names one
    copy_of: int | None = None  # copies: the delivery copied
    malformation: Malformation | None = None
    forgery: str = ""  # forged: how


@dataclass(frozen=True)
class Job:
    """Deliveries sent at the same moment, once ``after`` (if any) was answered."""

    indices: tuple[int, ...]
    after: int | None = None


@dataclass(frozen=True)
class Flood:
    deliveries: list[Delivery]
    jobs: list[Job]
    secret: bytes

    def of(self, *kinds: Kind) -> list[int]:
        """The indices of the deliveries of these kinds."""
        return [i for i, d in enumerate(self.deliveries) if d.kind in kinds]


@dataclass(frozen=True)
class Malformation:
    """A signed delivery that is no push Shipyard can take: how it is made, and its
    answer: ``status``, and ``names`` in the error (the field, for a 422)."""

    name: str
    status: int
    names: str
    make: Callable[[dict[str, Any]], bytes]  # a good push payload -> the body sent
    headers: dict[str, str | None] = field(default_factory=dict)  # None drops a header


def _json(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def _without(key: str) -> Callable[[dict[str, Any]], bytes]:
    return lambda p: _json({k: v for k, v in p.items() if k != key})


def _with(**changes: Any) -> Callable[[dict[str, Any]], bytes]:
    return lambda p: _json({**p, **changes})


def _repository(**changes: Any) -> Callable[[dict[str, Any]], bytes]:
    return lambda p: _json({**p, "repository": {**p["repository"], **changes}})


_NOT_JSON = "the body is not valid JSON"

MALFORMATIONS: tuple[Malformation, ...] = (
    Malformation("cut short", 400, _NOT_JSON, lambda p: _json(p)[:-40]),
    Malformation("not UTF-8", 400, _NOT_JSON,
                 lambda p: json.dumps({**p, "pusher": {"name": "Zoë"}},
                                      ensure_ascii=False).encode("latin-1")),
    Malformation("nested past the parser's depth", 400, _NOT_JSON,
                 lambda p: b"[" * 100_000 + b"]" * 100_000),
    Malformation("a number of 5000 digits", 400, _NOT_JSON,
                 lambda p: b'{"ref": ' + b"7" * 5000 + b"}"),
    Malformation("a list, not an object", 422, "(body)", lambda p: _json([p])),
    Malformation("no ref", 422, "ref", _without("ref")),
    Malformation("a ref that is a number", 422, "ref", _with(ref=7)),
    Malformation("a ref that is no full ref", 422, "ref", _with(ref="main")),
    Malformation("a ref of 300 characters", 422, "ref", _with(ref="refs/heads/" + "r" * 289)),
    Malformation("a ref with a line break", 422, "ref",
                 _with(ref="refs/heads/main\nINFO webhook: forged line")),
    Malformation("a ref with a right-to-left override", 422, "ref",
                 _with(ref="refs/heads/ma\u202ein")),
    Malformation("an after that is no sha", 422, "after", _with(after="HEAD")),
    Malformation("a before in capitals", 422, "before", _with(before="A" * 40)),
    Malformation("no repository", 422, "repository", _without("repository")),
    Malformation("no clone URL", 422, "repository.clone_url",
                 lambda p: _json({**p, "repository": {"full_name": "acme/shop"}})),
    Malformation("a clone URL over http", 422, "repository.clone_url",
                 _repository(clone_url="http://github.com/acme/shop.git")),
    Malformation("a clone URL on another host", 422, "repository.clone_url",
                 _repository(clone_url="https://git.evil.example/acme/shop.git")),
    Malformation("a clone URL that is a git option", 422, "repository.clone_url",
                 _repository(clone_url="--upload-pack=touch /tmp/owned")),
    Malformation("a clone URL on loopback", 422, "repository.clone_url",
                 _repository(clone_url="https://127.0.0.1/acme/shop.git")),
    Malformation("a clone URL of 1001 characters", 422, "repository.clone_url",
                 _repository(clone_url="https://github.com/acme/" + "s" * 977)),
    Malformation("a full name that is no owner/name", 422, "repository.full_name",
                 _repository(full_name="shop")),
    Malformation("deleted as a string", 422, "deleted", _with(deleted="no")),
    Malformation("commits as an object", 422, "commits", _with(commits={"id": "x"})),
    Malformation("a commit that is a string", 422, "commits[0]", _with(commits=["abc"])),
    Malformation("added files as a string", 422, "commits[0].added",
                 _with(commits=[{"id": "c" * 40, "added": "apps/x.py"}])),
    # Names the store keeps as the run's actor: a lone surrogate cannot be encoded for
    # either database, a NUL is refused by PostgreSQL, an ESC could drive a terminal.
    Malformation("a pusher named by a lone surrogate", 422, "pusher.name",
                 _with(pusher={"name": "\ud800"})),
    Malformation("a pusher named with a NUL", 422, "pusher.name",
                 _with(pusher={"name": "ada\u0000"})),
    Malformation("a sender login with a terminal escape", 422, "sender.login",
                 _with(pusher=None, sender={"login": "\u001b[31mroot"})),
    Malformation("no delivery id", 400, "X-GitHub-Delivery is missing", _json,
                 {"X-GitHub-Delivery": None}),
    Malformation("a delivery id that is no id", 400, "X-GitHub-Delivery must be", _json,
                 {"X-GitHub-Delivery": "../../etc/passwd"}),
    Malformation("no event", 400, "X-GitHub-Event is missing", _json,
                 {"X-GitHub-Event": None}),
    Malformation("a form with two payloads", 400, "exactly one 'payload' field",
                 lambda p: b"payload=%7B%7D&payload=%7B%7D",
                 {"Content-Type": "application/x-www-form-urlencoded"}),
    Malformation("a body past the limit", 413, "SHIPYARD_WEBHOOK_MAX_BODY_BYTES",
                 _with(padding="x" * MAX_BODY_BYTES)),
)

FORGERIES = ("unsigned", "zeros", "random", "sha1", "not hex", "another secret",
             "another body's signature", "another delivery's id and signature",
             "signed, then changed")


class _Maker:
    """Deterministic ids, commits and bodies from one seeded generator."""

    def __init__(self, rng: random.Random, secret: bytes) -> None:
        self.rng = rng
        self.secret = secret

    def delivery_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def sha(self) -> str:
        return f"{self.rng.getrandbits(160):040x}"

    def payload(self, *, ref: str = "refs/heads/main", full_name: str = "acme/shop",
                clone_url: str = CLONE_URL) -> dict[str, Any]:
        return push_payload(ref, after=self.sha(), before=self.sha(), clone_url=clone_url,
                            full_name=full_name,
                            files=(f"apps/discovery/discovery/m{self.rng.randrange(99)}.py",),
                            pusher={"name": self.rng.choice(PUSHERS),
                                    "email": "dev@example.com"})

    def headers(self, body: bytes, delivery_id: str | None) -> dict[str, str]:
        """GitHub's headers for ``body``, signed with the webhook's secret."""
        headers = {"X-GitHub-Event": "push", "Content-Type": "application/json",
                   "User-Agent": "GitHub-Hookshot/flood",
                   "X-Hub-Signature-256": sign(self.secret, body)}
        if delivery_id is not None:
            headers["X-GitHub-Delivery"] = delivery_id
        return headers

    def delivery(self, kind: Kind, payload: dict[str, Any], **extra: Any) -> Delivery:
        body = _json(payload)
        delivery_id = self.delivery_id()
        return Delivery(kind, delivery_id, body, self.headers(body, delivery_id),
                        commit=payload["after"], **extra)


def _valid(maker: _Maker, count: int) -> list[Delivery]:
    """New pushes, with about one in 22 replayed under a new id and as many ignored (half
    another branch, half another repository)."""
    others = count // 22
    pushes: list[Delivery] = []
    made: list[Delivery] = []
    for _ in range(count - 2 * others):
        push = maker.delivery("push", maker.payload())
        pushes.append(push)
        made.append(push)
    for _ in range(others):
        first = maker.rng.choice(pushes)
        delivery_id = maker.delivery_id()
        made.append(Delivery("replay", delivery_id, first.body,
                             maker.headers(first.body, delivery_id), commit=first.commit))
    for i in range(others):
        payload = (maker.payload(ref=f"refs/heads/feature/f{i}") if i % 2 else
                   maker.payload(full_name=OTHER_REPOSITORY,
                                 clone_url=f"https://github.com/{OTHER_REPOSITORY}.git"))
        made.append(maker.delivery("ignored", payload))
    return made


def _forged(maker: _Maker, count: int, valid: list[Delivery]) -> list[Delivery]:
    """Pushes that would each start a run were their signature not checked."""
    made = []
    for i in range(count):
        how = FORGERIES[i % len(FORGERIES)]
        payload = maker.payload()
        body = _json(payload)
        delivery_id: str | None = maker.delivery_id()
        signature: str | None
        honest = maker.rng.choice(valid)
        if how == "unsigned":
            signature = None
        elif how == "zeros":
            signature = "sha256=" + "0" * 64
        elif how == "random":
            signature = f"sha256={maker.rng.getrandbits(256):064x}"
        elif how == "sha1":
            signature = f"sha1={maker.rng.getrandbits(160):040x}"
        elif how == "not hex":
            signature = "sha256=" + "z" * 64
        elif how == "another secret":
            signature = sign(b"not the webhook's secret", body)
        elif how == "another body's signature":
            signature = honest.headers["X-Hub-Signature-256"]
        elif how == "another delivery's id and signature":
            delivery_id, signature = honest.delivery_id, honest.headers["X-Hub-Signature-256"]
        else:  # signed, then changed: the same push, another commit
            signature = sign(maker.secret, body)
            payload = {**payload, "after": maker.sha()}
            body = _json(payload)
        headers = maker.headers(body, delivery_id)
        if signature is None:
            del headers["X-Hub-Signature-256"]
        else:
            headers["X-Hub-Signature-256"] = signature
        made.append(Delivery("forged", delivery_id, body, headers, commit=payload["after"],
                             forgery=how))
    return made


def _malformed(maker: _Maker, count: int) -> list[Delivery]:
    made = []
    for i in range(count):
        malformation = MALFORMATIONS[i % len(MALFORMATIONS)]
        payload = maker.payload()
        body = malformation.make(payload)
        delivery_id = maker.delivery_id()
        headers = maker.headers(body, delivery_id)
        for name, value in malformation.headers.items():
            if value is None:
                headers.pop(name, None)
            else:
                headers[name] = value
        made.append(Delivery("malformed", headers.get("X-GitHub-Delivery"), body, headers,
                             commit=payload["after"], malformation=malformation))
    return made


def build_flood(total: int, *, seed: int, secret: bytes) -> Flood:
    """``total`` deliveries: 30 % copies (a third of them sent with their original), 10 %
    forged, 5 % malformed, the rest valid; their order shuffled by ``seed``."""
    rng = random.Random(seed)  # noqa: S311 -- a repeatable flood, not a secret
    maker = _Maker(rng, secret)
    copies, forged, malformed = round(total * 0.30), round(total * 0.10), round(total * 0.05)
    valid = _valid(maker, total - copies - forged - malformed)
    deliveries = [*valid, *_forged(maker, forged, valid), *_malformed(maker, malformed)]

    def copy(of: int) -> int:
        deliveries.append(Delivery("copy", valid[of].delivery_id, valid[of].body,
                                   valid[of].headers, commit=valid[of].commit, copy_of=of))
        return len(deliveries) - 1

    together: dict[int, list[int]] = {}  # original: its copies sent with it
    at_once = copies // 3
    for original in rng.sample(range(len(valid)), k=at_once):
        if at_once <= 0:
            break
        size = min(rng.randint(1, 3), at_once)
        together[original] = [copy(original) for _ in range(size)]
        at_once -= size
    late = [copy(rng.randrange(len(valid)))
            for _ in range(copies - sum(map(len, together.values())))]

    jobs = [Job((i, *together.get(i, ()))) for i in range(len(valid))]
    jobs += [Job((i,)) for i in range(len(valid), len(valid) + forged + malformed)]
    rng.shuffle(jobs)
    # A late copy goes anywhere after its original, and waits for its answer.
    place = {j.indices[0]: n for n, j in enumerate(jobs)}
    keyed = [(float(n), j) for n, j in enumerate(jobs)]
    for index in late:
        copied = deliveries[index].copy_of
        assert copied is not None
        keyed.append((rng.uniform(place[copied] + 0.5, len(jobs)), Job((index,), copied)))
    keyed.sort(key=lambda pair: pair[0])
    return Flood(deliveries, [j for _, j in keyed], secret)


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer (the error says why)
    body: dict[str, Any] | None
    seconds: float
    error: str = ""

    @property
    def problem(self) -> str:
        """The error the answer gives, or ""."""
        return str((self.body or {}).get("error", ""))


@dataclass(frozen=True)
class Sent:
    answers: list[Answer | None]  # by delivery; None: never sent (the deadline passed)
    seconds: float
    timed_out: bool
    cpu_seconds: float  # this process's, sending and reading the answers


async def send_flood(url: str, flood: Flood, *, in_flight: int, request_seconds: float,
                     flood_seconds: float) -> Sent:
    """Send every job of ``flood`` to ``url``'s webhook, ``in_flight`` jobs at a time over
    keep-alive connections; each request gets ``request_seconds`` (a timeout is an answer
    with an error), the whole flood ``flood_seconds`` (past it, what was not answered is
    None and ``timed_out`` is set)."""
    deliveries = flood.deliveries
    answers: list[Answer | None] = [None] * len(deliveries)
    answered = [asyncio.Event() for _ in deliveries]
    widest = max(len(j.indices) for j in flood.jobs)
    jobs: Iterator[Job] = iter(flood.jobs)
    # An idle connection is let go after a second: well before uvicorn closes it (5 s),
    # so no request is written into a connection the server is closing at that moment
    # (a race of HTTP keep-alive itself, answered by a reset rather than by the ui).
    limits = httpx.Limits(max_connections=in_flight * widest,
                          max_keepalive_connections=in_flight * widest,
                          keepalive_expiry=1.0)

    async with httpx.AsyncClient(base_url=url, timeout=request_seconds,
                                 limits=limits) as client:

        async def deliver(index: int) -> None:
            delivery = deliveries[index]
            began = time.perf_counter()
            try:
                response = await client.post("/hooks/github", content=delivery.body,
                                             headers=delivery.headers)
                try:
                    body = response.json()
                except ValueError:
                    body = {"error": f"not JSON: {response.text[:200]!r}"}
                answers[index] = Answer(response.status_code,
                                        body if isinstance(body, dict) else {"json": body},
                                        time.perf_counter() - began)
            except httpx.HTTPError as err:
                answers[index] = Answer(None, None, time.perf_counter() - began,
                                        f"{type(err).__name__}: {err}")
            finally:
                answered[index].set()

        async def worker() -> None:
            for job in jobs:  # shared: each job goes to one worker
                if job.after is not None:
                    await answered[job.after].wait()
                await asyncio.gather(*(deliver(i) for i in job.indices))

        began, cpu = time.perf_counter(), time.process_time()
        timed_out = False
        try:
            async with asyncio.timeout(flood_seconds):
                await asyncio.gather(*(worker() for _ in range(in_flight)))
        except TimeoutError:
            timed_out = True
        return Sent(answers, time.perf_counter() - began, timed_out,
                    time.process_time() - cpu)


def group_by_commit(flood: Flood, kinds: tuple[Kind, ...]) -> dict[str, list[int]]:
    """The deliveries of ``kinds`` by the commit their body names."""
    groups: dict[str, list[int]] = {}
    for index in itertools.chain.from_iterable(flood.of(k) for k in kinds):
        commit = flood.deliveries[index].commit
        assert commit is not None
        groups.setdefault(commit, []).append(index)
    return groups
