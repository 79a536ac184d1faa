"""Route templates: the bounded name of what a request asked for.

Metrics and access logs label requests with "/eureka/apps/{app_name}", never
"/eureka/apps/orders": raw paths would make one time series per URL ever requested.
"""

from __future__ import annotations

from starlette.routing import Match
from starlette.types import Scope

__all__ = ["OPERATIONAL_PATHS", "UNMATCHED", "route_template"]

# The paths probes and scrapers call. They are never slowed or failed by injected faults,
# and a canary judge leaves them out of error rates and latencies.
OPERATIONAL_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/version"})
UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The template of the route that served (or would serve) this request.

    After routing, the router leaves the chosen route in `scope["route"]`. A response made
    before routing (a 413 from the body limit, an injected fault) has none, so the app's
    routes are matched here with the router's own rule: the first full match, else the
    first partial one (a known path with another method). "unmatched" when nothing fits.
    """
    template = _template_of(scope.get("route"))
    if template is not None:
        return template
    router = getattr(scope.get("app"), "router", None)
    partial: str | None = None
    for route in getattr(router, "routes", ()):
        template = _template_of(route)
        if template is None:
            continue
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return template
        if match is Match.PARTIAL and partial is None:
            partial = template
    return partial or UNMATCHED


def _template_of(route: object) -> str | None:
    # path_format drops converters ("/items/{id:int}" -> "/items/{id}").
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else None
