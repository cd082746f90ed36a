// The dashboard shell: hash routes (#/jobs, #/job/ID, #/submit/OP, #/system, #/batches, #/batch/ID), the key dialog, and a
// per-view context that cancels the previous view's streams and timers when the view changes.
import { api, getKey, setKey } from "./api.js";
import { flash, h } from "./dom.js";
import { renderJobs } from "./jobs.js";
import { renderJob } from "./job.js";
import { renderSubmit } from "./submit.js";
import { renderSystem } from "./system.js";
import { renderBatch, renderBatches } from "./batches.js";

let opsCache = null;
let meCache = null;
let current = null;

function makeContext() {
  const controller = new AbortController();
  const timers = [];
  const urls = [];
  let pending = null;
  const ctx = {
    signal: controller.signal,
    pageSize: 25,
    ops: async () => (opsCache ??= (await api("/v1/ops")).ops),
    // who the key is: {tenant, admin, tenants}; an admin key sees every tenant's jobs
    me: async () => (meCache ??= await api("/v1/me")),
    every: (ms, fn) => timers.push(setInterval(fn, ms)),
    refreshSoon: () => { if (!pending) pending = setTimeout(() => { pending = null; route(false); }, 300); },
    objectUrl: (blob) => { const u = URL.createObjectURL(blob); urls.push(u); return u; },
    close: () => {
      controller.abort();
      timers.forEach(clearInterval);
      if (pending) clearTimeout(pending);
      urls.forEach((u) => URL.revokeObjectURL(u));
    },
  };
  return ctx;
}

async function route(moveFocus = true) {
  const main = document.getElementById("main");
  const [path, qs] = (location.hash.slice(1) || "/jobs").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const query = new URLSearchParams(qs || "");
  const section = parts[0] || "jobs";
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === (section === "job" ? "jobs" : section === "batch" ? "batches" : section)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const scrollY = window.scrollY;
  const focusedId = moveFocus ? null : document.activeElement?.id;  // a redraw keeps the keyboard focus
  main.dataset.rendering = "1";  // tests (and assistive tech via aria-busy) know when a view is complete
  main.setAttribute("aria-busy", "true");
  current?.close();
  const ctx = current = makeContext();
  try {
    if (section === "job" && parts[1]) await renderJob(main, parts[1], ctx);
    else if (section === "submit") await renderSubmit(main, parts[1], ctx);
    else if (section === "system") await renderSystem(main, ctx);
    else if (section === "batches") await renderBatches(main, ctx);
    else if (section === "batch" && parts[1]) await renderBatch(main, parts[1], ctx);
    else await renderJobs(main, query, ctx);
    document.title = `${main.querySelector("h1")?.textContent || "Dashboard"} · ReelForge`;
    if (moveFocus) { main.focus({ preventScroll: true }); window.scrollTo(0, 0); }
    else {
      window.scrollTo(0, scrollY);
      if (focusedId) document.getElementById(focusedId)?.focus({ preventScroll: true });
    }
  } catch (err) {
    if (err.name === "AbortError") return;
    main.replaceChildren(h("h1", {}, "Something went wrong"),
      h("p", { class: "error-text", id: "view-error" }, `${err.code || "error"}: ${err.message}`));
  } finally {
    if (current === ctx) {
      delete main.dataset.rendering;
      main.removeAttribute("aria-busy");
      main.dataset.view = location.hash;
    }
  }
}

function keyDialog(message = "") {
  const dialog = document.getElementById("key-dialog");
  document.getElementById("key-error").textContent = message;
  if (dialog.open) return;  // already asking: keep what is being typed
  document.getElementById("key-input").value = getKey();
  dialog.showModal();
}

function updateKeyButton() {
  document.getElementById("key-button").textContent = getKey() ? "API key: set" : "API key: none";
}

document.getElementById("key-button").addEventListener("click", () => keyDialog());
// the skip link moves focus without touching the hash (the hash is the route)
document.querySelector(".skip").addEventListener("click", (e) => {
  e.preventDefault();
  document.getElementById("main").focus();
});
document.getElementById("key-dialog").addEventListener("close", () => {
  const dialog = document.getElementById("key-dialog");
  sessionStorage.setItem("reelforge.keyAsked", "1");
  if (dialog.returnValue === "save") setKey(document.getElementById("key-input").value.trim());
  else if (dialog.returnValue === "forget") setKey("");
  else return;
  updateKeyButton();
  opsCache = null;
  meCache = null;
  flash(getKey() ? "Key saved for this browser tab." : "No key: requests go without one.");
  route();
});
window.addEventListener("reelforge:auth", (e) => keyDialog(`${e.detail.code}: ${e.detail.message}`));
window.addEventListener("hashchange", () => route());
updateKeyButton();
// asked once per browser session: a saved key, or an explicit "no key" (a loopback install needs none)
if (!getKey() && !sessionStorage.getItem("reelforge.keyAsked")) keyDialog();
route(false);  // on load, focus stays at the top of the page (the skip link comes first)
