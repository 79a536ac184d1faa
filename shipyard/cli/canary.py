"""``shipyard canary judge | plan | backtest``: Kayenta's judge on metric sets in files,
the analysis window a canary needs, and a config's error rates on canaries of known outcome.

Judging prints JSON and exits 0 whatever the verdict (the verdict is in the JSON); bad input
(a file that cannot be read, is not JSON, or holds a bad config or series) is one line
naming the file and the field, exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from shipyard.cli import app
from shipyard.cli.render import duration

if TYPE_CHECKING:
    from shipyard.domain.canary_judge import CanaryConfig

__all__ = ["canary"]

canary = typer.Typer(help="Kayenta's canary judge offline: judge metric sets, plan the "
                     "analysis window, backtest a config.", no_args_is_help=True)
app.add_typer(canary, name="canary")

Series = dict[str, list[float | None]]
# The judge's modules are imported in the commands: they bring numpy and scipy, which every
# other `shipyard` command would otherwise load for nothing (this module registers on import).


@canary.command("judge")
def judge(
    config: Annotated[Path, typer.Option(
        "--config", help="Kayenta canary-config JSON.", dir_okay=False)],
    baseline: Annotated[Path | None, typer.Option(
        "--baseline", help='Baseline series: {"metric": [numbers or null, ...]}.',
        dir_okay=False)] = None,
    canary_series: Annotated[Path | None, typer.Option(
        "--canary", help="Canary series, as --baseline.", dir_okay=False)] = None,
    prometheus: Annotated[str | None, typer.Option(
        "--prometheus", help="Instead of series files: read the window from this "
        "Prometheus (http://127.0.0.1:9090), each metric's query.customInlineTemplate "
        "('PromQL:...', ${scope} for the track).")] = None,
    window: Annotated[str | None, typer.Option(
        "--window", help="With --prometheus: START..END, ISO 8601 or Unix seconds.")]
    = None,
    step: Annotated[float, typer.Option(
        "--step", help="With --prometheus: seconds per data point.", min=0.001)] = 60.0,
    baseline_scope: Annotated[str, typer.Option(
        "--baseline-scope", help="With --prometheus: the baseline's ${scope} and "
        "{{ track }}.")] = "baseline",
    canary_scope: Annotated[str, typer.Option(
        "--canary-scope", help="With --prometheus: the canary's ${scope} and "
        "{{ track }}.")] = "canary",
    namespace: Annotated[str, typer.Option(
        "--namespace", help="With --prometheus: ${location} and {{ namespace }}.")] = "",
    app_name: Annotated[str, typer.Option(
        "--app", help="With --prometheus: {{ app }}.")] = "",
    request: Annotated[Path | None, typer.Option(
        "--request", help="Kayenta execution-request JSON: its thresholds {pass, "
        "marginal} override the config's scoreThresholds.", dir_okay=False)] = None,
    series: Annotated[bool, typer.Option(
        "--series", help="Include each metric's series as judged (after NaN and outlier "
        "handling).")] = False,
) -> None:
    """Judge a canary against its baseline and print the judgement as JSON: score, verdict,
    reasons, group scores, and each metric's classification and statistics. The series come
    from files (--baseline, --canary), or from a past window in Prometheus (--prometheus,
    --window): backtesting on real history, with a graph link per metric and track."""
    from shipyard.domain.canary_judge import judge_canary

    canary_config = _read_config(config, "--config", request=request)
    links: dict[str, dict[str, str]] = {}
    if prometheus is not None:
        base, can, links = _from_prometheus(
            config, prometheus, window, step, {"baseline": baseline_scope,
                                               "canary": canary_scope}, namespace, app_name)
    else:
        if baseline is None or canary_series is None:
            raise typer.BadParameter("give both series files, or --prometheus and --window",
                                     param_hint="--baseline/--canary")
        base = _read_series(baseline, "--baseline")
        can = _read_series(canary_series, "--canary")
    judgement = judge_canary(canary_config, base, can)
    result = judgement.to_json(include_series=series)
    if links:
        result["links"] = links
    typer.echo(json.dumps(result, indent=2))


def _from_prometheus(config: Path, url: str, window: str | None, step: float,
                     scopes: dict[str, str], namespace: str, app_name: str
                     ) -> tuple[Series, Series, dict[str, dict[str, str]]]:
    from shipyard.adapters.prometheus import Prometheus, PrometheusError
    from shipyard.domain.promql import (
        InvalidQuery,
        QueryScope,
        kayenta_templates,
        parse_window,
    )
    from stages.canary_metrics import judge_window_series

    if window is None:
        raise typer.BadParameter("--prometheus needs the window to judge",
                                 param_hint="--window")
    try:
        start, end = parse_window(window)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--window") from err
    raw = _read_json(config, "--config")
    try:
        templates = kayenta_templates(raw)
    except InvalidQuery as err:
        _bad(config, "--config", str(err))
    try:
        found, links = judge_window_series(
            Prometheus(url), templates,
            scopes={track: QueryScope(app=app_name, namespace=namespace, track=value,
                                      step_seconds=step) for track, value in scopes.items()},
            start=start, end=end)
    except InvalidQuery as err:
        _bad(config, "--config", str(err))
    except PrometheusError as err:
        raise typer.BadParameter(str(err), param_hint="--prometheus") from err
    return found["baseline"], found["canary"], links


@canary.command("plan")
def plan(
    interval: Annotated[float, typer.Option(
        "--interval", help="Seconds between data points (the scrape or query step).")],
    points: Annotated[int | None, typer.Option(
        "--points", help="Data points wanted per metric (default 50, the least Kayenta "
        "recommends).", show_default=False)] = None,
    window: Annotated[float | None, typer.Option(
        "--window", help="Instead: seconds of analysis, to count the points they yield.")]
    = None,
    warmup: Annotated[float, typer.Option(
        "--warmup", help="Seconds ignored at the start, while the canary warms up.")] = 0.0,
    request_rate: Annotated[float | None, typer.Option(
        "--request-rate", help="Requests per second reaching the canary: a point is widened "
        "until it holds --min-requests.")] = None,
    min_requests: Annotated[float, typer.Option(
        "--min-requests", help="Requests a point should hold (with --request-rate).")] = 100.0,
    shift: Annotated[float | None, typer.Option(
        "--shift", help="A relative change to detect (0.1 = 10%), for the power estimate.")]
    = None,
    cv: Annotated[float, typer.Option(
        "--cv", help="The metric's coefficient of variation (sd / mean), with --shift.")]
    = 0.2,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """How long a canary analysis must run for enough data points per metric (or, with
    --window, how many points a window yields), and whether they can detect a shift."""
    from shipyard.domain.canary_plan import (
        RECOMMENDED_POINTS,
        detection_power,
        plan_window,
        points_for_shift,
        points_in_window,
    )

    wanted = RECOMMENDED_POINTS if points is None else points
    try:
        if window is not None:
            step = plan_window(interval, 1, request_rate=request_rate,
                               min_requests_per_point=min_requests).step_seconds
            wanted = points_in_window(window, step, warmup_seconds=warmup)
            if wanted < 1:
                raise ValueError(f"a window of {window:g} s yields no point after a warm-up "
                                 f"of {warmup:g} s at one point every {step:g} s")
        planned = plan_window(interval, wanted, warmup_seconds=warmup,
                              request_rate=request_rate, min_requests_per_point=min_requests)
        power = needed = needed_window = None
        if shift is not None:
            power = detection_power(wanted, wanted, shift, cv)
            needed = points_for_shift(shift, cv)
            needed_window = plan_window(interval, needed, warmup_seconds=warmup,
                                        request_rate=request_rate,
                                        min_requests_per_point=min_requests).window_seconds
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    result: dict[str, Any] = {
        "step_seconds": planned.step_seconds, "points": planned.points,
        "warmup_seconds": planned.warmup_seconds, "window_seconds": planned.window_seconds,
        "requests_per_point": planned.requests_per_point,
        "meets_recommendation": planned.meets_recommendation,
    }
    if shift is not None:
        result.update(shift=shift, cv=cv, power=power, points_for_power_0_8=needed,
                      window_seconds_for_power_0_8=needed_window)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    lines = [f"window: {duration(planned.window_seconds)} ({planned.window_seconds:g} s): "
             + (f"warm-up {duration(planned.warmup_seconds)}, then " if warmup else "")
             + f"{planned.points} points, one every {duration(planned.step_seconds)}"]
    if planned.requests_per_point is not None:
        lines.append(f"each point holds about {planned.requests_per_point:g} requests")
    if not planned.meets_recommendation:
        lines.append(f"note: fewer than the {RECOMMENDED_POINTS} points per metric Kayenta "
                     "recommends")
    if power is not None and needed is not None and needed_window is not None:
        enough = "enough" if power >= 0.8 else "not enough"
        lines.append(f"power to detect a {shift:.0%} shift (cv {cv:g}) at 98%: {power:.2f}, "
                     f"{enough}; 80% needs {needed} points per side, a window of "
                     f"{duration(needed_window)}")
    typer.echo("\n".join(lines))


@canary.command("backtest")
def backtest_command(
    config: Annotated[Path, typer.Option(
        "--config", help="Kayenta canary-config JSON.", dir_okay=False)],
    cases: Annotated[Path, typer.Argument(
        help='Cases: {"cases": [{"name", "expected": "pass"|"fail", "baseline": {...}, '
        '"canary": {...}}]}.', dir_okay=False)],
) -> None:
    """Replay stored metric sets of known outcome through the judge and print the config's
    false-pass and false-fail rates as JSON."""
    from shipyard.domain.canary_plan import BacktestCase, backtest

    canary_config = _read_config(config, "--config")
    raw = _read_json(cases, "CASES")
    entries = raw.get("cases") if isinstance(raw, Mapping) else None
    if not isinstance(entries, list) or not entries:
        _bad(cases, "CASES", 'cases: must be a non-empty list of {"name", "expected", '
             '"baseline", "canary"}')
    loaded = []
    for index, entry in enumerate(entries):
        where = f"cases[{index}]"
        if not isinstance(entry, Mapping):
            _bad(cases, "CASES", f"{where}: must be an object")
        name, expected = entry.get("name"), entry.get("expected")
        if not isinstance(name, str) or not name:
            _bad(cases, "CASES", f"{where}.name: missing; name the case")
        if expected not in ("pass", "fail"):
            _bad(cases, "CASES", f"{where}.expected: {expected!r} is not pass or fail")
        loaded.append(BacktestCase(
            name, expected,
            _series(entry.get("baseline"), cases, "CASES", f"{where}.baseline"),
            _series(entry.get("canary"), cases, "CASES", f"{where}.canary")))
    try:
        report = backtest(canary_config, loaded)
    except ValueError as err:
        _bad(cases, "CASES", str(err))
    typer.echo(json.dumps(report.to_json(), indent=2))


def _read_config(path: Path, hint: str, *, request: Path | None = None) -> CanaryConfig:
    from shipyard.domain.canary_config import (
        InvalidCanaryConfig,
        parse_canary_config,
        parse_execution_request,
    )

    thresholds = None
    if request is not None:
        try:
            thresholds = parse_execution_request(_read_json(request, "--request"))
        except InvalidCanaryConfig as err:
            _bad(request, "--request", str(err))
    try:
        return parse_canary_config(_read_json(path, hint), thresholds=thresholds)
    except InvalidCanaryConfig as err:
        _bad(path, hint, str(err))


def _read_series(path: Path, hint: str) -> Series:
    return _series(_read_json(path, hint), path, hint, "")


def _series(raw: object, path: Path, hint: str, where: str) -> Series:
    shape = 'must be an object of series, {"metric": [numbers or null, ...]}'
    if not isinstance(raw, Mapping):
        _bad(path, hint, f"{where or '(top)'}: {shape}")
    series: Series = {}
    for name, values in raw.items():
        at = f"{where}.{name}" if where else str(name)
        if not isinstance(values, list):
            _bad(path, hint, f"{at}: {shape}")
        points: list[float | None] = []
        for index, value in enumerate(values):
            if value is None:
                points.append(None)
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                _bad(path, hint, f"{at}[{index}]: {json.dumps(value)} must be a number or null")
            try:
                points.append(float(value))
            except OverflowError:
                _bad(path, hint, f"{at}[{index}]: {value} is too large for a number")
        series[name] = points
    return series


def _read_json(path: Path, hint: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        _bad(path, hint, f"cannot read it: {reason}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        _bad(path, hint, f"not JSON: {err.msg} at line {err.lineno} column {err.colno}")


def _bad(path: Path, hint: str, message: str) -> NoReturn:
    raise typer.BadParameter(f"{path}: {message}", param_hint=hint)
