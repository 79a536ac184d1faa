"""pipeline_runs.heartbeat_at: when the flow running the run last said it was alive

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (see 0002): the sweeper reads it to find runs whose process died.
    op.add_column("pipeline_runs", sa.Column("heartbeat_at", sa.DateTime(timezone=True),
                                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pipeline_runs", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
