// hootwatch review: one item at a time; every label is shown as saved only after the server committed it.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { items: [], i: 0, undo: [], busy: false };
const LABELS = { y: "owl", n: "not_owl", u: "unsure" };

function params(extra) {
  const p = new URLSearchParams();
  for (const k of ["queue", "order", "recorder", "night", "min_score", "max_score"]) p.set(k, $(k).value);
  for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
  return p;
}

async function api(path, opts) {
  const r = await fetch(path, opts);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.detail || body.error || r.statusText);
  return body;
}

function spanQuery(it) {
  return new URLSearchParams({ file_key: it.file_key, start_s: it.start_s, end_s: it.end_s, pad_s: 2 });
}

function fmtOffset(s) {
  const m = Math.floor(s / 60);
  return `${m}:${(s - m * 60).toFixed(1).padStart(4, "0")} (${s.toFixed(2)} s)`;
}

function showProgress() {
  const it = state.items;
  const done = it.filter((x) => x.label).length;
  const owl = it.filter((x) => x.label === "owl").length;
  const not = it.filter((x) => x.label && x.label !== "owl" && x.label !== "unsure").length;
  $("progress").textContent = `${done} / ${it.length} reviewed; ${owl} owl, ${not} not owl` +
    (it.length ? `; item ${Math.min(state.i + 1, it.length)}` : "");
}

function show() {
  showProgress();
  const it = state.items[state.i];
  $("item").hidden = !it;
  $("empty").hidden = !!it;
  $("empty").textContent = state.items.length ? "End of the queue (← to go back)." : "Nothing to review in this queue.";
  if (!it) return;
  const q = spanQuery(it);
  $("spec").src = "/api/spectrogram.png?" + q;
  $("audio").src = "/api/clip.wav?" + q;
  $("i-score").textContent = it.score === null ? "not scored (first stage passed it over)" : it.score.toFixed(3);
  $("i-time").textContent = it.begin_local.replace("T", " ");
  $("i-recorder").textContent = it.recorder;
  $("i-file").textContent = it.file;
  $("i-offset").textContent = fmtOffset(it.start_s);
  $("i-label").textContent = it.label || "not reviewed";
  document.body.dataset.item = String(state.i);
}

async function load() {
  $("status").textContent = "";
  const body = await api("/api/queue?" + params());
  state.items = body.items;
  state.undo = [];
  $("q-desc").textContent = body.description || "";
  const first = state.items.findIndex((x) => !x.label);
  state.i = first < 0 ? state.items.length : first;
  document.body.dataset.loaded = "1";
  show();
}

async function fillFilters() {
  const f = await api("/api/filters");
  for (const [id, values] of [["recorder", f.recorders], ["night", f.nights]]) {
    for (const v of values) { const o = document.createElement("option"); o.value = o.textContent = v; $(id).appendChild(o); }
  }
}

async function label(value, it, advanceTo) {
  state.busy = true;
  $("status").className = "";
  $("status").textContent = "saving…";
  try {
    const saved = await api("/api/labels", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ file_key: it.file_key, start_s: it.start_s, end_s: it.end_s, label: value,
                             reviewer: $("reviewer").value }),
    });
    it.label = value;
    state.i = advanceTo;
    $("status").textContent = value ? `saved: ${value}` : "label removed";
    show();
    return saved;
  } catch (e) {
    $("status").className = "error";
    $("status").textContent = "NOT saved: " + e.message;
    return null;
  } finally {
    state.busy = false;
  }
}

function play() {
  const a = $("audio");
  a.currentTime = 0;
  a.play().catch((e) => { $("status").textContent = "cannot play: " + e.message; });
}

async function key(k) {
  if (state.busy) return;
  const it = state.items[state.i];
  if (k in LABELS && it) {
    const i = state.i;
    const saved = await label(LABELS[k], it, i + 1);
    // undo restores what this very span held before (the server says; "" = none), once it is saved
    if (saved) state.undo.push({ i, before: saved.previous });
  } else if (k === "s" && it) {
    state.undo.push({ i: state.i, before: null });
    state.i += 1; show();
  } else if (k === "ArrowLeft") {
    const last = state.undo.pop();
    if (!last) return;
    const prev = state.items[last.i];
    if (last.before === null) { state.i = last.i; show(); return; }
    if (!(await label(last.before, prev, last.i))) state.undo.push(last);  // not saved: keep the step
  } else if (k === " " && it) {
    play();
  } else if (k === "m" && it) {
    await moreLikeThis(it);
  }
}

// "more like this": the windows whose stored embeddings are most like this item's, as the queue under review
async function moreLikeThis(it) {
  try {
    const body = await api("/api/like?" + new URLSearchParams({ file_key: it.file_key, start_s: it.start_s, end_s: it.end_s }));
    Object.assign(state, { items: body.items, i: 0, undo: [] });
    $("q-desc").textContent = body.description;
    show();
  } catch (e) { $("status").textContent = "more like this: " + e.message; }
}

document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
  if (["y", "n", "u", "s", "m", "ArrowLeft", " "].includes(e.key)) { e.preventDefault(); key(e.key); }
});
for (const b of document.querySelectorAll("#buttons button")) b.addEventListener("click", () => key(b.dataset.key));
$("reload").addEventListener("click", load);
$("calibration").addEventListener("toggle", async () => {
  if (!$("calibration").open) return;
  const c = await api("/api/calibration");
  const body = $("bins").querySelector("tbody");
  body.replaceChildren(...c.bins.map((b) => {
    const tr = document.createElement("tr");
    for (const v of [`${b.lo.toFixed(1)}-${b.hi.toFixed(1)}`, b.n, b.owl, b.precision.toFixed(2)]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    return tr;
  }));
  $("cal-note").textContent = `${c.labelled} reviewed detections; \`hootwatch calibrate\` fits the curve and sets the threshold.`;
});
$("queue").addEventListener("change", load);
fillFilters().then(load).catch((e) => { $("progress").textContent = "error: " + e.message; });
