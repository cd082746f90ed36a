"""API keys: each key is a tenant; only a hash of the key is stored (the plaintext is shown once)."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select, update

from reelforge.jobs.db import _Store, rowcount
from reelforge.jobs.models import ApiKeyRow


@dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    name: str
    tenant: str
    prefix: str
    created_at: float
    revoked: bool
    admin: bool = False


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a tenant, and whether its key is an admin key (sees every tenant's jobs)."""
    tenant: str
    admin: bool = False

    @property
    def scope(self) -> str | None:
        """The tenant to scope reads to: None (every tenant) for an admin."""
        return None if self.admin else self.tenant


def new_key_prefix() -> str:
    """A key's public id, e.g. rf_1a2b3c4d: the part before the secret, safe to show (`keys list`, logs)."""
    return f"rf_{secrets.token_hex(4)}"


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeysStore(_Store):
    def create_api_key(self, name: str, tenant: str | None = None, *, admin: bool = False) -> tuple[str, ApiKeyRecord]:
        """Returns the plaintext key (shown once) and its record; only a hash is stored. An admin key reads
        and acts on every tenant's jobs."""
        prefix = new_key_prefix()
        plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
        row = ApiKeyRow(id=f"key_{uuid.uuid4().hex[:16]}", name=name, tenant=tenant or name,
                        key_hash=_hash_key(plaintext), prefix=prefix, created_at=time.time(),
                        revoked=False, admin=admin)
        with self.session() as s, s.begin():
            s.add(row)
        return plaintext, ApiKeyRecord(row.id, row.name, row.tenant, row.prefix, row.created_at, False, admin)

    def principal_for_key(self, plaintext: str) -> Principal | None:
        with self.session() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == _hash_key(plaintext),
                                                   ApiKeyRow.revoked.is_(False)))
            return Principal(row.tenant, bool(row.admin)) if row else None

    def tenant_for_key(self, plaintext: str) -> str | None:
        principal = self.principal_for_key(plaintext)
        return principal.tenant if principal else None

    def tenants(self) -> list[str]:
        """Every tenant that has a key (revoked ones too: their jobs are still there)."""
        with self.session() as s:
            return sorted(s.scalars(select(ApiKeyRow.tenant).distinct()))

    def list_api_keys(self) -> list[ApiKeyRecord]:
        with self.session() as s:
            return [ApiKeyRecord(r.id, r.name, r.tenant, r.prefix, r.created_at, r.revoked, bool(r.admin))
                    for r in s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))]

    def revoke_api_key(self, key_id: str) -> bool:
        with self.session() as s, s.begin():
            res = s.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(revoked=True))
            return rowcount(res) == 1

    def any_api_keys(self) -> bool:
        with self.session() as s:
            count = s.scalar(select(func.count()).select_from(ApiKeyRow).where(ApiKeyRow.revoked.is_(False)))
            return bool(count)
