"""Shipyard's service registry: instances register, heartbeat and discover each other."""
