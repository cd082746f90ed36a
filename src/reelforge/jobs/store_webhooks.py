"""Webhook delivery records: every attempt (shown on the job) and the outbox of job state events.

The outbox keeps a job.running or terminal event until it is delivered (or its retry schedule is spent), so
an event whose sender stopped or crashed is sent by the next process, carrying on the schedule from the
attempts it had (jobs/webhooks.py implements the delivery; this is its durable half, the `Outbox` protocol).
An operator's replay puts a job's events back in it (`outbox_replay`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select, update

from reelforge.jobs.db import _Store, rowcount
from reelforge.jobs.models import WebhookAttemptRow, WebhookOutboxRow


class WebhooksStore(_Store):
    def record_webhook_attempt(self, job_id: str, attempt: dict[str, Any]) -> None:
        with self.session() as s, s.begin():
            s.add(WebhookAttemptRow(job_id=job_id, at=time.time(),
                                    event=str(attempt.get("event", ""))[:40], attempt=int(attempt.get("attempt", 1)),
                                    status_code=attempt.get("status_code"), error=attempt.get("error")))

    def webhook_attempts(self, job_id: str) -> list[dict[str, Any]]:
        with self.session() as s:
            rows = s.scalars(select(WebhookAttemptRow).where(WebhookAttemptRow.job_id == job_id)
                             .order_by(WebhookAttemptRow.id))
            return [{"event": r.event, "attempt": r.attempt, "status_code": r.status_code, "error": r.error,
                     "at": r.at} for r in rows]

    def webhook_attempts_for(self, job_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """webhook_attempts() of many jobs in one query (jobs with none are absent)."""
        ids = list(set(job_ids))
        out: dict[str, list[dict[str, Any]]] = {}
        if not ids:
            return out
        with self.session() as s:
            rows = s.scalars(select(WebhookAttemptRow).where(WebhookAttemptRow.job_id.in_(ids))
                             .order_by(WebhookAttemptRow.id))
            for r in rows:
                out.setdefault(r.job_id, []).append({"event": r.event, "attempt": r.attempt,
                                                     "status_code": r.status_code, "error": r.error, "at": r.at})
        return out

    # ---- webhook outbox (terminal events until delivered; see jobs/webhooks.py)
    def outbox_add(self, job_id: str, url: str, event_type: str, kind: str, body: bytes, claim_s: float) -> int:
        now = time.time()
        with self.session() as s, s.begin():
            row = WebhookOutboxRow(job_id=job_id, url=url, event_type=event_type[:60], kind=kind[:40],
                                   body=body.decode(), created_at=now, claimed_until=now + claim_s)
            s.add(row)
            s.flush()
            return int(row.id)

    def outbox_done(self, item_id: int, outcome: str) -> None:
        with self.session() as s, s.begin():
            s.execute(update(WebhookOutboxRow).where(WebhookOutboxRow.id == item_id)
                      .values(done_at=time.time(), outcome=outcome[:20]))

    def outbox_defer(self, item_id: int, attempts: int, until: float) -> None:
        """After a failed attempt: count it, and hold the row until `until` (its retry time + the claim)."""
        with self.session() as s, s.begin():
            s.execute(update(WebhookOutboxRow).where(WebhookOutboxRow.id == item_id, WebhookOutboxRow.done_at.is_(None))
                      .values(attempts=attempts, claimed_until=until))

    def outbox_replay(self, job_id: str) -> int:
        """Every kept event of the job due again now, its schedule from the start (an operator's replay);
        returns how many."""
        with self.session() as s, s.begin():
            return rowcount(s.execute(update(WebhookOutboxRow).where(WebhookOutboxRow.job_id == job_id)
                                      .values(done_at=None, outcome=None, attempts=0, claimed_until=0.0)))

    def outbox_release(self, item_ids: Iterable[int]) -> None:
        """Give up claims (a sender shutting down) so the next process sends them at once."""
        ids = list(item_ids)
        if ids:
            with self.session() as s, s.begin():
                s.execute(update(WebhookOutboxRow).where(WebhookOutboxRow.id.in_(ids),
                                                         WebhookOutboxRow.done_at.is_(None))
                          .values(claimed_until=0.0))

    def outbox_claim_stale(self, claim_s: float, limit: int = 100) -> list[dict[str, Any]]:
        """Undelivered events whose sender's claim ran out, each claimed for `claim_s` by this caller
        (a conditional update: of several processes asking at once, one gets each row)."""
        now = time.time()
        with self.session() as s:
            rows = s.execute(select(WebhookOutboxRow.id, WebhookOutboxRow.claimed_until)
                             .where(WebhookOutboxRow.done_at.is_(None), WebhookOutboxRow.claimed_until < now)
                             .order_by(WebhookOutboxRow.id).limit(limit)).all()
        claimed: list[dict[str, Any]] = []
        for item_id, old in rows:
            with self.session() as s, s.begin():
                won = rowcount(s.execute(update(WebhookOutboxRow)
                                         .where(WebhookOutboxRow.id == item_id, WebhookOutboxRow.done_at.is_(None),
                                                WebhookOutboxRow.claimed_until == old)
                                         .values(claimed_until=now + claim_s))) == 1
                if won:
                    r = s.get(WebhookOutboxRow, item_id)
                    assert r is not None
                    claimed.append({"id": r.id, "job_id": r.job_id, "url": r.url, "event_type": r.event_type,
                                    "kind": r.kind, "body": r.body.encode(), "attempts": r.attempts or 0})
        return claimed

    def outbox_prune(self, older_than_s: float) -> int:
        """Delete finished outbox rows older than `older_than_s` (the attempts table keeps the history)."""
        with self.session() as s, s.begin():
            return rowcount(s.execute(delete(WebhookOutboxRow).where(
                WebhookOutboxRow.done_at.is_not(None), WebhookOutboxRow.done_at < time.time() - older_than_s)))
