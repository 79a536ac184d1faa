"""Settings come from the environment; a bad value is refused naming the variable."""

from pathlib import Path

import pytest
from streaming.config import Settings


def test_defaults_keep_data_in_the_working_directory_and_fsync_every_append() -> None:
    settings = Settings.from_env({})
    assert settings.data_dir == Path("streaming-data")
    assert settings.fsync
    assert settings.aggregation_topic == "views"
    assert settings.aggregation_allowed_lateness_seconds == 30


def test_empty_values_mean_the_default() -> None:
    assert Settings.from_env({"DATA_DIR": " ", "FSYNC_POLICY": ""}) == Settings()


def test_variables_override_the_defaults() -> None:
    settings = Settings.from_env({"DATA_DIR": "/var/lib/streaming", "FSYNC_POLICY": "never",
                                  "AGGREGATION_ALLOWED_LATENESS_SECONDS": "0"})
    assert settings.data_dir == Path("/var/lib/streaming")
    assert not settings.fsync
    assert settings.aggregation_allowed_lateness_seconds == 0


@pytest.mark.parametrize(("env", "message"), [
    ({"FSYNC_POLICY": "sometimes"}, "FSYNC_POLICY='sometimes' is invalid"),
    ({"DEFAULT_PARTITIONS": "0"}, "DEFAULT_PARTITIONS='0' is invalid"),
    ({"DEFAULT_PARTITIONS": "9", "MAX_PARTITIONS": "8"}, "at most MAX_PARTITIONS"),
    ({"AGGREGATION_TOPIC": "../x"}, "AGGREGATION_TOPIC='../x' is invalid"),
    ({"SEGMENT_BYTES": "5000000000"}, "SEGMENT_BYTES='5000000000' is invalid"),
])
def test_a_bad_value_is_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Settings.from_env(env)
