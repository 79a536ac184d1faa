"""The local delivery stack behind ``shipyard up | down | status``: each part is a
:class:`~shipyard.stack.component.Component` that can say how it is, start idempotently
and stop what it started."""
