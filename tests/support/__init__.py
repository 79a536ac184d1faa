"""Test support shared by the unit, integration and app tests."""
