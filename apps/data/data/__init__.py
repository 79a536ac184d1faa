"""data: Shipyard's user-activity store (the role Cassandra and EVCache play at Netflix)."""
