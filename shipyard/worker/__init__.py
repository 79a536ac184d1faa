"""Shipyard's warm Prefect worker: flow runs forked from a pre-imported interpreter.

- :mod:`shipyard.worker.wire`: the messages between a fork client and the zygote.
- :mod:`shipyard.worker.zygote`: the pre-imported, single-threaded process that forks.
- :mod:`shipyard.worker.fork_client`: what the worker starts per flow run (stdlib only).
- :mod:`shipyard.worker.warm`: the Prefect worker type ``shipyard-warm``.
"""
