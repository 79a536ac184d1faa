"""Shipyard's web application (FastAPI): :func:`ui.app.create_app`."""
