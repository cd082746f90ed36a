"""Job states as data. queued -> running -> succeeded | failed | cancelled | timed_out.

Defined with the job-control seam (engine/control.py), which both sides of it speak; re-exported here for
the jobs layer and its callers.
"""

from __future__ import annotations

from reelforge.engine.control import ACTIVE, TERMINAL, JobStatus

__all__ = ["ACTIVE", "TERMINAL", "JobStatus"]
