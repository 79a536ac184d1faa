"""Shipyard's service registry: instances register, heartbeat and discover each other."""

import os

# Read once at import: the version is fixed for the life of the process and labels every metric.
__version__: str = os.environ.get("APP_VERSION", "0.1.0")
