// Workers and capacity: the executor and the service's health (GET /health), the queues the ops are routed
// to (GET /v1/ops) with their depth (GET /metrics, when this key may read it), and empty states for what
// this version does not report yet (rented instances, spend, GPU workers, batches).
import { api } from "./api.js";
import { h, bytes } from "./dom.js";

export async function renderSystem(main, ctx) {
  const [health, ops, metrics] = await Promise.all([
    fetch("/health").then((r) => r.json()).catch(() => null),
    ctx.ops(),
    api("/metrics").then(parseMetrics).catch(() => null),
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
    h("p", { class: "empty", id: "workers-empty" }, executor.executor === "celery"
      ? "Celery workers do not report their resources (GPU, memory, NVENC sessions) to the API yet."
      : "The embedded executor runs jobs in this service's own job hosts; per-GPU figures are not reported yet."));

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

  const capacity = h("section", { class: "card", "aria-labelledby": "cap-h" }, h("h2", { id: "cap-h" }, "Rented capacity and spend"),
    h("p", { class: "empty", id: "capacity-empty" }, "No rented instances. This version does not rent capacity: instances, $/h and today's spend against the budget appear here once the capacity feature is installed."));
  const batches = h("section", { class: "card", "aria-labelledby": "b-h" }, h("h2", { id: "b-h" }, "Batches"),
    h("p", { class: "empty" }, "No batches: this version submits jobs one at a time."));

  main.replaceChildren(h("h1", {}, "Workers & capacity"), h("div", { class: "grid2" }, service, workers), queues, capacity, batches);
  ctx.every(5000, () => ctx.refreshSoon());
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
