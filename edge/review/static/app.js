// hootwatch review: one item at a time; every label is shown as saved only after the server committed it.
// A verdict key labels the item the reviewer saw: not a key's auto-repeat, not an item whose spectrogram and audio
// have not loaded, not one that appeared less than SEEN_MS ago, and nothing while a save is in flight.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { items: [], i: 0, undo: [], busy: false, display: null, shownAt: null, images: new Map(),
                sounds: new Map() };
const LABELS = { y: "owl", n: "not_owl", u: "unsure" };
const KEYS = ["y", "n", "u", "s", "z", "m", "ArrowLeft", " "];
const PAD_S = 2;        // seconds of context either side of the item
const SEEN_MS = 250;    // nobody has looked at an item shown for less than this: a verdict that fast is refused
const saved = (k, fallback) => localStorage.getItem("hootwatch." + k) ?? fallback;
const remember = (k, v) => localStorage.setItem("hootwatch." + k, v);

function params(extra) {
  const p = new URLSearchParams();
  for (const k of ["queue", "order", "recorder", "night", "min_score", "max_score"]) p.set(k, $(k).value);
  for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
  return p;
}

async function api(path, opts) {
  // every request carries the token the server put in the page (it refuses a change without it: CSRF)
  const csrf = document.querySelector('meta[name="hootwatch-csrf"]');
  const headers = { ...((opts && opts.headers) || {}), "X-Hootwatch-Csrf": csrf ? csrf.content : "" };
  const r = await fetch(path, { ...opts, headers });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error ? body.error + (body.fix ? ` (${body.fix})` : "") : r.statusText);
  return body;
}

function spanQuery(it, extra) {
  return new URLSearchParams({ file_key: it.file_key, start_s: it.start_s, end_s: it.end_s, pad_s: PAD_S,
                               ...extra });
}

const view = () => ($("zoom").checked ? "band" : "full");
const clipStart = (it) => Math.max(0, it.start_s - PAD_S);

function fmtOffset(s) {
  const m = Math.floor(s / 60);
  return `${m}:${(s - m * 60).toFixed(1).padStart(4, "0")} (${s.toFixed(2)} s)`;
}

// the clock time in the recorder's zone of second t of the item's file: its begin_local wall time + (t - start)
function clock(it, t) {
  const m = /T(\d\d):(\d\d):(\d\d(?:\.\d+)?)/.exec(it.begin_local);
  const s = Math.floor(+m[1] * 3600 + +m[2] * 60 + +m[3] + (t - it.start_s) + 1e-6);
  const d = ((s % 86400) + 86400) % 86400;
  return [d / 3600, (d / 60) % 60, d % 60].map((v) => String(Math.floor(v)).padStart(2, "0")).join(":");
}

const describe = (it) => `${it.file.split("/").pop()} ${clock(it, it.start_s)}-${clock(it, it.end_s)}`;

function note(text, kind) {
  $("status").className = kind || "";
  $("status").textContent = text;
}

function showProgress() {
  const it = state.items;
  const done = it.filter((x) => x.label).length;
  const owl = it.filter((x) => x.label === "owl").length;
  const not = it.filter((x) => x.label && x.label !== "owl" && x.label !== "unsure").length;
  $("progress").textContent = `${done} / ${it.length} reviewed; ${owl} owl, ${not} not owl` +
    (it.length ? `; item ${Math.min(state.i + 1, it.length)}` : "");
}

// a result for a queue no longer under review (the reviewer applied another while it was on its way) moves nothing
const current = (items, i) => items === state.items && i === state.i;

// The spectrogram and audio of item i, fetched ahead (the next item's load while this one is reviewed).
function image(i) {
  const key = `${i}:${view()}`, items = state.items;
  if (!state.images.has(key)) {
    const img = new Image();
    img.id = "spec";
    img.alt = "spectrogram of the item with context";
    img.addEventListener("load", () => { if (current(items, i)) { layout(); update(); } });
    img.addEventListener("error", () => { if (current(items, i)) note("cannot load the spectrogram", "error"); });
    img.src = "/api/spectrogram.png?" + spanQuery(state.items[i], { view: view() });
    state.images.set(key, img);
  }
  return state.images.get(key);
}

