"""Prometheus metrics observed in-process (durations, outcomes); state counts are read from the store."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOB_DURATION = Histogram(
    "reelforge_job_duration_seconds", "Wall time of jobs run by this process, by op and outcome",
    ["op", "status"], buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
JOB_FINISHED = Counter("reelforge_jobs_finished_total", "Jobs finished by this process", ["op", "status"])
JOBS_SUBMITTED = Counter("reelforge_jobs_submitted_total", "Jobs accepted by this API process", ["op"])
# remote work as the service sees it (agents and RunPod): claims by backend, time jobs waited before one
JOBS_STARTED_REMOTE = Counter("reelforge_jobs_started_remote_total", "Jobs handed to remote backends by this API "
                              "process", ["backend", "queue"])
REMOTE_QUEUE_DELAY = Histogram(
    "reelforge_remote_queue_delay_seconds", "Time from submit to a remote backend's claim (agents), or RunPod's "
    "own queue time (cold starts included)", ["backend"], buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)
# webhooks (jobs/webhooks.py): each try by its result (delivered | retrying | failed), each event's end
# (delivered | failed | superseded: a newer event of its job went instead), request time, events waiting
WEBHOOK_ATTEMPTS = Counter("reelforge_webhook_attempts_total", "Webhook delivery tries by this process, by event "
                           "type and result", ["event", "status"])
WEBHOOK_DELIVERIES = Counter("reelforge_webhook_deliveries_total", "Webhook events concluded by this process, by "
                             "event type and outcome", ["event", "status"])
WEBHOOK_REQUEST_SECONDS = Histogram("reelforge_webhook_request_duration_seconds", "Time of one webhook request",
                                    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
WEBHOOK_PENDING = Gauge("reelforge_webhook_pending", "Webhook events queued or waiting for a retry in this process",
                        multiprocess_mode="livesum")
