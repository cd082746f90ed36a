// Workers and capacity: the executor and the service's health (GET /health), the queues the ops are routed
// to (GET /v1/ops) with their depth (GET /metrics, when this key may read it), and what runs jobs
// (GET /v1/workers, admin keys): remote agents with their declared resources, RunPod/Modal backends and
// their state, rented instances with $/h and today's spend against the budget.
import { api } from "./api.js";
import { h, bytes, when } from "./dom.js";

export async function renderSystem(main, ctx) {
  const [health, ops, metrics, fleet] = await Promise.all([
    fetch("/health").then((r) => r.json()).catch(() => null),
    ctx.ops(),
    api("/metrics").then(parseMetrics).catch(() => null),
    api("/v1/workers", { signal: ctx.signal }).catch((e) => ({ refused: e })),
  ]);

  const checks = health?.checks || {};
  const executor = typeof checks.executor === "object" ? checks.executor : {};
  const service = h("section", { class: "card", "aria-labelledby": "svc-h" }, h("h2", { id: "svc-h" }, "Service"),
    health ? kv([["Status", health.status], ...Object.entries(checks).filter(([k]) => k !== "executor").map(([k, v]) => [k, text(v)]),
      ["Free disk", health.disk?.free_bytes !== undefined ? `${bytes(health.disk.free_bytes)}${health.disk.low ? " (low)" : ""}` : text(health.disk)]])
      : h("p", { class: "error-text" }, "The health check did not answer."));

  const workers = h("section", { class: "card", "aria-labelledby": "wk-h" }, h("h2", { id: "wk-h" }, "Executor and workers"),
    kv([["Executor", executor.executor || "—"],
      ...Object.entries(executor).filter(([k]) => k !== "executor").map(([k, v]) => [k.replaceAll("_", " "), text(v)])]),
    h("p", { class: "hint", id: "workers-note" }, executor.executor !== "celery"
      ? "The embedded executor runs jobs in this service's own job hosts (the slots above)."
      : fleet.refused ? "The Celery workers and their resources are shown to an admin key."
        : fleet.celery_workers_error ? `The Celery workers could not be asked: ${fleet.celery_workers_error}`
          : "Each live Celery worker answers over the broker with its queues, pool and this machine's resources (below)."));
  const celery = executor.executor === "celery" && fleet.celery_workers
    ? h("section", { class: "card", "aria-labelledby": "cw-h" }, h("h2", { id: "cw-h" }, "Celery workers"),
      celeryWorkers(fleet.celery_workers))
    : null;
  const remote = fleetSections(fleet);

  const byQueue = new Map();
  for (const op of ops) {
    for (const q of new Set([op.queue, ...op.variants.map((v) => v.queue)])) {
      if (!byQueue.has(q)) byQueue.set(q, []);
      byQueue.get(q).push(op.name);
    }
  }
  const depth = (names, state) => metrics ? names.reduce((n, name) => n + (metrics[`${name}|${state}`] || 0), 0) : null;
  const queues = h("section", { class: "card", "aria-labelledby": "q-h" }, h("h2", { id: "q-h" }, "Queues"),
    h("div", { class: "table-wrap" }, h("table", { id: "queues" },
      h("thead", {}, h("tr", {}, ["Queue", "Operations", "Queued", "Running"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, [...byQueue.entries()].sort().map(([q, names]) => h("tr", { "data-queue": q },
        h("td", { class: "mono" }, q), h("td", {}, names.join(", ")),
        h("td", {}, depth(names, "queued") ?? "—"), h("td", {}, depth(names, "running") ?? "—")))))),
    h("p", { class: "hint" }, metrics ? "Counts are jobs of these operations in that state (all tenants, from /metrics); an op whose params route it elsewhere is counted in each of its queues."
      : "Queue depth needs /metrics, which this key may not read."));

  main.replaceChildren(h("h1", {}, "Workers & capacity"), h("div", { class: "grid2" }, service, workers),
    ...(celery ? [celery] : []), queues, ...remote);
  ctx.every(5000, () => ctx.refreshSoon());
}

// GET /v1/workers' celery_workers: one row per live worker; a machine's GPUs are listed in its row
function celeryWorkers(workers) {
  const heads = ["Worker", "Queues", "Pool", "Running", "CPU cores", "GPU", "GPU memory", "GPU use", "NVENC sessions"];
  const gpuCells = (gpus) => gpus.length ? [
    gpus.map((g) => g.name).join(", "),
    gpus.map((g) => g.memory_total_mb ? `${bytes((g.memory_used_mb || 0) * 2 ** 20)} of ${bytes(g.memory_total_mb * 2 ** 20)}` : "—").join(", "),
    gpus.map((g) => g.utilization !== undefined ? `${Math.round(g.utilization * 100)}%` : "—").join(", "),
    gpus.map((g) => !g.nvenc_sessions ? "no NVENC" : `${g.nvenc_sessions_in_use ?? "?"} of ${g.nvenc_sessions}`).join(", "),
  ] : ["none", "—", "—", "—"];
  return h("div", { class: "table-wrap" }, h("table", { id: "celery-workers" },
    h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, workers.length ? workers.map((w) => h("tr", { "data-worker": w.name },
      h("td", { class: "mono" }, w.name), h("td", { class: "mono" }, (w.queues || []).join(", ")),
      h("td", {}, text(w.concurrency)), h("td", {}, text(w.running)), h("td", {}, text(w.cpu_cores)),
      ...gpuCells(w.gpus || []).map((c) => h("td", {}, c))))
      : h("tr", {}, h("td", { colspan: heads.length, class: "empty" }, "No Celery worker answered: start one with `reelforge worker`.")))));
}

// agents, remote backends and rented capacity from GET /v1/workers (an admin key's view)
function fleetSections(fleet) {
  if (fleet.refused) {
    return [h("section", { class: "card", "aria-labelledby": "ag-h" }, h("h2", { id: "ag-h" }, "Agents, backends and rented capacity"),
      h("p", { class: "empty", id: "fleet-refused" }, `${fleet.refused.code}: ${fleet.refused.message}`))];
  }
  const table = (id, heads, rows, empty) => h("div", { class: "table-wrap" }, h("table", { id },
    h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: heads.length, class: "empty" }, empty)))));
  const agents = h("section", { class: "card", "aria-labelledby": "ag-h" }, h("h2", { id: "ag-h" }, "Remote agents"),
    table("agents", ["Agent", "Queues", "State", "GPU", "VRAM", "NVENC sessions", "CPU cores", "Last seen"],
      fleet.agents.map((a) => {
        const r = a.resources || {};
        return h("tr", { "data-agent": a.name },
          h("td", {}, a.name), h("td", { class: "mono" }, a.queues.join(", ")),
          h("td", { class: "cell-state" }, a.alive ? "online" : a.last_seen_at ? "offline" : "never seen"),
          h("td", {}, r.gpu_name || "none"), h("td", {}, r.vram_gb ? `${r.vram_gb} GB` : "—"),
          h("td", {}, r.nvenc_sessions ? String(r.nvenc_sessions) : "no NVENC"), h("td", {}, r.cpu_cores ?? "—"),
          h("td", {}, a.last_seen_at ? when(new Date(a.last_seen_at * 1000).toISOString()) : "—"));
      }), "No agent tokens: `reelforge agents create` makes one for a GPU machine running `reelforge agent`."));
  const backends = h("section", { class: "card", "aria-labelledby": "be-h" }, h("h2", { id: "be-h" }, "Remote backends"),
    table("backends", ["Backend", "Queues", "State", "Why"], fleet.backends.map((b) => h("tr", { "data-backend": b.name },
      h("td", {}, b.name), h("td", { class: "mono" }, b.queues.join(", ") || "—"),
      h("td", { class: "cell-state" }, b.state), h("td", {}, b.why || "—"))),
    "No RunPod or Modal backend is configured."));
  const c = fleet.capacity;
  const capacity = h("section", { class: "card", "aria-labelledby": "cap-h" }, h("h2", { id: "cap-h" }, "Rented capacity and spend"),
    kv([["Provider", c.provider || "none"], ["Instances", String(c.instances.length)], ["$/h now", `$${c.dph.toFixed(2)} (limit $${c.max_dph.toFixed(2)})`],
      ["Spent today (UTC)", `$${c.spent_today_usd.toFixed(2)} of $${c.max_day_usd.toFixed(2)}`]]),
    c.instances.length ? table("instances", ["Instance", "Queue", "GPU", "$/h", "Agent registered", "Jobs"],
      c.instances.map((i) => h("tr", { "data-instance": i.key }, h("td", { class: "mono" }, `${i.key} (${i.vast_id ?? "—"})`),
        h("td", { class: "mono" }, i.queue), h("td", {}, i.gpu || "—"), h("td", {}, `$${Number(i.dph).toFixed(3)}`),
        h("td", {}, i.registered_at ? "yes" : "booting"), h("td", {}, String(i.jobs)))), "")
      : h("p", { class: "empty", id: "capacity-empty" }, c.provider
        ? "No rented instances alive now (the controller scales to zero when the queues are empty)."
        : "No rented capacity: set CAPACITY_PROVIDER=vast (docs/CAPACITY.md) to rent GPU instances."));
  return [agents, backends, capacity];
}

function text(v) { return v === null || v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v); }

function kv(rows) {
  return h("dl", { class: "kv" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
}

// reelforge_jobs{op="x",status="y"} n  ->  {"x|y": n}
function parseMetrics(body) {
  const out = {};
  for (const line of String(body).split("\n")) {
    const m = line.match(/^reelforge_jobs\{([^}]*)\}\s+([0-9.eE+-]+)/);
    if (!m) continue;
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    out[`${labels.op}|${labels.status ?? labels.state}`] = Number(m[2]);
  }
  return out;
}
