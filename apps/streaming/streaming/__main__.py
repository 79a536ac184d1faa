"""`python -m streaming`: serve on HOST:PORT (default 0.0.0.0:8082) with servicekit's
graceful shutdown and JSON logs."""

from servicekit import run_service

from streaming.api import DEFAULT_PORT, create_app

if __name__ == "__main__":
    run_service(create_app, default_port=DEFAULT_PORT)
