"""change_notify: with PostgreSQL, every statement adding state transitions or stage logs
notifies the channel ``shipyard_changes`` on commit, so live updates listen instead of
polling (see shipyard/store/notify.py); SQLite has no notifications and is unchanged

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# The channel is shipyard.store.notify.CHANGES_CHANNEL; a migration keeps its own copy so
# that it means the same however the code moves on.
_FUNCTION = """
CREATE OR REPLACE FUNCTION shipyard_notify_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('shipyard_changes', TG_TABLE_NAME);
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""
_TABLES = ("state_transitions", "stage_logs")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_FUNCTION)
    for table in _TABLES:
        # Per statement, not per row: a batch of log lines wakes a listener once.
        op.execute(f"CREATE TRIGGER {table}_notify AFTER INSERT ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION shipyard_notify_change()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_notify ON {table}")
    op.execute("DROP FUNCTION IF EXISTS shipyard_notify_change()")
