// The dashboard's only way to the service: the public /v1 API, with the key from sessionStorage sent as a
// header. The key is never put in a URL: server-sent events are read with fetch() streaming (EventSource
// cannot send headers) and outputs are fetched as blobs and shown through blob: URLs.

const KEY = "reelforge.apiKey";

export function getKey() { return sessionStorage.getItem(KEY) || ""; }
export function setKey(key) { if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY); }

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status; this.code = code; this.details = details;
  }
}

function headers(extra = {}) {
  const h = { ...extra };
  const key = getKey();
  if (key) h["X-API-Key"] = key;
  return h;
}

async function failure(resp, keyUsed) {
  let code = `http_${resp.status}`, message = `${resp.status} ${resp.statusText}`, details;
  try {
    const body = await resp.json();
    if (body && body.error) ({ code, message, details } = body.error);
  } catch { /* not JSON */ }
  const err = new ApiError(resp.status, code, message, details);
  // ask for a key when this key (not one replaced since the request left) was refused
  if (resp.status === 401 && keyUsed === getKey()) window.dispatchEvent(new CustomEvent("reelforge:auth", { detail: err }));
  return err;
}

export async function api(path, { method = "GET", json, signal } = {}) {
  const init = { method, headers: headers(json === undefined ? {} : { "Content-Type": "application/json" }), signal };
  if (json !== undefined) init.body = JSON.stringify(json);
  const key = getKey();
  const resp = await fetch(path, init);
  if (!resp.ok) throw await failure(resp, key);
  const type = resp.headers.get("content-type") || "";
  return type.includes("json") ? resp.json() : resp.text();
}

// Reads GET /v1/jobs/{id}/events until the job ends or signal aborts; calls onEvent(name, data).
export async function streamEvents(jobId, onEvent, signal) {
  const key = getKey();
  const resp = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`,
    { headers: headers({ Accept: "text/event-stream" }), signal });
  if (!resp.ok) throw await failure(resp, key);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) onEvent(event, JSON.parse(data));
    }
  }
}

// An output's bytes: our own route needs the key (header); a storage's presigned URL needs none.
export async function fetchBlob(url, signal) {
  const own = sameOriginPath(url);
  const key = getKey();
  const resp = await fetch(own ?? url, own ? { headers: headers(), signal } : { signal });
  if (!resp.ok) throw await failure(resp, own ? key : null);
  return resp.blob();
}

// "/v1/jobs/x/outputs/y" for a URL of this service (whatever public_url says), else null.
export function sameOriginPath(url) {
  const u = new URL(url, location.href);
  if (u.pathname.startsWith("/v1/jobs/") && (u.origin === location.origin || !u.search)) {
    return u.pathname;
  }
  return null;
}

// POST /v1/files with upload progress (fetch cannot report it; XMLHttpRequest can, and takes the header).
export function uploadFile(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/files?filename=${encodeURIComponent(file.name)}`);
    for (const [k, v] of Object.entries(headers({ "Content-Type": file.type || "application/octet-stream" }))) {
      xhr.setRequestHeader(k, v);
    }
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) { onProgress(1); resolve(body); return; }
      const e = body && body.error ? body.error : { code: `http_${xhr.status}`, message: xhr.statusText };
      reject(new ApiError(xhr.status, e.code, e.message, e.details));
    };
    xhr.onerror = () => reject(new ApiError(0, "network_error", "The upload could not reach the service."));
    xhr.send(file);
  });
}
