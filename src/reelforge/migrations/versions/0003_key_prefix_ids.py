"""API keys: the shown prefix becomes a public id (rf_ + 8 hex) instead of the key's first 10 characters.

Keys made before this revision are `rf_<secret>`: their stored prefix held 7 characters of the secret.
It is replaced by a fresh random id, which identifies the key in `keys list` but is no part of it (new
keys are `<prefix>_<secret>`, so their id is also the start of the key).

Revision ID: 0003
Revises: 0002
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    keys = sa.table("api_keys", sa.column("id", sa.String), sa.column("prefix", sa.String))
    conn = op.get_bind()
    for (key_id,) in conn.execute(sa.select(keys.c.id)).all():
        conn.execute(sa.update(keys).where(keys.c.id == key_id).values(prefix=f"rf_{secrets.token_hex(4)}"))


def downgrade() -> None:
    pass  # the old prefixes were part of the secret; they are not brought back
