"""Environment parsing: defaults, accepted forms, and errors that name the variable."""

from pathlib import Path

import pytest
from servicekit.config import (
    FaultConfig,
    env_bool,
    env_choice,
    env_list,
    env_non_negative_float,
    env_non_negative_int,
    env_port,
    env_positive_float,
    env_positive_int,
    env_probability,
)
from servicekit.testing import config_for_tests


def test_unset_and_empty_variables_take_the_default() -> None:
    assert env_positive_float({}, "LEASE_SECONDS", 30.0) == 30.0
    assert env_positive_float({"LEASE_SECONDS": " "}, "LEASE_SECONDS", 30.0) == 30.0


def test_positive_float_rejects_zero_naming_the_variable_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"LEASE_SECONDS='0' is invalid.*greater than 0.*unset"):
        env_positive_float({"LEASE_SECONDS": "0"}, "LEASE_SECONDS", 30.0)


@pytest.mark.parametrize("raw", ["nan", "inf", "-1", "ten"])
def test_non_negative_float_rejects_what_is_not_a_finite_number_of_at_least_zero(
    raw: str,
) -> None:
    with pytest.raises(ValueError, match="DRAIN_SECONDS"):
        env_non_negative_float({"DRAIN_SECONDS": raw}, "DRAIN_SECONDS", 5.0)


def test_non_negative_float_accepts_zero() -> None:
    assert env_non_negative_float({"DRAIN_SECONDS": "0"}, "DRAIN_SECONDS", 5.0) == 0.0


@pytest.mark.parametrize(("raw", "ok"), [("0", True), ("1", True), ("0.25", True),
                                         ("1.01", False), ("-0.1", False)])
def test_probability_accepts_only_zero_to_one(raw: str, ok: bool) -> None:
    env = {"FAULT_ERROR_RATE": raw}
    if ok:
        assert env_probability(env, "FAULT_ERROR_RATE", 0.0) == float(raw)
    else:
        with pytest.raises(ValueError, match=r"FAULT_ERROR_RATE.*probability between 0 and 1"):
            env_probability(env, "FAULT_ERROR_RATE", 0.0)


@pytest.mark.parametrize("raw", ["0", "65536", "80.5", "http", "²"])
def test_port_rejects_what_is_not_1_to_65535(raw: str) -> None:
    with pytest.raises(ValueError, match=r"PORT.*TCP port"):
        env_port({"PORT": raw}, "PORT", 8080)


def test_positive_int_rejects_zero() -> None:
    with pytest.raises(ValueError, match="MAX_BODY_BYTES"):
        env_positive_int({"MAX_BODY_BYTES": "0"}, "MAX_BODY_BYTES", 1)


def test_non_negative_int_accepts_zero() -> None:
    assert env_non_negative_int({"RETRIES": "0"}, "RETRIES", 1) == 0


@pytest.mark.parametrize("raw", ["-1", "1.5", "some", "²"])
def test_non_negative_int_rejects_what_is_not_a_whole_number_naming_the_fix(raw: str) -> None:
    with pytest.raises(ValueError, match=r"RETRIES=.* is invalid.*whole number of at least 0"
                                         r".*unset it to use the default \(1\)"):
        env_non_negative_int({"RETRIES": raw}, "RETRIES", 1)


def test_choice_matches_in_any_case_and_answers_the_choice_as_spelled() -> None:
    assert env_choice({"MODE": " Never "}, "MODE", ("always", "never"), "always") == "never"
    assert env_choice({"MODE": ""}, "MODE", ("always", "never"), "always") == "always"


def test_choice_rejects_another_word_listing_the_choices() -> None:
    with pytest.raises(ValueError, match=r"MODE='sometimes' is invalid.*one of always, never;"
                                         r" set it to e.g. always"):
        env_choice({"MODE": "sometimes"}, "MODE", ("always", "never"), "always")


@pytest.mark.parametrize(("raw", "value"), [("TRUE", True), ("yes", True), ("on", True),
                                            ("1", True), ("False", False), ("0", False)])
def test_bool_reads_the_usual_words(raw: str, value: bool) -> None:
    assert env_bool({"FLAG": raw}, "FLAG", not value) is value


def test_bool_rejects_other_words() -> None:
    with pytest.raises(ValueError, match=r"FLAG='maybe'.*true or false"):
        env_bool({"FLAG": "maybe"}, "FLAG", False)


def test_list_splits_on_commas_and_drops_blanks() -> None:
    assert env_list({"L": " a, b ,,c "}, "L") == ("a", "b", "c")


def test_service_config_defaults() -> None:
    config = config_for_tests()
    assert (config.app_version, config.port, config.max_body_bytes, config.drain_seconds,
            config.discovery_urls) == ("dev", 8080, 65536, 5.0, ())
    assert config.host == "0.0.0.0"  # noqa: S104 - all interfaces: the pod IP is the way in


def test_instance_id_defaults_to_the_host_name_and_address_to_the_pod_ip() -> None:
    config = config_for_tests()
    assert (config.instance_id, config.advertise_host) == ("test-instance", "10.1.2.3")


def test_a_host_name_that_is_no_dns_label_becomes_one() -> None:
    from servicekit.config import ServiceConfig

    config = ServiceConfig.from_env({}, hostname=lambda: "Jane.Local",
                                    primary_address=lambda: "10.0.0.1")
    assert config.instance_id == "jane-local"


def test_explicit_instance_id_must_be_a_dns_label() -> None:
    with pytest.raises(ValueError, match="INSTANCE_ID='Orders_1'"):
        config_for_tests(INSTANCE_ID="Orders_1")


def test_app_version_must_be_tag_like() -> None:
    with pytest.raises(ValueError, match="APP_VERSION"):
        config_for_tests(APP_VERSION="1.0 beta")


def test_discovery_url_accepts_several_base_urls_without_trailing_slashes() -> None:
    config = config_for_tests(DISCOVERY_URL="http://discovery:8761/, http://10.0.0.9:8761")
    assert config.discovery_urls == ("http://discovery:8761", "http://10.0.0.9:8761")


@pytest.mark.parametrize("url", ["discovery:8761", "http://discovery:8761/eureka",
                                 "ftp://discovery"])
def test_discovery_url_must_be_a_base_url(url: str) -> None:
    with pytest.raises(ValueError, match=r"DISCOVERY_URL item .* base URL"):
        config_for_tests(DISCOVERY_URL=url)


def test_log_level_is_checked() -> None:
    with pytest.raises(ValueError, match="LOG_LEVEL"):
        config_for_tests(LOG_LEVEL="chatty")


def test_log_level_is_read_in_any_case() -> None:
    assert config_for_tests(LOG_LEVEL="debug").log_level == "DEBUG"


def test_faults_are_off_by_default() -> None:
    assert not config_for_tests().faults.active


def test_fault_variables_are_read() -> None:
    config = config_for_tests(FAULT_ERROR_RATE="0.5", FAULT_LATENCY_MS="200",
                         FAULT_LATENCY_JITTER_MS="50", FAULT_READINESS_FAIL="true",
                         FAULT_CONFIG_FILE="/etc/faults/faults.env")
    assert config.faults == FaultConfig(0.5, 200.0, 50.0, True)
    assert config.fault_config_file == Path("/etc/faults/faults.env")


def test_fault_config_keeps_the_base_value_of_an_absent_variable() -> None:
    base = FaultConfig(error_rate=0.5, latency_ms=100)
    assert FaultConfig.from_env({"FAULT_LATENCY_MS": "0"}, base=base) == FaultConfig(0.5, 0)
