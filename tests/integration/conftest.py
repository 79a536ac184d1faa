"""The integration tests' fixtures are in ``tests/support/services.py``, registered for
every test tree by the root conftest: the fault suite (``tests/faults``) shares the same
session's stack."""
