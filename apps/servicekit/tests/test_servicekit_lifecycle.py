"""Readiness conditions and drain hooks, on a ServiceState alone."""

import asyncio
import threading

import pytest
from servicekit.config import FaultConfig
from servicekit.faults import FaultSource
from servicekit.lifecycle import ReadinessCheck, ServiceState
from servicekit.metrics import ServiceMetrics


def state(*checks: ReadinessCheck, faults: FaultConfig | None = None) -> ServiceState:
    service = ServiceState("orders", "1.0", FaultSource(faults or FaultConfig()),
                           ServiceMetrics("orders", "1.0"), checks)
    service.started = True
    return service


def failed(service: ServiceState) -> dict[str, str]:
    return asyncio.run(service.readiness()).failed


def test_a_started_service_without_checks_is_ready() -> None:
    assert asyncio.run(state().readiness()).ready


def test_every_failing_condition_is_listed_not_only_the_first() -> None:
    service = state(ReadinessCheck("db", lambda: False),
                    faults=FaultConfig(readiness_fail=True))
    service.draining = True
    assert set(failed(service)) == {"draining", "fault-injection", "db"}


def test_an_async_check_is_awaited() -> None:
    async def db_up() -> bool:
        return True

    assert failed(state(ReadinessCheck("db", db_up))) == {}


def test_a_check_that_raises_fails_with_the_error() -> None:
    def db_up() -> bool:
        raise ConnectionError("refused")

    assert failed(state(ReadinessCheck("db", db_up))) == {
        "db": "check raised ConnectionError: refused"}


def test_a_check_that_does_not_answer_in_time_fails() -> None:
    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    assert failed(state(ReadinessCheck("db", hangs, timeout_seconds=0.01))) == {
        "db": "no answer within 0.01 s"}


def test_a_blocking_check_runs_off_the_event_loop_and_its_timeout_holds() -> None:
    released = threading.Event()

    def blocks() -> bool:
        released.wait(5)
        return True

    async def probe_while_the_loop_stays_free() -> tuple[dict[str, str], bool]:
        service = state(ReadinessCheck("db", blocks, timeout_seconds=0.05))
        readiness = asyncio.create_task(service.readiness())
        await asyncio.sleep(0)  # the loop runs other work while the check blocks
        loop_was_free = not readiness.done()
        result = await readiness
        released.set()
        return result.failed, loop_was_free

    failures, loop_was_free = asyncio.run(probe_while_the_loop_stays_free())
    assert failures == {"db": "no answer within 0.05 s"}
    assert loop_was_free


def test_a_readiness_fault_is_counted() -> None:
    service = state(faults=FaultConfig(readiness_fail=True))
    failed(service)
    assert service.metrics.registry.get_sample_value(
        "orders_faults_injected_total", {"kind": "readiness", "version": "1.0"}) == 1.0


@pytest.mark.parametrize("name", ["draining", "db"])
def test_check_names_must_be_unique(name: str) -> None:
    with pytest.raises(ValueError, match="is taken"):
        state(ReadinessCheck("db", lambda: True)).add_readiness_check(
            ReadinessCheck(name, lambda: True))


def test_drain_hooks_run_in_order_after_readiness_turns_false() -> None:
    service = state()
    seen: list[str] = []

    async def first() -> None:
        seen.append(f"first, draining={service.draining}")

    async def second() -> None:
        seen.append("second")

    service.on_drain("first", first)
    service.on_drain("second", second)
    asyncio.run(service.begin_drain())
    assert seen == ["first, draining=True", "second"]


def test_a_failing_drain_hook_does_not_stop_the_next() -> None:
    service = state()
    seen: list[str] = []

    async def broken() -> None:
        raise RuntimeError("registry gone")

    async def after() -> None:
        seen.append("after")

    service.on_drain("broken", broken)
    service.on_drain("after", after)
    asyncio.run(service.begin_drain())
    assert seen == ["after"]
