// The jobs list: filters (status, op, time; tenant for an admin key), search by id, pages (the API's `before`
// cursor), and live progress of the running jobs on the page over the job events stream.
import { api, streamEvents } from "./api.js";
import { h, badge, when, seconds, pct, progressBar, errorBlock, STATUSES, TERMINAL, flash } from "./dom.js";

const LIVE_STREAMS = 4;  // a browser opens ~6 connections per origin: leave room for the page's own requests
const SINCE = { "": "Any time", "3600": "Last hour", "86400": "Last 24 hours", "604800": "Last 7 days" };

export async function renderJobs(main, query, ctx) {
  const status = query.get("status") || "";
  const op = query.get("op") || "";
  const tenant = query.get("tenant") || "";
  const since = query.get("since") || "";
  const before = query.get("before") || "";
  const limit = Math.min(200, Math.max(1, Number(query.get("limit")) || ctx.pageSize));  // the API's bounds
  const cursors = (query.get("pages") || "").split(",").filter(Boolean);  // the `before` of newer pages

  const [ops, me] = await Promise.all([ctx.ops(), ctx.me()]);
  const admin = Boolean(me.admin);
  const form = h("form", { class: "card filters", role: "search", "aria-label": "Filter jobs", onsubmit: (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const q = new URLSearchParams();
    for (const k of ["status", "op", "since", "tenant"]) if (f.get(k)) q.set(k, String(f.get(k)).trim());
    const cb = f.get("created_before");
    if (cb) q.set("before", String(new Date(cb).getTime() / 1000));
    location.hash = `#/jobs?${q}`;
  } },
    field("Status", h("select", { id: "f-status", name: "status" }, h("option", { value: "" }, "Any status"),
      STATUSES.map((s) => h("option", { value: s, selected: s === status }, s.replace("_", " "))))),
    field("Operation", h("select", { id: "f-op", name: "op" }, h("option", { value: "" }, "Any operation"),
      ops.map((o) => h("option", { value: o.name, selected: o.name === op }, o.name)))),
    admin ? field("Tenant", h("input", { id: "f-tenant", name: "tenant", type: "search", list: "f-tenants",
      value: tenant, placeholder: "All tenants", autocomplete: "off" })) : null,
    admin ? h("datalist", { id: "f-tenants" }, (me.tenants || []).map((t) => h("option", { value: t }))) : null,
    field("Created", h("select", { id: "f-since", name: "since" },
      Object.entries(SINCE).map(([v, t]) => h("option", { value: v, selected: v === since }, t)))),
    field("Created before", h("input", { id: "f-created_before", name: "created_before", type: "datetime-local",
      value: before ? localInput(Number(before)) : "" })),
    h("div", {}, h("button", { type: "submit" }, "Apply filters")),
  );
  const search = h("form", { class: "card filters", role: "search", "aria-label": "Find a job by id",
    onsubmit: async (e) => {
      e.preventDefault();
      const id = search.querySelector("input").value.trim();
      if (!id) return;
      try {
        await api(`/v1/jobs/${encodeURIComponent(id)}`);
        location.hash = `#/job/${encodeURIComponent(id)}`;
      } catch (err) {
        flash(`${err.code}: ${err.message}`, true);
      }
    } },
    field("Job id", h("input", { id: "f-job-id", type: "search", placeholder: "job_…", autocomplete: "off" })),
    h("div", {}, h("button", { type: "submit", class: "secondary" }, "Open job")),
  );

  // the list is read again every 10 s and when a followed job ends; only the table and the page links are
  // replaced then, so a filter being edited keeps its value and the keyboard focus
  const results = h("div", { id: "job-results", "aria-live": "off" });
  let streams = null;
  let pending = null;
  const load = async () => {
    const params = new URLSearchParams({ limit: String(limit) });
    if (status) params.append("status", status);
    if (op) params.set("op", op);
    if (tenant && admin) params.set("tenant", tenant);
    if (before) params.set("before", before);
    const page = await api(`/v1/jobs?${params}`, { signal: ctx.signal });
    const floor = since ? Date.now() / 1000 - Number(since) : null;
    const jobs = floor ? page.jobs.filter((j) => Date.parse(j.created_at) / 1000 >= floor) : page.jobs;
    const more = page.next_before && !(floor && jobs.length < page.jobs.length);

    const tbody = h("tbody", {}, jobs.map((j) => row(j, admin)));
    const heads = ["Job", ...(admin ? ["Tenant"] : []), "Op", "Status", "Progress", "Stage / error", "Created", "Duration"];
    const scope = admin ? (tenant ? ` · tenant ${tenant}` : " · all tenants") : "";
    const table = h("div", { class: "table-wrap" }, h("table", { class: "jobs" },
      h("caption", { class: "hint table-caption", id: "jobs-caption" }, `${jobs.length} job(s) on this page${scope}`),
      h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))),
      tbody));
    if (!jobs.length) tbody.append(h("tr", {}, h("td", { colspan: heads.length, class: "empty" }, "No jobs match these filters.")));

    const nav = h("div", { class: "actions", role: "navigation", "aria-label": "Pages" });
    if (cursors.length || before) {
      const prev = new URLSearchParams(query);
      const back = cursors.slice(0, -1);
      const target = cursors.length ? cursors[cursors.length - 1] : "";
      if (target && target !== "-") prev.set("before", target); else prev.delete("before");
      if (back.length) prev.set("pages", back.join(",")); else prev.delete("pages");
      nav.append(h("a", { class: "button secondary", href: `#/jobs?${prev}`, id: "newer" }, "← Newer"));
    }
    if (more) {
      const next = new URLSearchParams(query);
      next.set("before", String(page.next_before));
      next.set("pages", [...cursors, before || "-"].join(","));
      nav.append(h("a", { class: "button secondary", href: `#/jobs?${next}`, id: "older" }, "Older →"));
    }
    const focused = results.contains(document.activeElement) ? document.activeElement.id : null;
    results.replaceChildren(table, nav);
    if (focused) document.getElementById(focused)?.focus();

    // live progress: the first running/queued jobs on the page follow their event stream
    streams?.abort();
    streams = new AbortController();
    ctx.signal.addEventListener("abort", () => streams.abort(), { once: true });
    let live = 0;
    for (const job of jobs) {
      if (TERMINAL.has(job.status) || live >= LIVE_STREAMS) continue;
      live++;
      const tr = tbody.querySelector(`tr[data-job="${CSS.escape(job.id)}"]`);
      streamEvents(job.id, (event, data) => {
        update(tr, data);
        if (event === "done") again();
      }, streams.signal).catch(() => {});
    }
  };
  const again = () => {
    if (!pending) pending = setTimeout(() => { pending = null; load().catch(() => {}); }, 300);
  };
  await load();
  const who = admin ? h("p", { class: "hint", id: "admin-note" },
    `Admin key (tenant ${me.tenant}): every tenant's jobs are listed; filter by tenant above.`) : null;
  main.replaceChildren(h("h1", {}, "Jobs"), ...(who ? [who] : []), form, search, results);
  ctx.every(10000, again);
}

