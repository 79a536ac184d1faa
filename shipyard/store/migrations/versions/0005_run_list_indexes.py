"""pipeline_runs: one index per run-list filter, in the list's order (newest first)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_FILTERS = ("app", "state", "pipeline", "ref", "trigger")
_REPLACED = ("app", "created_at", "pipeline", "state")


def upgrade() -> None:
    # A composite index serves its leading column's lookups too: the single-column ones
    # it replaces would only cost writes.
    for column in _REPLACED:
        op.drop_index(f"ix_pipeline_runs_{column}", table_name="pipeline_runs")
    op.create_index("ix_pipeline_runs_created_at_id", "pipeline_runs", ["created_at", "id"])
    for column in _FILTERS:
        op.create_index(f"ix_pipeline_runs_{column}_created_at", "pipeline_runs",
                        [column, "created_at", "id"])


def downgrade() -> None:
    for column in _FILTERS:
        op.drop_index(f"ix_pipeline_runs_{column}_created_at", table_name="pipeline_runs")
    op.drop_index("ix_pipeline_runs_created_at_id", table_name="pipeline_runs")
    for column in _REPLACED:
        op.create_index(f"ix_pipeline_runs_{column}", "pipeline_runs", [column])
