"""Batches: one job per object under a bucket prefix / list / manifest row, resumable; presets.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("explain", sa.JSON(), nullable=False),
        sa.Column("secrets", sa.JSON()),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("results", sa.JSON()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float()),
        sa.Column("finished_at", sa.Float()),
    )
    op.create_index("ix_batches_tenant_created", "batches", ["tenant", "created_at"])
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_index("ix_batches_fingerprint", "batches", ["tenant", "fingerprint"])
    op.create_table(
        "batch_items",
        sa.Column("batch_id", sa.String(40), primary_key=True),
        sa.Column("idx", sa.Integer(), primary_key=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("etag", sa.String(200), nullable=False, server_default=""),
        sa.Column("size", sa.BigInteger()),
        sa.Column("row", sa.Integer()),
        sa.Column("vars", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("job_id", sa.String(40)),
        sa.Column("outputs", sa.JSON()),
        sa.Column("error", sa.JSON()),
        sa.Column("seconds", sa.Float()),
        sa.Column("finished_at", sa.Float()),
    )
    op.create_index("ix_batch_items_status", "batch_items", ["batch_id", "status"])
    op.create_table(
        "presets",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("presets")
    op.drop_index("ix_batch_items_status", table_name="batch_items")
    op.drop_table("batch_items")
    op.drop_index("ix_batches_fingerprint", table_name="batches")
    op.drop_index("ix_batches_status", table_name="batches")
    op.drop_index("ix_batches_tenant_created", table_name="batches")
    op.drop_table("batches")
