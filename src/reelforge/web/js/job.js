// One job: status and progress (live over the events stream), error, timings, notes, params, outputs
// previewed inline and downloadable, webhook attempts; cancel, retry, copy as curl / CLI.
import { api, streamEvents, fetchBlob, sameOriginPath } from "./api.js";
import { h, badge, when, seconds, bytes, pct, progressBar, errorBlock, TERMINAL, flash } from "./dom.js";

const PREVIEW_MAX = 256 * 1024 * 1024;  // bigger outputs are previewed on request (they are read into memory)
const TEXT_TYPES = /^(text\/|application\/(json|x-subrip|x-ass|x-ssa))|\.(srt|vtt|ass|ssa|json|txt)$/i;

export async function renderJob(main, jobId, ctx) {
  const job = await api(`/v1/jobs/${encodeURIComponent(jobId)}`);
  draw(main, job, ctx);
  if (!TERMINAL.has(job.status)) {
    streamEvents(job.id, async (event, data) => {
      if (event === "done") { live(main, data); ctx.refreshSoon(); return; }  // read again: with webhook attempts
      live(main, data);
    }, ctx.signal).catch((err) => { if (err.name !== "AbortError") flash(`Live updates stopped: ${err.message}`, true); });
  }
}

function live(main, data) {
  const box = main.querySelector("#job-status");
  if (!box) return;
  box.querySelector(".status-badge").replaceChildren(badge(data.status));
  box.querySelector("progress").value = Math.round((data.progress || 0) * 100);
  box.querySelector("#job-pct").textContent = pct(data.progress);
  box.querySelector("#job-stage").textContent = data.stage || "—";
  const cancel = main.querySelector("#cancel");
  if (cancel) cancel.disabled = TERMINAL.has(data.status);
}

function draw(main, job, ctx) {
  const terminal = TERMINAL.has(job.status);
  const retryable = ["failed", "cancelled", "timed_out"].includes(job.status);
  const actions = h("div", { class: "actions" },
    h("button", { id: "cancel", type: "button", class: "danger", disabled: terminal, onclick: async (e) => {
      e.target.disabled = true;
      try { await api(`/v1/jobs/${encodeURIComponent(job.id)}/cancel`, { method: "POST" }); flash("Cancel requested."); }
      catch (err) { flash(`${err.code}: ${err.message}`, true); e.target.disabled = false; }
    } }, "Cancel"),
    h("button", { id: "retry", type: "button", disabled: !retryable, onclick: async () => {
      try {
        const next = await api(`/v1/jobs/${encodeURIComponent(job.id)}/retry`, { method: "POST" });
        flash(`Retrying as ${next.id}.`);
        location.hash = `#/job/${encodeURIComponent(next.id)}`;
      } catch (err) { flash(`${err.code}: ${err.message}`, true); }
    } }, "Retry"),
    h("button", { id: "copy-curl", type: "button", class: "secondary", onclick: () => copy(curlFor(job), "curl command") },
      "Copy as curl"),
    h("button", { id: "copy-cli", type: "button", class: "secondary", onclick: () => copy(cliFor(job), "CLI command") },
      "Copy as CLI"),
  );

  const status = h("section", { id: "job-status", class: "card job-progress", "aria-labelledby": "st-h" },
    h("h2", { id: "st-h" }, "Status"),
    h("p", {}, h("span", { class: "status-badge" }, badge(job.status)), " ",
      h("span", { id: "job-pct" }, pct(job.progress)), " · stage ", h("strong", { id: "job-stage" }, job.stage || "—")),
    progressBar(job.progress, "Job progress"),
    job.error ? h("div", { id: "job-error" }, h("h3", {}, "Error"), errorBlock(job.error, job.stage)) : null,
    actions);

  const timeline = h("ol", { class: "timeline", "aria-label": "Timeline" },
    h("li", {}, `created ${when(job.created_at)}`),
    job.started_at ? h("li", {}, `waited ${seconds((Date.parse(job.started_at) - Date.parse(job.created_at)) / 1000)}`) : null,
    job.started_at ? h("li", {}, `started ${when(job.started_at)}`) : null,
    job.finished_at ? h("li", {}, `ran ${seconds(job.duration_s)}`) : null,
    job.finished_at ? h("li", {}, `${job.status} ${when(job.finished_at)}`) : null);

  const notes = { ...job.notes };
  const stages = stageTimeline(job);
  const facts = h("section", { class: "card", "aria-labelledby": "facts-h" }, h("h2", { id: "facts-h" }, "Details"),
    timeline, stages,
    kv([["Operation", job.op], ["Tenant", job.tenant], ["Queue", job.queue], ["Priority", job.priority],
      ["Attempts", `${job.attempts} of ${job.max_attempts}`], ["Timeout", seconds(job.timeout_s)],
      ["Encoder", job.encoder || notes.encoder || "—"], ["Device", job.device || notes.device || "—"],
      ["Backend", notes.backend || notes.executor || "—"], ["Cost", notes.cost ?? "not known"],
      ...Object.entries(notes).filter(([k]) => !["encoder", "device", "backend", "executor", "cost", "stages"].includes(k))
        .map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)])]));

  const params = h("section", { class: "card", "aria-labelledby": "params-h" }, h("h2", { id: "params-h" }, "Params"),
    h("pre", { class: "json", id: "params-json", tabindex: 0 }, JSON.stringify(job.params, null, 2)));

  const outputs = h("section", { class: "card", id: "outputs", "aria-labelledby": "out-h" }, h("h2", { id: "out-h" }, "Outputs"));
  const entries = Object.entries(job.result?.outputs || {});
  if (!entries.length) outputs.append(h("p", { class: "empty" }, terminal ? "No outputs." : "Outputs appear when the job succeeds."));
  for (const [name, meta] of entries) outputs.append(output(job, name, meta, ctx));
  if (job.result?.data && Object.keys(job.result.data).length) {
    outputs.append(h("h3", {}, "Result data"), h("pre", { class: "json", tabindex: 0 }, JSON.stringify(job.result.data, null, 2)));
  }

  const hooks = h("section", { class: "card", "aria-labelledby": "wh-h" }, h("h2", { id: "wh-h" }, "Webhook"));
  if (!job.webhook_url) hooks.append(h("p", { class: "empty" }, "No webhook for this job."));
  else {
    hooks.append(h("p", { class: "mono" }, job.webhook_url));
    const attempts = job.webhook_attempts || [];
    hooks.append(attempts.length ? h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, Object.keys(attempts[0]).map((k) => h("th", { scope: "col" }, k)))),
      h("tbody", {}, attempts.map((a) => h("tr", {}, Object.values(a).map((v) => h("td", {}, typeof v === "object" ? JSON.stringify(v) : String(v))))))))
      : h("p", { class: "empty" }, "No delivery attempts yet."));
  }

  main.replaceChildren(h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")),
    h("h1", {}, h("span", { class: "mono", id: "job-id" }, job.id), " ", h("span", { class: "hint" }, job.op)),
    status, h("div", { class: "grid2" }, facts, params), outputs, hooks);
}

