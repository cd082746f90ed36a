// Submit: a form per op generated from GET /v1/ops (params_schema), seeded with the op's shipped example;
// file upload (POST /v1/files) with a progress bar, its file id put into a field of the form.
import { api, uploadFile } from "./api.js";
import { h, flash, bytes } from "./dom.js";

export async function renderSubmit(main, opName, ctx) {
  const ops = await ctx.ops();
  const op = ops.find((o) => o.name === opName) || ops.find((o) => o.name === "render") || ops[0];
  const picker = h("select", { id: "op-select", onchange: (e) => { location.hash = `#/submit/${encodeURIComponent(e.target.value)}`; } },
    ops.map((o) => h("option", { value: o.name, selected: o.name === op.name }, o.name)));

  const schema = op.params_schema || {};
  const seed = op.example || {};
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([name, prop]) =>
    control(name, resolve(prop, schema), seed[name], required.has(name)));

  const error = h("div", { id: "submit-error", class: "error-text", role: "alert" });
  const form = h("form", { class: "card", id: "submit-form", "aria-labelledby": "op-h", novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = "";
    let params;
    try { params = collect(fields); } catch (err) { error.textContent = err.message; return; }
    const body = { op: op.name, params };
    const webhook = form.querySelector("#webhook_url").value.trim();
    if (webhook) body.webhook_url = webhook;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const job = await api("/v1/jobs", { method: "POST", json: body });
      flash(`Submitted ${job.id}.`);
      location.hash = `#/job/${encodeURIComponent(job.id)}`;
    } catch (err) {
      error.textContent = `${err.code}: ${err.message}`;
      button.disabled = false;
    }
  } },
    h("h2", { id: "op-h" }, op.name),
    h("p", { class: "hint" }, op.summary, ` · queue ${op.queue}`),
    fields.map((f) => f.el),
    h("div", { class: "field" }, h("label", { for: "webhook_url" }, "Webhook URL ", h("span", { class: "hint" }, "(optional)")),
      h("input", { id: "webhook_url", type: "text", inputmode: "url", autocomplete: "off" })),
    error,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Submit job"),
      h("button", { type: "button", class: "secondary", onclick: () => renderSubmit(main, op.name, ctx) }, "Reset to the example")));

  main.replaceChildren(h("h1", {}, "Submit a job"),
    h("div", { class: "card" }, h("label", { for: "op-select" }, "Operation"), picker),
    uploader(fields), form);
}

// $ref and Optional[...] (anyOf with null) resolved to the schema that describes the value
function resolve(prop, root) {
  let p = prop;
  for (let i = 0; i < 5 && p; i++) {
    if (p.$ref) { p = { ...(root.$defs || {})[p.$ref.split("/").pop()], ...strip(p, "$ref") }; continue; }
    const alts = p.anyOf || p.oneOf;
    if (alts) {
      const real = alts.filter((a) => a.type !== "null");
      if (real.length === 1) { p = { ...real[0], ...strip(p, "anyOf", "oneOf"), nullable: true }; continue; }
    }
    break;
  }
  return p || {};
}

function strip(obj, ...keys) {
  const out = { ...obj };
  for (const k of keys) delete out[k];
  return out;
}

