// Batches (GET /v1/batches, GET /v1/batches/{id} and its items): the key's tenant's batches with their
// progress and counts by item state, and one batch's items with their jobs; both are read again every 3 s
// while a batch is still running.
import { api } from "./api.js";
import { h, pct, progressBar, when } from "./dom.js";

const STATES = ["pending", "submitted", "succeeded", "failed", "cancelled", "skipped"];
const ACTIVE = new Set(["running", "paused", "cancelling"]);  // store_batches.ACTIVE_BATCH

const iso = (t) => (t ? new Date(t * 1000).toISOString() : null);
const counts = (b) => STATES.filter((s) => b.counts?.[s]).map((s) => `${b.counts[s]} ${s}`).join(", ") || "none";

export async function renderBatches(main, ctx) {
  const page = await api("/v1/batches?limit=50", { signal: ctx.signal });
  const heads = ["Batch", "Name", "Status", "Progress", "Items", "Created"];
  const rows = page.batches.map((b) => h("tr", { "data-batch": b.id, "data-status": b.status },
    h("td", { class: "mono" }, h("a", { href: `#/batch/${encodeURIComponent(b.id)}` }, b.id)),
    h("td", {}, b.name || "—"), h("td", { class: "cell-status" }, b.status),
    h("td", { class: "cell-progress" }, progressBar(b.progress, `Progress of ${b.id}`), " ",
      h("span", { class: "pct" }, pct(b.progress))),
    h("td", { class: "cell-counts" }, `${b.total} — ${counts(b)}`), h("td", {}, when(iso(b.created_at)))));
  main.replaceChildren(h("h1", {}, "Batches"),
    h("p", { class: "hint" }, "A batch runs one job per input (docs/BATCHES.md); create one with POST /v1/batches or `reelforge batch run`."),
    h("div", { class: "table-wrap" }, h("table", { id: "batches" },
      h("caption", { class: "hint table-caption", id: "batches-caption" }, `${page.batches.length} batch(es)`),
      h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: heads.length, class: "empty", id: "batches-empty" }, "No batches yet."))))));
  if (page.batches.some((b) => ACTIVE.has(b.status))) ctx.every(3000, () => ctx.refreshSoon());
}

export async function renderBatch(main, id, ctx) {
  const enc = encodeURIComponent(id);
  const [b, page] = await Promise.all([api(`/v1/batches/${enc}`, { signal: ctx.signal }),
    api(`/v1/batches/${enc}/items?limit=200`, { signal: ctx.signal })]);
  const byState = h("dl", { class: "kv", id: "batch-counts" },
    STATES.flatMap((s) => [h("dt", {}, s), h("dd", { "data-state": s }, String(b.counts?.[s] ?? 0))]));
  const items = page.items.map((i) => h("tr", { "data-index": String(i.index), "data-status": i.status },
    h("td", {}, String(i.index)), h("td", { class: "mono" }, i.source || "—"), h("td", { class: "cell-status" }, i.status),
    h("td", { class: "mono" }, i.job_id ? h("a", { href: `#/job/${encodeURIComponent(i.job_id)}` }, i.job_id) : "—"),
    h("td", {}, i.error ? `${i.error.code || "error"}: ${i.error.message || ""}` : "—")));
  main.replaceChildren(h("h1", {}, `Batch ${b.name || b.id}`),
    h("section", { class: "card", "aria-labelledby": "bs-h" }, h("h2", { id: "bs-h" }, "Progress"),
      h("p", { id: "batch-status" }, `${b.status} · `, progressBar(b.progress, "Batch progress"), " ",
        h("span", { id: "batch-pct" }, pct(b.progress)), ` of ${b.total} item(s)`,
        b.eta_s ? ` · about ${Math.round(b.eta_s)} s left` : ""),
      byState),
    h("section", { class: "card", "aria-labelledby": "bi-h" }, h("h2", { id: "bi-h" }, "Items"),
      h("div", { class: "table-wrap" }, h("table", { id: "batch-items" },
        h("thead", {}, h("tr", {}, ["#", "Input", "Status", "Job", "Error"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, items))),
      page.next_offset ? h("p", { class: "hint" }, "The first 200 items are shown; the rest are in results.json.") : null));
  if (ACTIVE.has(b.status)) ctx.every(3000, () => ctx.refreshSoon());
}
