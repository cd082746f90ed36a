"""A client for Vast.ai's REST API (https://console.vast.ai/api/v0), with httpx (the `vastai` package pins
versions that clash with this stack, and is not needed for six calls).

    POST   /bundles/                      offer search: a query {field: {op: value}, "order", "type", "limit"}
                                          -> {"offers": [...]}
    PUT    /asks/{offer_id}/              create an instance from an offer: image, disk, env, label, onstart,
                                          runtype, cancel_unavail -> {"success": true, "new_contract": id}
    GET    /instances/                    our instances -> {"instances": [...]}
    GET    /instances/{id}/               one instance -> {"instances": {...}} (actual_status: null, created,
                                          loading, running; exited, offline, unknown; stopped)
    PUT    /instances/request_logs/{id}/  {"tail": "N"} -> {"success", "result_url"}: the log text is fetched from
                                          result_url (an S3 object that may take a few seconds to appear)
    DELETE /instances/{id}/               destroy (billing stops)

The API is known to drop or fuzz search filters and to serve other GPUs than asked, so `OfferFilter.matches`
checks every field again on this side. 429 waits for Retry-After (capped) and retries; an answer naming
`search_quota_exceeded` raises `SearchQuotaExceeded` at once (the caller stops searching until the next UTC
day); 5xx and transport errors are retried with backoff, then `VastUnavailable`. Every call has a timeout.
The API key is a SecretStr: it is put into the Authorization header of each request to the API base only,
never into a log line, never into the result_url fetch, and never into an instance's environment.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

log = logging.getLogger("reelforge.vast")
DEFAULT_BASE_URL = "https://console.vast.ai/api/v0"
MAX_RETRY_AFTER_S = 60.0
# statuses an instance passes through on its way up; the bad ones never become running by themselves
BOOTING = frozenset({"", "created", "loading", "scheduling", "rebooting"})
BROKEN = frozenset({"exited", "offline", "unknown", "stopped"})


class VastError(Exception):
    """Any failure to talk to Vast.ai (the message never contains the API key)."""


class VastUnavailable(VastError):
    """Unreachable, rate limited beyond patience, or failing (5xx) after the retries."""


class VastAuthError(VastError):
    """The API key was refused (401/403)."""


class OfferTaken(VastError):
    """The offer is gone between search and create (rented by someone else, or withdrawn)."""


class SearchQuotaExceeded(VastError):
    """Vast.ai's daily search quota is used up: no search until `until` (unix time, the next UTC midnight)."""

    def __init__(self, message: str, until: float) -> None:
        super().__init__(message)
        self.until = until


def next_utc_midnight(now: float) -> float:
    day = dt.datetime.fromtimestamp(now, dt.UTC).date() + dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def _norm_gpu(name: str) -> str:
    return " ".join(name.replace("_", " ").upper().split())


@dataclass(frozen=True)
class Offer:
    id: int
    gpu_name: str
    num_gpus: int
    gpu_ram_gb: float
    dph_total: float  # $/hour, everything included (GPU, storage, the host's bandwidth reservation)
    reliability: float
    verified: bool
    rentable: bool
    rented: bool
    cuda: float
    disk_gb: float
    inet_down_mbps: float
    geolocation: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Offer:
        def num(*keys: str) -> float:
            for k in keys:
                v = d.get(k)
                if isinstance(v, int | float) and not isinstance(v, bool):
                    return float(v)
            return 0.0

        return cls(id=int(d.get("ask_contract_id") or d.get("id") or 0), gpu_name=str(d.get("gpu_name") or ""),
                   num_gpus=int(num("num_gpus")), gpu_ram_gb=round(num("gpu_ram") / 1024, 1),
                   dph_total=num("dph_total"), reliability=num("reliability2", "reliability"),
                   verified=bool(d.get("verified")) or d.get("verification") == "verified",
                   rentable=bool(d.get("rentable", True)), rented=bool(d.get("rented", False)),
                   cuda=num("cuda_max_good"), disk_gb=num("disk_space"), inet_down_mbps=num("inet_down"),
                   geolocation=str(d.get("geolocation") or ""), raw=d)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "gpu_name": self.gpu_name, "num_gpus": self.num_gpus, "gpu_ram_gb": self.gpu_ram_gb,
                "dph_total": self.dph_total, "reliability": self.reliability, "verified": self.verified,
                "cuda": self.cuda, "disk_gb": self.disk_gb, "inet_down_mbps": self.inet_down_mbps,
                "geolocation": self.geolocation}


