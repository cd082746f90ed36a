"""Webhook outbox: how many attempts an event has had, so its retry schedule (hours long) carries on in the
next process after a restart; job.running events are kept there too, and an index to replay a job's events.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_outbox") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_webhook_outbox_job", "webhook_outbox", ["job_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_outbox_job", table_name="webhook_outbox")
    with op.batch_alter_table("webhook_outbox") as batch:
        batch.drop_column("attempts")
