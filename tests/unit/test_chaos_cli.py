"""``shipyard chaos run`` refuses bad input with exit status 2 and one line naming the file
and what is wrong with it, before it opens the cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.cli import context, main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")
    context.settings.cache_clear()
    yield tmp_path
    context.settings.cache_clear()


def chaos_run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(["chaos", "run", "--env", "staging", *args])
    return int(exited.value.code or 0), capsys.readouterr().err


def test_an_experiment_file_that_is_not_yaml_exits_2_naming_it(home, capsys):
    broken = home / "broken.yaml"
    broken.write_text("title: [unclosed\n")
    code, err = chaos_run(capsys, "--app", "gateway", "--experiment", str(broken))
    assert code == 2
    assert err.startswith(f"error: Invalid value for --experiment: {broken}: not valid YAML")


def test_an_experiment_chaos_toolkit_refuses_exits_2_naming_the_field(home, capsys):
    experiment = home / "no-hypothesis.json"
    experiment.write_text('{"title": "t", "description": "d", "method": []}')
    code, err = chaos_run(capsys, "--app", "gateway", "--experiment", str(experiment))
    assert code == 2
    assert f"{experiment}: steady-state-hypothesis: the gate needs one" in " ".join(err.split())


def test_an_unknown_app_exits_2(home, capsys):
    experiment = home / "x.yaml"
    experiment.write_text("title: t\n")
    code, err = chaos_run(capsys, "--app", "nosuchapp", "--experiment", str(experiment))
    assert code == 2 and "there is no app named 'nosuchapp'" in err


def test_a_var_that_is_not_name_equals_value_exits_2(home, capsys):
    experiment = home / "x.yaml"
    experiment.write_text("title: t\n")
    code, err = chaos_run(capsys, "--app", "gateway", "--experiment", str(experiment),
                          "--var", "novalue")
    assert code == 2 and "'novalue' is not NAME=VALUE" in err