@dataclass(frozen=True)
class OfferFilter:
    """What an offer must be. `query()` asks the API for it; `matches()` checks it again here."""

    gpu_names: tuple[str, ...] = ()  # empty: any GPU
    min_gpu_ram_gb: float = 0.0
    max_dph: float | None = None
    min_reliability: float = 0.0
    verified: bool = True
    num_gpus: int = 1
    min_cuda: float = 0.0
    min_disk_gb: float = 0.0
    min_inet_down_mbps: float = 0.0
    geolocations: tuple[str, ...] = ()  # country codes or region names; empty: anywhere
    limit: int = 64

    def query(self) -> dict[str, Any]:
        q: dict[str, Any] = {"rentable": {"eq": True}, "rented": {"eq": False}, "num_gpus": {"eq": self.num_gpus},
                             "order": [["dph_total", "asc"]], "type": "on-demand", "limit": self.limit}
        if self.verified:
            q["verified"] = {"eq": True}
        if self.gpu_names:
            q["gpu_name"] = {"in": [_norm_gpu(n).replace("GEFORCE ", "") for n in self.gpu_names]}
        if self.min_gpu_ram_gb:
            q["gpu_ram"] = {"gte": self.min_gpu_ram_gb * 1024}  # the API counts MB
        if self.max_dph is not None:
            q["dph_total"] = {"lte": self.max_dph}
        if self.min_reliability:
            q["reliability2"] = {"gte": self.min_reliability}
        if self.min_cuda:
            q["cuda_max_good"] = {"gte": self.min_cuda}
        if self.min_disk_gb:
            q["disk_space"] = {"gte": self.min_disk_gb}
        if self.min_inet_down_mbps:
            q["inet_down"] = {"gte": self.min_inet_down_mbps}
        if self.geolocations:
            q["geolocation"] = {"in": list(self.geolocations)}
        return q

    def why_not(self, o: Offer) -> str | None:
        """None when the offer satisfies every field, else the first field it fails."""
        wanted = {_norm_gpu(n).replace("GEFORCE ", "") for n in self.gpu_names}
        checks = (
            (o.id > 0, "no id"),
            (o.rentable and not o.rented, "not rentable"),
            (not self.verified or o.verified, "not verified"),
            (o.num_gpus == self.num_gpus, f"{o.num_gpus} GPUs"),
            (not wanted or _norm_gpu(o.gpu_name).replace("GEFORCE ", "") in wanted, f"GPU {o.gpu_name}"),
            (o.gpu_ram_gb + 0.05 >= self.min_gpu_ram_gb, f"{o.gpu_ram_gb} GB VRAM"),
            (o.dph_total > 0, "no price"),
            (self.max_dph is None or o.dph_total <= self.max_dph, f"${o.dph_total:.3f}/h"),
            (o.reliability >= self.min_reliability, f"reliability {o.reliability:.3f}"),
            (o.cuda >= self.min_cuda, f"CUDA {o.cuda}"),
            (o.disk_gb >= self.min_disk_gb, f"{o.disk_gb} GB disk"),
            (o.inet_down_mbps >= self.min_inet_down_mbps, f"{o.inet_down_mbps} Mbps"),
            (not self.geolocations or _geo_ok(o.geolocation, self.geolocations), f"in {o.geolocation!r}"),
        )
        return next((why for ok, why in checks if not ok), None)

    def matches(self, o: Offer) -> bool:
        return self.why_not(o) is None