function control(name, prop, seed, required) {
  const id = `param-${name}`;
  const title = prop.title || name;
  const hint = prop.description ? h("span", { class: "hint" }, ` — ${prop.description}`) : null;
  const value = seed !== undefined ? seed : prop.default;
  const label = h("label", { for: id }, title, required ? " *" : "", hint);
  let input, kind;
  if (prop.enum) {
    kind = "enum";
    input = h("select", { id, name },
      prop.nullable || !required ? h("option", { value: "" }, "(default)") : null,
      prop.enum.map((v) => h("option", { value: JSON.stringify(v), selected: value !== undefined && JSON.stringify(v) === JSON.stringify(value) }, String(v))));
  } else if (prop.type === "boolean") {
    kind = "boolean";
    input = h("input", { id, name, type: "checkbox", checked: Boolean(value) });
    return { name, kind, input, touched: () => seed !== undefined || input.checked !== Boolean(prop.default),
      el: h("div", { class: "field check" }, input, label) };
  } else if (prop.type === "integer" || prop.type === "number") {
    kind = "number";
    input = h("input", { id, name, type: "number", step: prop.type === "integer" ? "1" : "any",
      min: prop.minimum ?? prop.exclusiveMinimum, max: prop.maximum ?? prop.exclusiveMaximum,
      value: value ?? "" });
  } else if (prop.type === "string") {
    kind = "string";
    const long = (typeof value === "string" && (value.length > 80 || value.includes("\n"))) || (prop.maxLength || 0) > 1000;
    input = long ? h("textarea", { id, name, rows: 4, class: "prose" }, value ?? "") : h("input", { id, name, type: "text", value: value ?? "", autocomplete: "off" });
  } else {
    kind = "json";  // objects, arrays, unions: edited as JSON
    input = h("textarea", { id, name, rows: value !== undefined ? Math.min(16, JSON.stringify(value, null, 2).split("\n").length + 1) : 3 },
      value !== undefined ? JSON.stringify(value, null, 2) : "");
  }
  if (required) input.setAttribute("aria-required", "true");
  return { name, kind, input, el: h("div", { class: "field" }, label, input) };
}

// params from the form: empty fields are left out (the op's defaults apply)
function collect(fields) {
  const params = {};
  for (const f of fields) {
    const v = f.input.value;
    if (f.kind === "boolean") { if (f.touched()) params[f.name] = f.input.checked; continue; }
    if (v === "") continue;
    if (f.kind === "enum") params[f.name] = JSON.parse(v);
    else if (f.kind === "number") params[f.name] = Number(v);
    else if (f.kind === "string") params[f.name] = v;
    else {
      try { params[f.name] = JSON.parse(v); }
      catch { throw new Error(`${f.name}: not valid JSON.`); }
    }
  }
  return params;
}

function uploader(fields) {
  const targets = fields.filter((f) => f.kind === "string" || f.kind === "json");
  const file = h("input", { id: "upload-file", type: "file" });
  const target = h("select", { id: "upload-target" }, h("option", { value: "" }, "(only upload)"),
    targets.map((f, i) => h("option", { value: f.name, selected: i === 0 && /input|video|audio|image|src|subtitles/.test(f.name) }, f.name)));
  const bar = h("progress", { id: "upload-progress", max: 100, value: 0, "aria-label": "Upload progress" });
  const result = h("p", { id: "upload-result", role: "status", "aria-live": "polite" });
  const go = h("button", { type: "button", id: "upload-button", class: "secondary", onclick: async () => {
    const f = file.files[0];
    if (!f) { result.textContent = "Choose a file first."; return; }
    go.disabled = true;
    result.textContent = `Uploading ${f.name} (${bytes(f.size)})…`;
    try {
      const rec = await uploadFile(f, (p) => { bar.value = Math.round(p * 100); });
      result.replaceChildren("Uploaded: ", h("code", { id: "upload-id" }, rec.id), ` (${bytes(rec.size)})`);
      const t = fields.find((x) => x.name === target.value);
      if (t) t.input.value = t.kind === "json" ? JSON.stringify(rec.id) : rec.id;
    } catch (err) {
      result.textContent = `${err.code}: ${err.message}`;
    } finally { go.disabled = false; }
  } }, "Upload");
  return h("section", { class: "card upload", "aria-labelledby": "up-h" }, h("h2", { id: "up-h" }, "Upload a file"),
    h("p", { class: "hint" }, "Uploaded files are referred to by their id (file_…) in params."),
    h("div", { class: "filters" },
      h("div", {}, h("label", { for: "upload-file" }, "File"), file),
      h("div", {}, h("label", { for: "upload-target" }, "Put its id into"), target),
      h("div", {}, go)),
    h("div", { class: "upload-bar" }, bar), result);
}
