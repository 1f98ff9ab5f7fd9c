// SPDX-License-Identifier: Apache-2.0
// kiln playground: a form of the model's /openapi.json (its Input, in x-order), runs through the
// playground's proxy (/api/...), and what the model answers shown by kind. Model data is only ever put in
// the page as text or as a media element's URL, never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
let config = { target: "", webhook: "", ref: null };
let schema = null;
let fields = [];
let running = null; // {id, controller}
const HISTORY_KEY = "kiln-playground-history";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function api(path, opts) {
  return fetch("/api/" + path, opts);
}

// ---- the schema ----

function deref(s) {
  if (!s) return {};
  if (s.$ref) return deref(lookup(s.$ref));
  if (s.allOf && s.allOf.length === 1) {
    const inner = deref(s.allOf[0]);
    const out = Object.assign({}, inner, s);
    delete out.allOf;
    return out;
  }
  if (s.anyOf) { // Optional[X] and X | None: the type that is not null
    const some = s.anyOf.filter((x) => x.type !== "null");
    if (some.length === 1) {
      const out = Object.assign({}, deref(some[0]), s);
      delete out.anyOf;
      out.nullable = true;
      return out;
    }
  }
  return s;
}

function lookup(ref) {
  const m = /^#\/components\/schemas\/(.+)$/.exec(ref);
  return m && schema && schema.components && schema.components.schemas ? schema.components.schemas[m[1]] : {};
}