function sound(i) {
  const items = state.items;
  if (!state.sounds.has(i)) {
    const a = new Audio();
    a.id = "audio";
    a.controls = true;
    a.preload = "auto";
    for (const ev of ["canplay", "loadeddata"]) a.addEventListener(ev, () => { if (current(items, i)) update(); });
    a.addEventListener("error", () => { if (current(items, i) && a.src) note("cannot play the audio", "error"); });
    a.addEventListener("play", () => requestAnimationFrame(followPlayhead));
    a.addEventListener("seeked", followPlayhead);
    // whole, as a blob: the server answers no Range requests, and a streamed WAV could not be played from a click
    fetch("/api/clip.wav?" + spanQuery(state.items[i]))
      .then((r) => { if (!r.ok) throw new Error(r.statusText); return r.blob(); })
      .then((blob) => { if (state.sounds.get(i) === a) a.src = URL.createObjectURL(blob); })
      .catch((e) => { if (current(items, i)) note(`cannot load the audio: ${e.message}`, "error"); });
    state.sounds.set(i, a);
  }
  return state.sounds.get(i);
}

function forgetFar() {  // keep the media of the items next to this one only
  for (const [key, img] of state.images) if (Math.abs(parseInt(key, 10) - state.i) > 2) state.images.delete(key);
  for (const [i, a] of state.sounds) {
    if (Math.abs(i - state.i) > 2) { URL.revokeObjectURL(a.src); a.removeAttribute("src"); state.sounds.delete(i); }
  }
}

const loaded = (i) => {
  const img = state.images.get(`${i}:${view()}`), a = state.sounds.get(i);
  return !!(img && img.complete && img.naturalWidth > 0 && a && a.readyState >= 3);
};

// body data-ready: the item's media have loaded; data-accepting: a verdict key now would be taken
function update() {
  const ready = state.i < state.items.length && loaded(state.i);
  if (ready && state.shownAt === null) {
    state.shownAt = performance.now();
    setTimeout(update, SEEN_MS + 5);
    if ($("autoplay").checked) play(0, true);
  }
  document.body.dataset.ready = ready ? "1" : "0";
  document.body.dataset.accepting = ready && !state.busy && performance.now() - state.shownAt >= SEEN_MS ? "1" : "0";
  $("loading").hidden = ready;
}

function el(cls, text, style) {
  const e = document.createElement("div");
  e.className = cls;
  if (text !== undefined) e.textContent = text;
  Object.assign(e.style, style || {});
  return e;
}

// Axes, context and span, from the display geometry: x = (t - clip start) * px_per_s, y from the server's ticks.
function layout() {
  const it = state.items[state.i], g = state.display, pps = g.px_per_s, v = g.views[view()];
  const img = $("spec"), a = clipStart(it);
  const w = img.naturalWidth || Math.round((it.end_s + PAD_S - a) * pps);
  const h = g.rows;
  Object.assign($("specbox").style, { width: w + "px", height: h + "px" });
  $("time-axis").style.width = w + "px";
  const x0 = (it.start_s - a) * pps, x1 = Math.min(w, (it.end_s - a) * pps);
  Object.assign($("pad-before").style, { left: "0px", width: x0 + "px" });
  Object.assign($("pad-after").style, { left: x1 + "px", width: Math.max(0, w - x1) + "px" });
  Object.assign($("span").style, { left: x0 + "px", width: x1 - x0 + "px" });
  const khz = (hz) => `${+(hz / 1000).toFixed(3)} kHz`;
  $("freq-axis").style.height = h + 34 + "px";
  const zone = /([+-]\d\d:\d\d|Z)$/.exec(it.begin_local);
  const band = el("band", undefined, { top: v.band_y[0] * h + "px", height: (v.band_y[1] - v.band_y[0]) * h + "px" });
  band.id = "band";
  band.title = `the owl's band, ${khz(g.band_hz[0])} to ${khz(g.band_hz[1])}`;
  // the lowest label sits above its tick, clear of the "in file" caption under it
  const tick = (t) => el("tick", khz(t.hz), { top: t.y * h + "px", transform: t.y > 0.97 ? "translateY(-90%)" : "" });
  $("freq-axis").replaceChildren(...v.ticks.map(tick), band,
    el("cap", "in file", { top: h + 4 + "px" }), el("cap", `UTC${zone ? zone[1] : ""}`, { top: h + 18 + "px" }));
  const ticks = [];
  for (let s = Math.ceil(a); (s - a) * pps <= w; s += 1) {
    const x = (s - a) * pps, left = x + "px";
    // a label at an edge of the image is set inside it, not cut in half
    const transform = x < 30 ? "none" : x > w - 30 ? "translateX(calc(4px - 100%))" : "";
    ticks.push(el("tick-s", `${s} s`, { left, transform }), el("tick-clock", clock(it, s), { left, transform }));
  }
  $("time-axis").replaceChildren(...ticks);
  followPlayhead();
}

