"""Shipyard's edge gateway: routes /api/<app>/... to healthy instances found in discovery."""
