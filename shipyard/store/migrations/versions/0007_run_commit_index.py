"""pipeline_runs: an index on the commit, so the webhook finds a replayed push in one look

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A replay is the same repository, ref and commit within a window. The ref's index
    # would read every push to that branch in the window (hundreds on a busy main); a
    # commit has one run or a few.
    op.create_index("ix_pipeline_runs_commit_sha_ref_created_at", "pipeline_runs",
                    ["commit_sha", "ref", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_pipeline_runs_commit_sha_ref_created_at", table_name="pipeline_runs")
