"""servicekit: the plumbing every Shipyard service shares.

An app is `build_service(name, ServiceConfig.from_env())` plus its own routes, served by
`serve` (or `run_service`). See README.md for the contracts.
"""

from servicekit.app import Lifespan, build_service, service_metrics, service_state
from servicekit.config import FaultConfig, ServiceConfig
from servicekit.discovery_client import (
    DiscoveryClient,
    Instance,
    discovery_client,
    discovery_lifespan,
)
from servicekit.httpclient import make_http_client
from servicekit.lifecycle import Readiness, ReadinessCheck, ServiceState
from servicekit.logs import configure_logging
from servicekit.metrics import ServiceMetrics
from servicekit.requestid import current_request_id
from servicekit.routes import OPERATIONAL_PATHS
from servicekit.server import run_service, serve

__all__ = [
    "OPERATIONAL_PATHS",
    "DiscoveryClient",
    "FaultConfig",
    "Instance",
    "Lifespan",
    "Readiness",
    "ReadinessCheck",
    "ServiceConfig",
    "ServiceMetrics",
    "ServiceState",
    "build_service",
    "configure_logging",
    "current_request_id",
    "discovery_client",
    "discovery_lifespan",
    "make_http_client",
    "run_service",
    "serve",
    "service_metrics",
    "service_state",
]
