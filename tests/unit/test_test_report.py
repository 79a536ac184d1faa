"""Reading JUnit XML (as pytest, Surefire and most runners write it) into a summary."""

from __future__ import annotations

import pytest

from shipyard.domain.test_report import (
    InvalidTestReport,
    TestCaseFailure,
    TestReport,
    parse_junit_xml,
)

# What `pytest --junitxml` writes: a <testsuites> root around one <testsuite>, whose
# attributes here are deliberately stale (the parser must count the cases themselves).
PYTEST_REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests">
  <testsuite name="pytest" errors="0" failures="0" skipped="0" tests="99" time="1.234">
    <testcase classname="tests.test_api" name="test_health" time="0.01"/>
    <testcase classname="tests.test_api" name="test_list" time="0.02"/>
    <testcase classname="tests.test_api" name="test_create" time="0.03">
      <failure message="assert 500 == 201">
        def test_create():
    &gt;   assert response.status_code == 201
      </failure>
    </testcase>
    <testcase classname="tests.test_db" name="test_connect" time="0.00">
      <error message="failed on setup with &quot;OperationalError&quot;">fixture db</error>
    </testcase>
    <testcase classname="tests.test_db" name="test_slow" time="0.00">
      <skipped type="pytest.skip" message="slow">skipped</skipped>
    </testcase>
  </testsuite>
</testsuites>
"""


def test_a_pytest_report_is_counted_from_its_cases() -> None:
    report = parse_junit_xml(PYTEST_REPORT)

    assert (report.passed, report.failed, report.errors, report.skipped) == (2, 1, 1, 1)
    assert report.total == 5
    assert report.duration_seconds == 1.234


def test_failures_and_errors_carry_the_test_id_message_and_detail() -> None:
    report = parse_junit_xml(PYTEST_REPORT)

    assert report.failures == (
        TestCaseFailure(
            test_id="tests.test_api::test_create",
            kind="failure",
            message="assert 500 == 201",
            detail="def test_create():\n    >   assert response.status_code == 201",
        ),
        TestCaseFailure(
            test_id="tests.test_db::test_connect",
            kind="error",
            message='failed on setup with "OperationalError"',
            detail="fixture db",
        ),
    )


def test_a_single_testsuite_root_is_accepted() -> None:
    report = parse_junit_xml(
        '<testsuite time="0.5"><testcase name="a"/><testcase name="b"/></testsuite>'
    )
    assert (report.passed, report.total, report.duration_seconds) == (2, 2, 0.5)


def test_several_suites_add_up_counts_and_durations() -> None:
    report = parse_junit_xml(
        "<testsuites>"
        '<testsuite time="1.5"><testcase name="a"/></testsuite>'
        '<testsuite time="2.25"><testcase name="b"><failure/></testcase></testsuite>'
        "</testsuites>"
    )
    assert (report.passed, report.failed, report.duration_seconds) == (1, 1, 3.75)


def test_cases_in_nested_suites_are_counted() -> None:
    report = parse_junit_xml(
        "<testsuites><testsuite>"
        '<testsuite name="inner"><testcase name="a"/><testcase name="b"><skipped/></testcase>'
        "</testsuite></testsuite></testsuites>"
    )
    assert (report.passed, report.skipped) == (1, 1)


def test_a_test_id_without_classname_is_just_the_name() -> None:
    report = parse_junit_xml('<testsuite><testcase name="solo"><error/></testcase></testsuite>')
    assert report.failures == (TestCaseFailure("solo", "error", "", ""),)


@pytest.mark.parametrize("time", ["", "abc", "1,5"])
def test_an_unreadable_duration_counts_as_zero(time: str) -> None:
    report = parse_junit_xml(f'<testsuite time="{time}"><testcase name="a"/></testsuite>')
    assert report.duration_seconds == 0.0


def test_a_missing_duration_counts_as_zero() -> None:
    assert parse_junit_xml('<testsuite><testcase name="a"/></testsuite>').duration_seconds == 0


@pytest.mark.parametrize("text", ["", "not xml at all", "<testsuite>", "{\"tests\": 1}"])
def test_text_that_is_not_xml_is_refused(text: str) -> None:
    with pytest.raises(InvalidTestReport, match=r"^not XML: "):
        parse_junit_xml(text)


def test_xml_that_is_not_a_junit_report_is_refused_naming_its_root() -> None:
    with pytest.raises(InvalidTestReport,
                       match=r"expected a <testsuites> or <testsuite> root element, found <html>"):
        parse_junit_xml("<html><body/></html>")


@pytest.mark.parametrize(
    ("counts", "ok"),
    [
        ((3, 0, 0, 0), True),
        ((3, 0, 0, 2), True),
        ((3, 1, 0, 0), False),
        ((3, 0, 1, 0), False),
        ((0, 0, 0, 4), False),  # nothing ran: not a pass
        ((0, 0, 0, 0), False),
    ],
)
def test_a_report_is_ok_only_when_something_passed_and_nothing_broke(
    counts: tuple[int, int, int, int], ok: bool
) -> None:
    assert TestReport(*counts, duration_seconds=0.0, failures=()).ok is ok


@pytest.mark.parametrize(
    ("counts", "summary"),
    [
        ((12, 0, 0, 0), "12 passed in 0.50s"),
        ((12, 1, 0, 2), "12 passed, 1 failed, 2 skipped in 0.50s"),
        ((0, 0, 3, 0), "0 passed, 3 errors in 0.50s"),
    ],
)
def test_the_summary_names_only_the_counts_that_happened(
    counts: tuple[int, int, int, int], summary: str
) -> None:
    assert TestReport(*counts, duration_seconds=0.5, failures=()).summary() == summary


def test_the_summary_of_a_parsed_report() -> None:
    assert parse_junit_xml(PYTEST_REPORT).summary() == (
        "2 passed, 1 failed, 1 errors, 1 skipped in 1.23s"
    )