function kindOf(p) {
  if (p.enum) return "select";
  if (p.type === "boolean") return "bool";
  if (p.type === "integer" || p.type === "number")
    return p.minimum !== undefined && p.maximum !== undefined ? "slider" : "number";
  if (p.type === "array") {
    const items = deref(p.items || {});
    return items.format === "uri" ? "files" : "list";
  }
  if (p.type === "string" && p.format === "uri") return "file";
  if (p.type === "string" && (p["x-cog-secret"] || p.format === "password")) return "secret";
  if (p.type === "string") return "text";
  return "json";
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

function typed(p, text) {
  if (p.type === "integer" || p.type === "number") {
    const n = Number(text);
    return text.trim() !== "" && Number.isFinite(n) ? n : text;
  }
  return text;
}

// One input of the form: {name, el, value() -> Promise(value or undefined), set(v), error(msg)}.
function makeField(name, p, required) {
  const k = kindOf(p);
  const id = "in-" + name;
  const help = p.description ? el("p", { class: "help", id: id + "-help", text: p.description }) : null;
  const err = el("p", { class: "field-error", id: id + "-error", role: "alert" });
  const box = el("div", { class: "field", "data-name": name, "data-kind": k });
  const label = el("label", { for: id }, p.title || name, required ? el("span", { class: "req", text: " *" }) : null);
  const described = [help ? id + "-help" : null, id + "-error"].filter(Boolean).join(" ");
  let control, value, set;
  const hasDefault = p.default !== undefined && p.default !== null;
  if (k === "select") {
    control = el("select", { id, name, "aria-describedby": described });
    if (!required) control.append(el("option", { value: "", text: "(none)" }));
    p.enum.forEach((v, i) => control.append(el("option", { value: String(i), text: String(v) })));
    set = (v) => {
      const i = p.enum.findIndex((x) => x === v);
      control.value = i >= 0 ? String(i) : "";
    };
    value = async () => (control.value === "" ? undefined : p.enum[Number(control.value)]);
  } else if (k === "bool") {
    control = el("input", { type: "checkbox", id, name, "aria-describedby": described });
    set = (v) => { control.checked = !!v; };
    value = async () => control.checked;
  } else if (k === "slider" || k === "number") {
    const step = p.type === "integer" ? "1" : "any";
    const num = el("input", { type: "number", id, name, step, min: p.minimum, max: p.maximum, "aria-describedby": described });
    if (k === "slider") {
      const range = el("input", { type: "range", min: p.minimum, max: p.maximum, step: p.type === "integer" ? "1" : String((p.maximum - p.minimum) / 100), "aria-label": name + " (slider)", tabindex: "-1" });
      range.addEventListener("input", () => { num.value = range.value; });
      num.addEventListener("input", () => { if (num.value !== "") range.value = num.value; });
      control = el("div", { class: "slider" }, range, num);
      set = (v) => { num.value = v === undefined || v === null ? "" : String(v); if (num.value !== "") range.value = num.value; };
    } else {
      control = num;
      set = (v) => { num.value = v === undefined || v === null ? "" : String(v); };
    }
    value = async () => (num.value === "" ? undefined : typed(p, num.value));
  } else if (k === "list") {
    const items = deref(p.items || {});
    control = el("textarea", { id, name, rows: "3", placeholder: "one per line", "aria-describedby": described });
    set = (v) => { control.value = Array.isArray(v) ? v.join("\n") : ""; };
    value = async () => {
      const lines = control.value.split("\n").filter((l) => l.trim() !== "");
      if (!lines.length && !required) return undefined;
      return lines.map((l) => typed(items, l));
    };
  } else if (k === "file" || k === "files") {
    const many = k === "files";
    const input = el("input", { type: "file", id, name, multiple: many, "aria-describedby": described });
    const url = el("input", { type: "url", placeholder: many ? "or URLs, one per line" : "or a URL", "aria-label": name + " URL" });
    const chosen = el("p", { class: "chosen", text: "drop a file here" });
    let dropped = null;
    const show = () => {
      const files = dropped || Array.from(input.files);
      chosen.textContent = files.length ? files.map((f) => f.name + " (" + f.size + " bytes)").join(", ") : "drop a file here";
    };
    input.addEventListener("change", () => { dropped = null; show(); });
    control = el("div", { class: "drop" }, input, url, chosen);
    control.addEventListener("dragover", (e) => { e.preventDefault(); control.classList.add("over"); });
    control.addEventListener("dragleave", () => control.classList.remove("over"));
    control.addEventListener("drop", (e) => {
      e.preventDefault();
      control.classList.remove("over");
      dropped = Array.from(e.dataTransfer.files).slice(0, many ? undefined : 1);
      show();
    });
    set = (v) => { dropped = null; input.value = ""; url.value = typeof v === "string" && !v.startsWith("data:") ? v : ""; show(); };
    value = async () => {
      const files = dropped || Array.from(input.files);
      const urls = url.value.split("\n").map((s) => s.trim()).filter(Boolean);
      const all = (await Promise.all(files.map(readFile))).concat(urls);
      if (!all.length) return undefined;
      return many ? all : all[0];
    };
  } else if (k === "secret") {
    control = el("input", { type: "password", id, name, autocomplete: "off", "aria-describedby": described });
    set = (v) => { control.value = typeof v === "string" && v !== "**********" ? v : ""; };
    value = async () => (control.value === "" ? undefined : control.value);
  } else if (k === "text") {
    control = el("textarea", { id, name, rows: "2", maxlength: p.maxLength, "aria-describedby": described });
    set = (v) => { control.value = v === undefined || v === null ? "" : String(v); };
    value = async () => (control.value === "" && (!required || hasDefault) ? undefined : control.value);
  } else {
    control = el("textarea", { id, name, rows: "3", placeholder: "JSON", "aria-describedby": described });
    set = (v) => { control.value = v === undefined ? "" : JSON.stringify(v); };
    value = async () => {
      if (control.value.trim() === "") return undefined;
      try { return JSON.parse(control.value); } catch (e) { throw new FieldError(name, "not JSON: " + e.message); }
    };
  }
  box.append(label, help || "", control, err);
  const reset = () => set(p.default);
  reset();
  return {
    name, el: box, value, set, reset, kind: k,
    error(msg) { err.textContent = msg || ""; box.classList.toggle("invalid", !!msg); },
  };
}

class FieldError extends Error {
  constructor(name, msg) { super(msg); this.field = name; }
}

function buildForm() {
  const input = deref(lookup("#/components/schemas/Input"));
  const props = input.properties || {};
  const required = new Set(input.required || []);
  const names = Object.keys(props).sort((a, b) => (props[a]["x-order"] ?? 1e9) - (props[b]["x-order"] ?? 1e9));
  const box = $("fields");
  box.textContent = "";
  fields = names.map((n) => makeField(n, deref(props[n]), required.has(n)));
  fields.forEach((f) => box.append(f.el));
  if (!fields.length) box.append(el("p", { class: "muted", text: "This model takes no inputs." }));
  // an iterator's output streams: its pieces as they come
  const out = deref(lookup("#/components/schemas/Output"));
  if (out.type === "array" && out["x-cog-array-type"] === "iterator")
    document.querySelector("input[name=mode][value=stream]").checked = true;
}

// ---- health ----

async function pollHealth() {
  const h = $("health");
  try {
    const r = await api("health-check");
    const j = await r.json();
    const st = String(j.status || "unknown");
    let text = st;
    if (j.setup && j.setup.status && st !== "READY") text += " (setup " + j.setup.status + ")";
    if (j.user_healthcheck_error) text += ": " + j.user_healthcheck_error;
    h.textContent = text;
    h.className = "badge " + st.toLowerCase();
    if (!schema && st !== "STARTING") loadSchema();
  } catch (e) {
    h.textContent = "unreachable";
    h.className = "badge down";
  }
  setTimeout(pollHealth, 2000);
}

async function loadSchema() {
  try {
    const r = await api("openapi.json");
    if (!r.ok) return;
    schema = await r.json();
    buildForm();
  } catch (e) {
    $("form-error").textContent = "cannot read the model's schema: " + e.message;
  }
}

// ---- a run ----

function newId() {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return "pg" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function collect() {
  const input = {};
  let bad = false;
  for (const f of fields) {
    f.error("");
    try {
      const v = await f.value();
      if (v !== undefined) input[f.name] = v;
    } catch (e) {
      f.error(e.message);
      bad = true;
    }
  }
  return bad ? null : input;
}

function clearResult() {
  $("output").textContent = "";
  $("error").textContent = "";
  $("logs").textContent = "";
  $("metrics").textContent = "";
  $("predict-time").textContent = "";
  $("webhooks").textContent = "";
  $("form-error").textContent = "";
}

function setStatus(st) {
  const s = $("status");
  s.textContent = st;
  s.className = "badge " + st;
}

function mediaKind(url) {
  const m = /^data:([^;,]+)/.exec(url);
  const type = m ? m[1] : "";
  const ext = (/\.([a-z0-9]+)(?:[?#].*)?$/i.exec(url) || [])[1] || "";
  const e = ext.toLowerCase();
  if (type.startsWith("image/") || ["png", "jpg", "jpeg", "gif", "webp", "bmp", "svg"].includes(e)) return "image";
  if (type.startsWith("audio/") || ["wav", "mp3", "ogg", "flac", "m4a", "opus"].includes(e)) return "audio";
  if (type.startsWith("video/") || ["mp4", "webm", "mov", "mkv"].includes(e)) return "video";
  return "file";
}

function isUrl(v) {
  return typeof v === "string" && /^(data:|https?:\/\/)/.test(v);
}

function renderValue(v) {
  if (v === null || v === undefined) return el("p", { class: "muted", text: "No output" });
  if (Array.isArray(v)) {
    const box = el("div", { class: "list" });
    v.forEach((x) => box.append(renderValue(x)));
    return box;
  }
  if (isUrl(v)) {
    const k = mediaKind(v);
    if (k === "image") return el("img", { src: v, alt: "output image" });
    if (k === "audio") return el("audio", { src: v, controls: true });
    if (k === "video") return el("video", { src: v, controls: true });
    const name = v.startsWith("data:") ? "output" : v.split("/").pop().split("?")[0] || "output";
    return el("p", {}, el("a", { href: v, download: name, text: "download " + name }));
  }
  if (typeof v === "object") return el("pre", { class: "json", text: JSON.stringify(v, null, 2) });
  return el("pre", { class: "text", text: String(v) });
}

function showResponse(j) {
  setStatus(j.status || "unknown");
  if (j.output !== undefined) {
    $("output").textContent = "";
    $("output").append(renderValue(j.output));
  }
  $("error").textContent = j.error ? String(j.error) : "";
  if (typeof j.logs === "string") $("logs").textContent = j.logs;
  const m = j.metrics || {};
  if (m.predict_time !== undefined) $("predict-time").textContent = "predict_time " + Number(m.predict_time).toFixed(3) + " s";
  const t = $("metrics");
  t.textContent = "";
  for (const [k, v] of Object.entries(m))
    t.append(el("tr", {}, el("td", { text: k }), el("td", { text: typeof v === "object" ? JSON.stringify(v) : String(v) })));
}

// A 422's detail (Cog's {detail: [{loc, msg}]}): each message next to its field.
function showValidation(j) {
  const detail = Array.isArray(j.detail) ? j.detail : [];
  let placed = false;
  for (const d of detail) {
    const loc = Array.isArray(d.loc) ? d.loc : [];
    const name = loc[0] === "body" && loc[1] === "input" ? loc[2] : loc[loc.length - 1];
    const f = fields.find((x) => x.name === name);
    if (f) { f.error(d.msg); placed = true; }
  }
  setStatus("failed");
  $("form-error").textContent = placed ? "The model refused some inputs: see the fields." :
    j.detail || j.error ? JSON.stringify(j.detail || j.error) : "The model refused the request.";
}

function shellQuote(s) {
  return "'" + s.replace(/'/g, "'\\''") + "'";
}

function showCommands(input, mode) {
  const body = JSON.stringify({ input });
  const shown = body.length > 4000 ? body.slice(0, 4000) + "…" : body;
  let curl = "curl -s -X POST " + config.target + "/predictions -H 'Content-Type: application/json'";
  if (mode === "stream") curl += " -H 'Accept: text/event-stream'";
  if (mode === "async") curl += " -H 'Prefer: respond-async'";
  $("curl").textContent = curl + " \\\n  -d " + shellQuote(shown);
  $("kiln").textContent = "kiln predict " + (config.ref || "IMAGE") + " --json " + shellQuote(JSON.stringify(input).slice(0, 4000));
}

async function readStream(r) {
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  let pieces = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      let d = null;
      try { d = JSON.parse(data); } catch (e) { d = data; }
      if (event === "start") setStatus("processing");
      else if (event === "output") {
        if (!pieces) { pieces = el("div", { class: "pieces" }); $("output").textContent = ""; $("output").append(pieces); }
        const piece = renderValue(d && d.chunk !== undefined ? d.chunk : d);
        piece.classList.add("piece");
        pieces.append(piece);
      } else if (event === "log") $("logs").textContent += d && d.data !== undefined ? d.data : String(d);
      else if (event === "metric") {
        $("metrics").append(el("tr", {}, el("td", { text: String(d.name) }), el("td", { text: JSON.stringify(d.value) })));
      } else if (event === "completed") {
        // the pieces shown stay: the whole output is theirs
        showResponse(pieces ? Object.assign({}, d, { output: undefined }) : d);
      } else if (event === "error") {
        $("error").textContent = d && d.error ? d.error : String(data);
      }
    }
  }
}

async function pollWebhooks(id, after) {
  let last = after;
  for (;;) {
    if (!running || running.id !== id) return;
    let j;
    try {
      const r = await fetch("/playground/events?after=" + last, { signal: running.controller.signal });
      j = await r.json();
    } catch (e) {
      return;
    }
    last = j.last;
    for (const ev of j.events) {
      const b = ev.body || {};
      if (b.id !== id) continue;
      const li = el("li", {}, el("span", { class: "badge " + b.status, text: b.status }), " ",
        el("span", { class: "muted", text: new Date(ev.received_at * 1000).toISOString() }));
      $("webhooks").append(li);
      showResponse(b);
      if (["succeeded", "failed", "canceled"].includes(b.status)) return b;
    }
  }
}

async function run(e) {
  e.preventDefault();
  if (running) return;
  const mode = document.querySelector("input[name=mode]:checked").value;
  const input = await collect();
  if (input === null) return;
  clearResult();
  showCommands(input, mode);
  const id = newId();
  const controller = new AbortController();
  running = { id, controller };
  $("run").disabled = true;
  $("cancel").disabled = false;
  setStatus("starting");
  const headers = { "Content-Type": "application/json" };
  const body = { input };
  if (mode === "stream") headers.Accept = "text/event-stream";
  let after = 0;
  if (mode === "async") {
    headers.Prefer = "respond-async";
    body.webhook = config.webhook;
    body.webhook_events_filter = ["start", "output", "logs", "completed"];
    $("webhooks-box").open = true;
    try { after = (await (await fetch("/playground/events")).json()).last; } catch (e2) { after = 0; }
  }
  let final = null;
  try {
    const r = await api("predictions/" + id, { method: "PUT", headers, body: JSON.stringify(body), signal: controller.signal });
    const type = r.headers.get("Content-Type") || "";
    if (type.startsWith("text/event-stream")) {
      await readStream(r);
    } else {
      const j = await r.json().catch(() => ({ error: "the answer is not JSON (HTTP " + r.status + ")" }));
      if (r.status === 422) showValidation(j);
      else if (!r.ok && r.status !== 202) { setStatus("failed"); $("error").textContent = j.error || JSON.stringify(j); }
      else if (mode === "async") { setStatus(j.status || "starting"); final = await pollWebhooks(id, after); }
      else { showResponse(j); final = j; }
    }
  } catch (err) {
    if (err.name !== "AbortError") { setStatus("failed"); $("error").textContent = String(err.message || err); }
  } finally {
    running = null;
    $("run").disabled = false;
    $("cancel").disabled = true;
  }
  remember(input, mode, final || { status: $("status").textContent });
}

async function cancel() {
  if (!running) return;
  const id = running.id;
  $("cancel").disabled = true;
  try { await api("predictions/" + id + "/cancel", { method: "POST" }); } catch (e) { /* shown by the run */ }
}

// ---- history ----

function history() {
  try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]"); } catch (e) { return []; }
}

function remember(input, mode, res) {
  const small = {};
  const secret = new Set(fields.filter((f) => f.kind === "secret").map((f) => f.name));
  for (const [k, v] of Object.entries(input))
    small[k] = secret.has(k) ? "**********" : typeof v === "string" && v.startsWith("data:") ? "(file)" : v;
  const h = [{ at: new Date().toISOString(), mode, input: small, status: res.status || "" }].concat(history()).slice(0, 20);
  try { localStorage.setItem(HISTORY_KEY, JSON.stringify(h)); } catch (e) { /* full: not kept */ }
  showHistory();
}

function showHistory() {
  const list = $("history");
  list.textContent = "";
  for (const item of history()) {
    const again = el("button", { type: "button", text: "use", "aria-label": "use these inputs again" });
    again.addEventListener("click", () => {
      for (const f of fields) f.set(item.input[f.name] !== undefined && item.input[f.name] !== "(file)" ? item.input[f.name] : undefined);
      document.querySelector("input[name=mode][value=" + item.mode + "]").checked = true;
    });
    list.append(el("li", {}, again, " ", el("span", { class: "badge " + item.status, text: item.status }), " ",
      el("span", { class: "muted", text: item.at + " " }), el("code", { text: JSON.stringify(item.input).slice(0, 200) })));
  }
  if (!list.children.length) list.append(el("li", { class: "muted", text: "Nothing run yet." }));
}

async function start() {
  try { config = await (await fetch("/playground/config")).json(); } catch (e) { /* defaults */ }
  $("target").textContent = config.target;
  $("form").addEventListener("submit", run);
  $("cancel").addEventListener("click", cancel);
  $("reset").addEventListener("click", () => fields.forEach((f) => { f.reset(); f.error(""); }));
  showHistory();
  await loadSchema();
  pollHealth();
}

start();
