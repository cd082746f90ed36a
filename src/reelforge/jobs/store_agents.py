"""Agent tokens: what a remote worker (`reelforge agent`) authenticates with. Only a hash is stored; the
plaintext is shown once. A token has the worker role only (claim and report on jobs of its queues; no
job submission, no file listing) and is refused as soon as it is revoked (looked up on every request).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update

from reelforge.jobs.db import _Store, rowcount
from reelforge.jobs.models import AgentTokenRow

TOKEN_PREFIX = "rfa_"


@dataclass(frozen=True)
class AgentTokenRecord:
    id: str
    name: str
    queues: tuple[str, ...]
    created_at: float
    revoked: bool
    last_seen_at: float | None
    resources: dict[str, Any] | None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _record(row: AgentTokenRow) -> AgentTokenRecord:
    return AgentTokenRecord(row.id, row.name, tuple(row.queues or ()), row.created_at, row.revoked,
                            row.last_seen_at, row.resources)


class AgentsStore(_Store):
    def create_token(self, name: str, queues: list[str]) -> tuple[str, AgentTokenRecord]:
        plaintext = f"{TOKEN_PREFIX}{secrets.token_urlsafe(32)}"
        row = AgentTokenRow(id=f"agt_{uuid.uuid4().hex[:12]}", name=name, token_hash=_hash(plaintext),
                            queues=list(queues), created_at=time.time(), revoked=False)
        with self.session() as s, s.begin():
            s.add(row)
        return plaintext, _record(row)

    def agent_for_token(self, plaintext: str) -> AgentTokenRecord | None:
        """The live (not revoked) agent token with this plaintext, else None."""
        with self.session() as s:
            row = s.scalar(select(AgentTokenRow).where(AgentTokenRow.token_hash == _hash(plaintext),
                                                       AgentTokenRow.revoked.is_(False)))
            return _record(row) if row else None

    def get(self, agent_id: str) -> AgentTokenRecord | None:
        with self.session() as s:
            row = s.get(AgentTokenRow, agent_id)
            return _record(row) if row else None

    def list_tokens(self) -> list[AgentTokenRecord]:
        with self.session() as s:
            return [_record(r) for r in s.scalars(select(AgentTokenRow).order_by(AgentTokenRow.created_at))]

    def revoke(self, id_or_name: str) -> int:
        """Revoke the token with this id (or every token with this name); the count revoked."""
        with self.session() as s, s.begin():
            res = s.execute(update(AgentTokenRow).where(or_(AgentTokenRow.id == id_or_name,
                                                            AgentTokenRow.name == id_or_name))
                            .values(revoked=True))
            return rowcount(res)

    def seen(self, agent_id: str, resources: dict[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"last_seen_at": time.time()}
        if resources is not None:
            values["resources"] = resources
        with self.session() as s, s.begin():
            s.execute(update(AgentTokenRow).where(AgentTokenRow.id == agent_id).values(**values))

    def polled_queues(self, since: float, exclude: Collection[str] = ()) -> set[str]:
        """The queues of the (not revoked) agents that asked for work since `since` (epoch seconds)."""
        with self.session() as s:
            rows = s.execute(select(AgentTokenRow.id, AgentTokenRow.queues).where(
                AgentTokenRow.revoked.is_(False), AgentTokenRow.last_seen_at >= since)).all()
        return {q for agent_id, queues in rows if agent_id not in exclude for q in (queues or ())}

    def live_slots(self, queue: str, since: float) -> int:
        """How many jobs of `queue` the (not revoked) agents that asked for work since `since` run at once,
        by the slots each declared (1 when it did not say)."""
        with self.session() as s:
            rows = s.execute(select(AgentTokenRow.queues, AgentTokenRow.resources).where(
                AgentTokenRow.revoked.is_(False), AgentTokenRow.last_seen_at >= since)).all()
        total = 0
        for queues, resources in rows:
            if queue in (queues or ()):
                slots = (resources or {}).get("slots")
                total += max(1, int(slots)) if isinstance(slots, int) else 1
        return total

    def ensure_builtin(self, agent_id: str, name: str, queues: list[str]) -> AgentTokenRecord:
        """The identity a service-side backend (e.g. RunPod) claims and reports under. Its token is random
        and never shown (the backend signs job tokens directly); revoking it stops that backend."""
        with self.session() as s, s.begin():
            row = s.get(AgentTokenRow, agent_id)
            if row is None:
                row = AgentTokenRow(id=agent_id, name=name, token_hash=_hash(secrets.token_urlsafe(32)),
                                    queues=list(queues), created_at=time.time(), revoked=False)
                s.add(row)
            elif not row.revoked:
                row.queues = list(queues)
            return _record(row)