def _geo_ok(where: str, allowed: Iterable[str]) -> bool:
    parts = {p.strip().upper() for p in where.split(",") if p.strip()}
    return any(a.strip().upper() in parts for a in allowed)


@dataclass(frozen=True)
class Instance:
    id: int
    label: str
    actual_status: str  # "" while provisioning (the API's null)
    dph_total: float
    gpu_name: str
    start_date: float | None
    status_msg: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Instance:
        start = d.get("start_date")
        return cls(id=int(d.get("id") or 0), label=str(d.get("label") or ""),
                   actual_status=str(d.get("actual_status") or "").lower(),
                   dph_total=float(d.get("dph_total") or 0.0), gpu_name=str(d.get("gpu_name") or ""),
                   start_date=float(start) if isinstance(start, int | float) else None,
                   status_msg=str(d.get("status_msg") or "")[:300], raw=d)


class VastClient:
    def __init__(self, api_key: SecretStr, *, base_url: str = DEFAULT_BASE_URL, timeout_s: float = 20.0,
                 retries: int = 3, backoff_s: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._key = api_key
        self.base = base_url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.client = httpx.Client(timeout=timeout_s, trust_env=False, transport=transport,
                                   headers={"User-Agent": "ReelForge/1", "Accept": "application/json"})
        # result_url lives elsewhere (S3): a separate client that never carries the Authorization header
        self.plain = httpx.Client(timeout=timeout_s, trust_env=False, transport=transport, follow_redirects=True)

    def __repr__(self) -> str:
        return f"VastClient({self.base!r})"

    def close(self) -> None:
        self.client.close()
        self.plain.close()

    # ---- the documented operations
    def search_offers(self, flt: OfferFilter) -> list[Offer]:
        """Offers that really satisfy the filter (checked here again), cheapest first."""
        data = self._request("POST", "/bundles/", json=flt.query(), search=True)
        offers = [Offer.from_api(o) for o in data.get("offers") or [] if isinstance(o, dict)]
        good = [o for o in offers if flt.matches(o)]
        if len(good) < len(offers):
            log.info("vast: %d of %d offers did not match the filter and were dropped", len(offers) - len(good),
                     len(offers))
        return sorted(good, key=lambda o: (o.dph_total, -o.reliability, o.id))

    def offer(self, offer_id: int) -> Offer | None:
        """The offer as it is now (for the price check at create time); None when it is gone."""
        data = self._request("POST", "/bundles/", json={"id": {"eq": offer_id}, "rentable": {"eq": True},
                                                       "rented": {"eq": False}, "limit": 5}, search=True)
        for o in data.get("offers") or []:
            if isinstance(o, dict):
                offer = Offer.from_api(o)
                if offer.id == offer_id and offer.rentable and not offer.rented:
                    return offer
        return None

    def create_instance(self, offer_id: int, *, image: str, disk_gb: float, env: dict[str, str], label: str,
                        onstart: str, runtype: str = "ssh") -> int:
        """Accept an offer; the new instance's id. OfferTaken when it is no longer available."""
        body = {"client_id": "me", "image": image, "disk": disk_gb, "env": env, "label": label, "onstart": onstart,
                "runtype": runtype, "cancel_unavail": True}
        data = self._request("PUT", f"/asks/{int(offer_id)}/", json=body, create=True)
        new = data.get("new_contract")
        if not data.get("success", True) or not isinstance(new, int):
            raise OfferTaken(f"Vast.ai did not create an instance from offer {offer_id}: "
                             f"{str(data.get('msg') or data.get('error') or '')[:200]}")
        return new

    def instance(self, instance_id: int) -> Instance | None:
        """The instance, or None when Vast.ai no longer has it."""
        try:
            data = self._request("GET", f"/instances/{int(instance_id)}/")
        except _NotFound:
            return None
        inst = data.get("instances")
        if isinstance(inst, list):
            inst = inst[0] if inst else None
        return Instance.from_api(inst) if isinstance(inst, dict) and inst else None

    def instances(self) -> list[Instance]:
        data = self._request("GET", "/instances/")
        return [Instance.from_api(d) for d in data.get("instances") or [] if isinstance(d, dict)]

    def logs(self, instance_id: int, tail: int = 200, wait_s: float = 10.0) -> str:
        """The instance's last log lines (asks for them, then fetches the result_url when it appears)."""
        data = self._request("PUT", f"/instances/request_logs/{int(instance_id)}/", json={"tail": str(tail)})
        url = data.get("result_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise VastError(f"Vast.ai gave no log URL ({str(data.get('msg') or '')[:200]}).")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                resp = self.plain.get(url)
                if resp.status_code == 200:
                    return resp.text
            except httpx.TransportError:
                pass
            if time.monotonic() >= deadline:
                raise VastUnavailable("The instance's logs did not appear in time.")
            self.sleep(0.5)

    def destroy(self, instance_id: int) -> bool:
        """Destroy the instance; False when it was already gone."""
        try:
            self._request("DELETE", f"/instances/{int(instance_id)}/")
        except _NotFound:
            return False
        return True

    # ---- inside
    def _request(self, method: str, path: str, *, json: Any = None, search: bool = False,
                 create: bool = False) -> dict[str, Any]:
        last = "no answer"
        headers = {"Authorization": f"Bearer {self._key.get_secret_value()}"}
        for attempt in range(self.retries + 1):
            final = attempt == self.retries
            try:
                resp = self.client.request(method, f"{self.base}{path}", json=json, headers=headers)
            except httpx.TransportError as exc:
                last = type(exc).__name__
                if not final:
                    self.sleep(self.backoff_s * 2 ** attempt)
                continue
            body = _json(resp)
            error = str(body.get("error") or "") if isinstance(body, dict) else ""
            if error == "search_quota_exceeded" or (search and "quota" in error):
                until = next_utc_midnight(time.time())
                raise SearchQuotaExceeded(
                    "Vast.ai's daily offer-search quota is used up: no new offers are searched until "
                    f"{dt.datetime.fromtimestamp(until, dt.UTC):%Y-%m-%d %H:%M} UTC.", until)
            if resp.status_code in (401, 403):
                raise VastAuthError(f"Vast.ai refused the API key (HTTP {resp.status_code}).")
            if resp.status_code == 429:
                last = "HTTP 429 (rate limited)"
                if not final:
                    self.sleep(self._retry_after(resp, attempt))
                continue
            if resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                if not final:
                    self.sleep(self.backoff_s * 2 ** attempt)
                continue
            msg = str((body or {}).get("msg") or error or "")[:200] if isinstance(body, dict) else ""
            if create and resp.status_code in (400, 404, 410):
                raise OfferTaken(f"The offer is no longer available (HTTP {resp.status_code}: {msg}).")
            if resp.status_code == 404:
                raise _NotFound(path)
            if resp.status_code >= 400:
                raise VastError(f"Vast.ai refused {method} {path.split('/')[1]} (HTTP {resp.status_code}: {msg}).")
            if not isinstance(body, dict):
                raise VastUnavailable("Vast.ai answered something that is not a JSON object.")
            return body
        raise VastUnavailable(f"Vast.ai is unavailable after {self.retries + 1} tries ({last}).")

    def _retry_after(self, resp: httpx.Response, attempt: int) -> float:
        try:
            wait = float(resp.headers.get("retry-after", ""))
        except ValueError:
            wait = self.backoff_s * 2 ** attempt
        return max(0.0, min(MAX_RETRY_AFTER_S, wait))


class _NotFound(VastError):
    pass


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None
