"""deploy_locks: one deploy per app and environment at a time

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deploy_locks",
        sa.Column("app", sa.String(length=63), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["pipeline_runs.id"],
                                name=op.f("fk_deploy_locks_run_id_pipeline_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("app", "environment", name=op.f("pk_deploy_locks")),
    )


def downgrade() -> None:
    op.drop_table("deploy_locks")