function followPlayhead() {
  const a = $("audio"), pps = state.display.px_per_s, x = a.currentTime * pps;
  $("playhead").style.left = x + "px";
  $("playhead").hidden = a.currentTime === 0 && a.paused;
  const sc = $("scroller");
  if (!a.paused && (x < sc.scrollLeft || x > sc.scrollLeft + sc.clientWidth - 40)) sc.scrollLeft = x - 40;
  if (!a.paused) requestAnimationFrame(followPlayhead);
}

function show() {
  showProgress();
  const it = state.items[state.i];
  $("item").hidden = !it;
  $("empty").hidden = !!it;
  $("empty").textContent = state.items.length ? "End of the queue (← to go back)." : "Nothing to review in this queue.";
  state.shownAt = null;
  $("hint").textContent = "";
  document.body.dataset.item = String(state.i);
  if (!it) { $("audio").pause(); update(); return; }
  const img = image(state.i), a = sound(state.i);
  if ($("spec") !== img) $("spec").replaceWith(img);
  if ($("audio") !== a) { $("audio").pause(); $("audio").replaceWith(a); }
  $("scroller").scrollLeft = 0;
  layout();
  $("i-score").textContent = it.score_text;
  $("i-time").textContent = `${it.begin_local.replace("T", " ").slice(0, 19)}-${clock(it, it.end_s)}` +
    ` (${(it.end_s - it.start_s).toFixed(1)} s)`;
  $("i-recorder").textContent = it.recorder;
  $("i-file").textContent = it.file;
  $("i-offset").textContent = fmtOffset(it.start_s);
  $("i-label").textContent = it.label === "conflict"  // labels that cover it disagree: show them, press a key to settle
    ? "conflict: " + it.conflict.map((c) => `${c.label} (${c.start_s}-${c.end_s} s)`).join(" vs ") +
      "; your verdict settles it"
    : it.label || "not reviewed";
  forgetFar();
  if (state.i + 1 < state.items.length) { image(state.i + 1); sound(state.i + 1); }
  update();
}

// pick(items): the index to show first, or undefined for the first item not reviewed (it may insert an item)
// a new queue under review: its items, no undo steps, none of the old queue's images and sounds
function takeQueue(body) {
  state.items = body.items;
  state.undo = [];
  state.images.clear();
  for (const a of state.sounds.values()) URL.revokeObjectURL(a.src);
  state.sounds.clear();
  $("q-desc").textContent = body.description || "";
}

async function load(pick) {
  note("");
  takeQueue(await api("/api/queue?" + params()));
  const first = state.items.findIndex((x) => !x.label);
  state.i = first < 0 ? state.items.length : first;
  if (pick) state.i = (await pick(state.items)) ?? state.i;
  document.body.dataset.loaded = "1";
  show();
}

function addOption(id, value) {
  const o = document.createElement("option");
  o.value = o.textContent = value;
  $(id).appendChild(o);
}

async function fillFilters() {
  const f = await api("/api/filters");
  for (const [id, values] of [["recorder", f.recorders], ["night", f.nights]]) {
    for (const v of values) addOption(id, v);
  }
}

// A link to one item (the night overview's marks: /?recorder=&night=&file_key=&start_s=&end_s=) opens the detections
// of that recorder and night in time order at that item. A label on a span that is no detection is not in that queue:
// it is shown as an item of its own, at its time among the detections.
function choose(id, value) {  // a night with labels only is not among the filters' nights: add it
  if (![...$(id).options].some((o) => o.value === value)) addOption(id, value);
  $(id).value = value;
}