function field(label, control) {
  return h("div", {}, h("label", { for: control.id }, label), control);
}

function localInput(ts) {
  const d = new Date(ts * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function row(job, admin) {
  return h("tr", { "data-job": job.id, "data-status": job.status, "data-tenant": job.tenant },
    h("td", { class: "id mono", "data-label": "Job" }, h("a", { href: `#/job/${encodeURIComponent(job.id)}` }, job.id)),
    admin ? h("td", { class: "cell-tenant", "data-label": "Tenant" }, job.tenant) : null,
    h("td", { "data-label": "Op" }, job.op),
    h("td", { "data-label": "Status", class: "cell-status" }, badge(job.status)),
    h("td", { "data-label": "Progress", class: "cell-progress" }, progressBar(job.progress, `Progress of ${job.id}`),
      " ", h("span", { class: "pct" }, pct(job.progress))),
    h("td", { "data-label": job.error ? "Error" : "Stage", class: "cell-stage" },
      job.error ? errorBlock(job.error, job.stage) : (job.stage || "—")),
    h("td", { "data-label": "Created" }, when(job.created_at)),
    h("td", { "data-label": "Duration" }, seconds(job.duration_s)),
  );
}

function update(tr, data) {
  if (!tr) return;
  tr.dataset.status = data.status;
  tr.querySelector(".cell-status").replaceChildren(badge(data.status));
  tr.querySelector(".cell-progress progress").value = Math.round((data.progress || 0) * 100);
  tr.querySelector(".cell-progress .pct").textContent = pct(data.progress);
  const stage = tr.querySelector(".cell-stage");
  stage.replaceChildren(data.error ? errorBlock(data.error, data.stage) : (data.stage || "—"));
}
