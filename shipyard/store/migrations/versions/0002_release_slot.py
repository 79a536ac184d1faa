"""releases.slot: the versioned name of a red/black release (v007)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN, never a batch copy: SQLite would have to drop the releases
    # table, which rows of its own (source_release_id) refer to.
    op.add_column("releases", sa.Column("slot", sa.String(length=16), nullable=False,
                                        server_default=sa.text("''")))


def downgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_column("slot")