// notes.stages: [[stage, seconds since the attempt started], ...] written by the runner when the stage changes
function stageTimeline(job) {
  const stages = Array.isArray(job.notes?.stages) ? job.notes.stages : [];
  if (!stages.length) return null;
  const end = TERMINAL.has(job.status) ? job.duration_s : null;
  return h("div", {}, h("h3", {}, "Stages"), h("ol", { class: "timeline stages", id: "stages", "aria-label": "Stages with durations" },
    stages.map(([name, at], i) => {
      const next = i + 1 < stages.length ? stages[i + 1][1] : end;
      return h("li", { "data-stage": name }, `${name} `, h("span", { class: "hint" }, next !== null && next !== undefined ? seconds(Math.max(0, next - at)) : "…"));
    })));
}

function kv(rows) {
  return h("dl", { class: "kv" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
}

function output(job, name, meta, ctx) {
  const type = meta.content_type || "";
  const box = h("div", { class: "output", "data-output": name },
    h("h3", {}, name, " ", h("span", { class: "hint" }, `${type || "unknown type"} · ${bytes(meta.size)}`)));
  const filename = meta.filename || name;
  const preview = h("div", { class: "preview" });
  const load = async () => {
    preview.replaceChildren(h("p", { class: "hint" }, "Loading preview…"));
    try {
      const blob = await fetchBlob(meta.url, ctx.signal);
      const url = ctx.objectUrl(blob);
      let el;
      if (type.startsWith("video/")) el = h("video", { controls: true, preload: "metadata", src: url, "aria-label": `Video ${name}` });
      else if (type.startsWith("audio/")) el = h("audio", { controls: true, preload: "metadata", src: url, "aria-label": `Audio ${name}` });
      else if (type.startsWith("image/")) el = h("img", { src: url, alt: `Output ${name}` });
      else if (TEXT_TYPES.test(type) || TEXT_TYPES.test(filename)) {
        el = h("pre", { class: "text", tabindex: 0 }, (await blob.slice(0, 256 * 1024).text()));
      } else el = h("p", { class: "hint" }, "No preview for this type.");
      preview.replaceChildren(el);
    } catch (err) {
      if (err.name !== "AbortError") preview.replaceChildren(h("p", { class: "error-text" }, `${err.code || ""} ${err.message}`));
    }
  };
  const download = h("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      const blob = await fetchBlob(meta.url, ctx.signal);
      const a = h("a", { href: ctx.objectUrl(blob), download: filename });
      document.body.append(a); a.click(); a.remove();
    } catch (err) { flash(`${err.code || "download_failed"}: ${err.message}`, true); }
  } }, `Download ${filename}`);
  box.append(preview, h("div", { class: "actions" }, download));
  if ((meta.size || 0) <= PREVIEW_MAX) load();
  else preview.append(h("button", { type: "button", class: "secondary", onclick: load }, "Load preview"));
  return box;
}

function shellQuote(s) { return `'${String(s).replaceAll("'", "'\\''")}'`; }

// the key is never copied: the commands read it from $REELFORGE_API_KEY
function curlFor(job) {
  const body = { op: job.op, params: job.params };
  if (job.webhook_url) body.webhook_url = job.webhook_url;
  return `curl -sS -X POST ${shellQuote(`${location.origin}/v1/jobs`)} -H 'Content-Type: application/json' ` +
    `-H "X-API-Key: $REELFORGE_API_KEY" -d ${shellQuote(JSON.stringify(body))}`;
}

function cliFor(job) {
  return `REELFORGE_URL=${shellQuote(location.origin)} reelforge submit --op ${shellQuote(job.op)} ` +
    `--params ${shellQuote(JSON.stringify(job.params))} --wait`;
}

async function copy(text, what) {
  try { await navigator.clipboard.writeText(text); flash(`Copied the ${what}.`); }
  catch { window.prompt(`Copy the ${what}:`, text); }
  document.getElementById("flash").dataset.copied = text;
}
