"""stage_runs: log line counts for the per-stage log cap; indexes for `shipyard gc`

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Every column that names a run, or a delivery's age: deleting runs and deliveries in
# batches looks rows up by them, and each database checks every foreign key pointing at a
# deleted run by reading the column; unindexed, that is the whole table once per run.
_INDEXES = (
    ("ix_pipeline_runs_restarted_from", "pipeline_runs", "restarted_from"),
    ("ix_artifacts_run_id", "artifacts", "run_id"),
    # A released image's build run, found by its digest (gc keeps it; DORA reads it).
    ("ix_artifacts_digest", "artifacts", "digest"),
    ("ix_releases_run_id", "releases", "run_id"),
    ("ix_approvals_run_id", "approvals", "run_id"),
    ("ix_webhook_deliveries_run_id", "webhook_deliveries", "run_id"),
    ("ix_webhook_deliveries_received_at", "webhook_deliveries", "received_at"),
)


def upgrade() -> None:
    # Plain ADD COLUMNs, never a batch copy: SQLite would drop stage_runs, and with it
    # (ON DELETE CASCADE) every log. Stages logged before this count from zero: ended ones
    # never log again, and one running now may keep up to the cap more lines.
    for column in ("log_lines", "log_lines_dropped"):
        op.add_column("stage_runs", sa.Column(column, sa.Integer(), nullable=False,
                                              server_default=sa.text("0")))
    for name, table, column in _INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later) keeps the logs a batch copy of
    # stage_runs would cascade away.
    for column in ("log_lines_dropped", "log_lines"):
        op.drop_column("stage_runs", column)