async function openLinked(link) {
  const key = link.get("file_key"), start = +link.get("start_s"), end = +(link.get("end_s") ?? start);
  const rec = link.get("recorder") || "", night = link.get("night") || "";
  for (const [id, v] of [["queue", "detections"], ["order", "time"], ["min_score", "0"], ["max_score", "1"]]) {
    $(id).value = v;
  }
  if (rec) choose("recorder", rec);
  if (night) choose("night", night);
  const same = (x) => x.file_key === key && Math.abs(x.start_s - start) < 1e-3;
  const near = (x) => x.file_key === key && x.start_s < end && start < x.end_s;  // a link older than a rescan
  let lone = null;
  await load(async (items) => {
    let i = items.findIndex(same);
    if (i < 0) i = items.findIndex(near);
    if (i >= 0 || !rec || !night) return i < 0 ? undefined : i;
    // a recorder or night the run does not have is answered 404: the span is then simply not found
    const n = await api("/api/night?" + new URLSearchParams({ recorder: rec, night })).catch(() => ({ marks: [] }));
    const m = n.marks.find(same);
    if (!m) return undefined;
    lone = { kind: "label", file_key: m.file_key, file: m.file, recorder: rec, start_s: m.start_s, end_s: m.end_s,
             score: null, begin_utc: "", begin_local: m.begin_local, night, label: m.label,
             score_text: "none (a label, not a detection)" };
    const at = (x) => Date.parse(x.begin_local);
    i = items.findIndex((x) => at(x) > at(lone));
    i = i < 0 ? items.length : i;
    items.splice(i, 0, lone);
    return i;
  });
  const it = state.items[state.i];
  if (!it || !(same(it) || near(it))) {
    const why = `The linked span (${key} at ${start} s) is not in this queue: no detection or label there now.`;
    note(why, "error");
    if (!it) $("empty").textContent += " " + why;  // the item, and its status line, are hidden
    document.body.dataset.openedItem = "";
  } else {
    if (lone) note(`This span is a label (${lone.label || "none"}), not a detection, so it is not in the detections ` +
                   "queue: it is shown here as an item of its own, at its time among the night's detections.", "info");
    document.body.dataset.openedItem = `${it.file_key}@${it.start_s}`;
  }
}

async function label(value, it, advanceTo) {
  const items = state.items;
  state.busy = true;
  update();
  note("saving…");
  try {
    const post = (span, v) => api("/api/labels", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ file_key: it.file_key, start_s: span.start_s, end_s: span.end_s, label: v,
                             reviewer: $("reviewer").value.trim() }),
    });
    const body = await post(it, value);
    if (value && it.label === "conflict") {
      // the reviewer saw the disagreeing labels and decided: the other spans' labels are cleared (rows are only
      // ever added, so they stay in the history), and the dataset, calibrate and the exports agree with the page
      for (const c of it.conflict) {
        if (c.start_s !== it.start_s || c.end_s !== it.end_s) await post(c, "");
      }
      it.conflict = [];
    }
    it.label = value;
    if (items === state.items) {
      state.i = advanceTo;
      state.busy = false;
      show();
    }
    note(value ? `saved: ${value} for ${describe(it)}` : `label removed for ${describe(it)}`);
    return body;
  } catch (e) {
    note(`NOT saved (${describe(it)}): ${e.message}`, "error");
    return null;
  } finally {
    state.busy = false;
    update();
  }
}

function play(from = 0, auto = false) {
  const a = $("audio");
  a.currentTime = from;
  a.play().catch((e) => {
    if (auto && e.name === "NotAllowedError") $("hint").textContent = "space plays (the browser plays sound by " +
      "itself only after a first key press or click on the page)";
    else if (e.name !== "AbortError") note("cannot play: " + e.message, "error");
  });
}

// why a verdict for the current item cannot be taken now ("" when it can)
function refusal() {
  if (!loaded(state.i)) return "still loading: wait for the spectrogram and the audio";
  if (performance.now() - state.shownAt < SEEN_MS) return "too fast: this item has only just appeared";
  if (!$("reviewer").value.trim()) { askName(); return "who is reviewing? (your name is saved with each label)"; }
  return "";
}

