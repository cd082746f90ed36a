// Tiny DOM helpers: every value goes in as text (never as HTML), so job params and errors cannot inject markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function flash(message, bad = false) {
  const el = document.getElementById("flash");
  el.textContent = message;
  el.className = bad ? "bad" : "";
  clearTimeout(flash.timer);
  if (message && !bad) flash.timer = setTimeout(() => { if (el.textContent === message) el.textContent = ""; }, 8000);
}

export function badge(status) {
  return h("span", { class: `badge status-${status}`, "data-status": status }, status.replace("_", " "));
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function seconds(s) {
  if (s === null || s === undefined) return "—";
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function pct(p) { return `${Math.round((p || 0) * 100)}%`; }

export function progressBar(p, label) {
  return h("progress", { max: 100, value: Math.round((p || 0) * 100), "aria-label": label });
}

export function errorBlock(err, stage) {
  if (!err) return null;
  // the stage the job failed in (error.stage); a finished job's own stage is just its final status
  const where = err.stage || (stage && !TERMINAL.has(stage) ? stage : null);
  return h("div", { class: "job-error", role: "note" },
    h("span", { class: "err-code" }, err.code), " — ", h("span", { class: "err-message" }, err.message),
    where ? h("span", { class: "hint" }, ` (stage: ${where})`) : null);
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
export const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled", "timed_out"];
