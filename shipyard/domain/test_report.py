"""Reading a JUnit XML report into a summary a stage can show.

JUnit XML is what pytest (``--junitxml``), Maven Surefire and most runners emit, so a test
stage records the same summary whatever ran. Parsing is pure: the caller reads the file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

__all__ = ["InvalidTestReport", "TestCaseFailure", "TestReport", "parse_junit_xml"]


class InvalidTestReport(ValueError):
    """The text is not a JUnit XML report."""


@dataclass(frozen=True, slots=True)
class TestCaseFailure:
    """One failed or errored test case."""

    __test__ = False  # not a pytest test class, despite the name

    test_id: str
    kind: str  # "failure" or "error"
    message: str
    detail: str


@dataclass(frozen=True, slots=True)
class TestReport:
    """Counts and failures of one test run."""

    __test__ = False

    passed: int
    failed: int
    errors: int
    skipped: int
    duration_seconds: float
    failures: tuple[TestCaseFailure, ...]

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors + self.skipped

    @property
    def ok(self) -> bool:
        """True when at least one test ran and none failed or errored."""
        return self.failed == 0 and self.errors == 0 and self.passed > 0

    def summary(self) -> str:
        """One line for a stage message, e.g. ``12 passed, 1 failed, 2 skipped``."""
        parts = [f"{self.passed} passed"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.errors:
            parts.append(f"{self.errors} errors")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        return ", ".join(parts) + f" in {self.duration_seconds:.2f}s"


def parse_junit_xml(text: str) -> TestReport:
    """Summarise a JUnit XML document (``<testsuites>`` or a single ``<testsuite>``).

    Counts are taken from the test cases themselves, not the suite attributes, which some
    runners leave stale. Raises :class:`InvalidTestReport` for anything else.
    """
    try:
        root = ET.fromstring(text)  # noqa: S314 - see the module comment on trust
    except ET.ParseError as err:
        raise InvalidTestReport(f"not XML: {err}") from err
    if root.tag not in ("testsuites", "testsuite"):
        raise InvalidTestReport(
            f"expected a <testsuites> or <testsuite> root element, found <{root.tag}>"
        )
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    passed = failed = errors = skipped = 0
    duration = 0.0
    failures: list[TestCaseFailure] = []
    for suite in suites:
        duration += _seconds(suite.get("time"))
        for case in suite.iter("testcase"):
            test_id = "::".join(p for p in (case.get("classname"), case.get("name")) if p)
            outcome = next(
                (child for child in case if child.tag in ("failure", "error", "skipped")), None
            )
            if outcome is None:
                passed += 1
            elif outcome.tag == "skipped":
                skipped += 1
            else:
                if outcome.tag == "failure":
                    failed += 1
                else:
                    errors += 1
                failures.append(
                    TestCaseFailure(
                        test_id=test_id,
                        kind=outcome.tag,
                        message=outcome.get("message", ""),
                        detail=(outcome.text or "").strip(),
                    )
                )
    return TestReport(passed, failed, errors, skipped, round(duration, 3), tuple(failures))


def _seconds(raw: str | None) -> float:
    try:
        return float(raw) if raw else 0.0
    except ValueError:
        return 0.0
