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
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("slot", sa.String(length=16), nullable=False,
                                      server_default=""))
    # The default only fills the existing rows; the models always write a slot.
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.alter_column("slot", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_column("slot")