async function key(k) {
  if (state.busy) return;  // a save is in flight: the key was meant for the item being saved
  const it = state.items[state.i];
  if (k === "z") { $("zoom").checked = !$("zoom").checked; $("zoom").dispatchEvent(new Event("change")); return; }
  if (k in LABELS && it) {
    const why = refusal();
    if (why) { $("hint").textContent = why; return; }
    const i = state.i, items = state.items;
    const body = await label(LABELS[k], it, i + 1);
    // undo restores what this very span held before (the server says; "" = none), once it is saved
    if (body && items === state.items) state.undo.push({ i, before: body.previous });
  } else if (k === "s" && it) {
    state.undo.push({ i: state.i, before: null });
    state.i += 1; show();
  } else if (k === "ArrowLeft") {
    const last = state.undo.pop();
    if (!last) return;
    const prev = state.items[last.i];
    if (last.before === null) { state.i = last.i; show(); return; }
    const items = state.items;
    if (!(await label(last.before, prev, last.i)) && items === state.items) state.undo.push(last);  // not saved
  } else if (k === " " && it) {
    play();
  } else if (k === "m" && it) {
    await moreLikeThis(it);
  }
}

function askName() {
  if (!$("who").open) $("who").showModal();
}

// "more like this": the windows whose stored embeddings are most like this item's, as the queue under review
async function moreLikeThis(it) {
  try {
    const body = await api("/api/like?" + new URLSearchParams({ file_key: it.file_key, start_s: it.start_s, end_s: it.end_s }));
    takeQueue(body);
    state.i = 0;
    show();
  } catch (e) { $("status").textContent = "more like this: " + e.message; }
}

document.addEventListener("keydown", (e) => {
  const t = e.target;  // typing in a field is not a verdict (the checkboxes are not fields)
  if (t.tagName === "SELECT" || (t.tagName === "INPUT" && t.type !== "checkbox")) return;
  if (!KEYS.includes(e.key) || e.ctrlKey || e.metaKey || e.altKey) return;
  e.preventDefault();
  if (e.repeat) return;  // a held key's auto-repeat is not another verdict
  key(e.key);
});
// a click the keyboard made (detail 0: Enter or space on the focused button, repeated while held) is no verdict:
// the keys above are the keyboard's way, with their auto-repeat check
for (const b of document.querySelectorAll("#buttons button")) {
  b.addEventListener("click", (e) => { if (e.detail !== 0) key(b.dataset.key); });
}
$("specbox").addEventListener("click", (e) => {  // play from the clicked time
  const box = $("specbox").getBoundingClientRect();
  play(Math.max(0, (e.clientX - box.left) / state.display.px_per_s));
});
// a queue the server refuses (an empty score field: 422) is said in the status line
const reload = () => load().catch((e) => note(`cannot load the queue: ${e.message}`, "error"));
$("reload").addEventListener("click", reload);
// the name this browser saved, else the one the server was started with (`hootwatch review --reviewer NAME`)
$("reviewer").value = saved("reviewer", "") || document.querySelector('meta[name="hootwatch-reviewer"]')?.content || "";
$("reviewer").addEventListener("change", () => remember("reviewer", $("reviewer").value.trim()));
$("who-form").addEventListener("submit", () => {
  const name = $("who-name").value.trim();
  $("reviewer").value = name;
  remember("reviewer", name);
});
for (const id of ["zoom", "autoplay"]) {
  $(id).checked = saved(id, "0") === "1";
  $(id).addEventListener("change", () => { remember(id, $(id).checked ? "1" : "0"); if (id === "zoom") show(); });
}
$("calibration").addEventListener("toggle", async () => {
  if (!$("calibration").open) return;
  const c = await api("/api/calibration");
  const body = $("bins").querySelector("tbody");
  body.replaceChildren(...c.bins.map((b) => {
    const tr = document.createElement("tr");
    for (const v of [b.range, b.n, b.owl, b.precision.toFixed(2)]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    return tr;
  }));
  $("cal-few").hidden = !c.too_few;
  $("cal-few").textContent = `Too few labels to trust these figures: ${c.too_few}.`;
  $("cal-note").textContent = `${c.labelled} reviewed detections, in bins of about equal counts. ` +
    (c.too_few ? `\`hootwatch calibrate\` needs at least ${c.min_labels} to set a threshold.`
               : "`hootwatch calibrate` fits the curve to them and sets the threshold.");
});
$("queue").addEventListener("change", reload);
if (!$("reviewer").value) askName();
const linked = new URLSearchParams(location.search);
Promise.all([api("/api/display").then((d) => { state.display = d; }), fillFilters()])
  .then(() => (linked.has("file_key") && linked.has("start_s") ? openLinked(linked) : load()))
  .catch((e) => { $("progress").textContent = "error: " + e.message; });
