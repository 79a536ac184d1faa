"""switch_intents: what a run is about to make an environment serve, written before it moves
traffic, so a switch whose record was lost can be recorded from it

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "switch_intents",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(length=32), sa.ForeignKey("pipeline_runs.id"),
                  nullable=True),
        sa.Column("app", sa.String(length=63), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("slot", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("manifests", sa.Text(), nullable=False),
        sa.Column("source_release_id", sa.Integer(), sa.ForeignKey("releases.id"),
                  nullable=True),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id"), nullable=True),
    )
    op.create_index("ix_switch_intents_pending", "switch_intents",
                    ["settled_at", "app", "environment"])
    op.create_index("ix_switch_intents_run_id", "switch_intents", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_switch_intents_run_id", table_name="switch_intents")
    op.drop_index("ix_switch_intents_pending", table_name="switch_intents")
    op.drop_table("switch_intents")
