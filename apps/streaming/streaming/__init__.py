"""Shipyard's event streaming service: partitioned, durable topics, consumer groups with
committed offsets, and a built-in windowed aggregation of views."""
