"""`python -m gateway`: serve on HOST:PORT (default 0.0.0.0:8080) with servicekit's
graceful shutdown and JSON logs."""

from servicekit import run_service

from gateway.api import create_app

if __name__ == "__main__":
    run_service(create_app, default_port=8080)
