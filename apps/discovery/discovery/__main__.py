"""`python -m discovery`: serve on HOST:PORT (default 0.0.0.0:8761) with servicekit's
graceful shutdown and JSON logs."""

from servicekit import run_service

from discovery.api import create_app

if __name__ == "__main__":
    run_service(create_app, default_port=8761)
