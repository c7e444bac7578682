// A night at a glance: the night's false-colour spectrogram (one column per minute) with its detections and labels
// as marks above it; a click on a mark shows and plays that span. Axes: clock time in the recorder's zone, kHz.
"use strict";
const $ = (id) => document.getElementById(id);
const COLOURS = { owl: "#2ca02c", not_owl: "#d62728", unsure: "#ff9f1c", "": "#ffffff" };
const AXIS_LEFT = 56;
const SHOW_S = 30;
const state = { nights: [], night: null };

async function api(path) {
  const r = await fetch(path);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error ? body.error + (body.fix ? ` (${body.fix})` : "") : r.statusText);
  return body;
}

function colour(label) {
  return label in COLOURS ? COLOURS[label] : COLOURS.not_owl;  // an imported table's other sounds are not owls
}

function option(select, value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  select.appendChild(o);
}

function fillNights() {
  const rec = $("recorder").value;
  $("night").replaceChildren();
  for (const n of state.nights.filter((x) => x.recorder === rec)) {
    const hours = (n.audio_s / 3600).toFixed(1);
    const note = n.indices ? "" : ", no indices";
    option($("night"), n.night, `${n.night} (${hours} h, ${n.detections} detections${note})`);
  }
}

function query() {
  const p = new URLSearchParams({ recorder: $("recorder").value, night: $("night").value });
  if ($("band").value) p.set("max_hz", $("band").value);
  return p;
}

function place(parent, cls, css, text) {
  const d = document.createElement("div");
  d.className = cls;
  Object.assign(d.style, css);
  if (text !== undefined) d.textContent = text;
  parent.appendChild(d);
  return d;
}

function drawAxes(n, pxMin, rowPx) {
  const width = n.minutes * pxMin, height = n.rows * rowPx;
  const plot = $("plot"), xaxis = $("xaxis");
  for (const el of plot.querySelectorAll(".yt, .tick-y, .axis-title")) el.remove();
  xaxis.replaceChildren();
  plot.style.paddingLeft = `${AXIS_LEFT}px`;
  $("marks").style.marginLeft = `${AXIS_LEFT}px`;
  $("marks").style.width = `${width}px`;
  const khz = n.max_hz / 1000;
  const step = khz <= 2 ? 0.5 : khz <= 8 ? 1 : 2;
  for (let f = 0; f <= khz + 1e-9; f += step) {
    const y = height - (f / khz) * height;
    place(plot, "tick-y", { left: `${AXIS_LEFT - 6}px`, top: `${y}px` });
    place(plot, "yt", { left: "-4px", top: `${y}px` }, `${f} kHz`);
  }
  xaxis.style.position = "relative";
  xaxis.style.height = "40px";
  const every = n.minutes > 720 ? 120 : n.minutes > 360 ? 60 : pxMin >= 4 ? 30 : 60;
  for (let c = 0; c <= n.minutes; c += every) {
    const x = AXIS_LEFT + c * pxMin;
    place(xaxis, "tick-x", { left: `${x}px`, top: "0" });
    place(xaxis, "xt", { left: `${x}px`, top: "7px" }, n.clock[c]);  // the server's: a DST change is in it
  }
  const zone = `${n.zone}, UTC${n.start_local.slice(23)}`;
  place(xaxis, "axis-title", { position: "absolute", left: `${AXIS_LEFT}px`, top: "24px" },
        `time of night (clock time in the recorder's zone: ${zone}); one column per minute`);
}

function drawMarks(n, pxMin) {
  const strip = $("marks");
  strip.replaceChildren();
  for (const m of n.marks) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "mark " + (m.kind === "label" ? "label-only" : "detection");
    b.style.left = `${m.minute * pxMin}px`;
    if (m.kind === "detection") b.style.width = `${Math.max(9, ((m.end_s - m.start_s) / 60) * pxMin)}px`;
    b.style.background = colour(m.label);
    b.dataset.label = m.label;
    const what = m.kind === "label" ? `label "${m.label}"` : `detection (${m.label || "not reviewed"})`;
    const score = m.score === null ? "" : `, score ${m.score_text}`;
    b.title = `${m.begin_local.slice(11, 19)} ${what}${score}`;
    b.addEventListener("click", () => openMark(m, b));
    strip.appendChild(b);
  }
}

function openMark(m, button) {
  for (const b of document.querySelectorAll("#marks button.open")) b.classList.remove("open");
  button.classList.add("open");
  const end = Math.min(m.end_s, m.start_s + SHOW_S);  // the clip endpoints serve at most 2 minutes
  const span = new URLSearchParams({ file_key: m.file_key, start_s: m.start_s, end_s: end, pad_s: 2 });
  $("item-title").textContent = `${m.begin_local.replace("T", " ").slice(0, 19)}: ` +
    (m.kind === "label" ? `labelled ${m.label}` : `detection, ${m.label || "not reviewed"}`) +
    (m.score === null ? "" : `, score ${m.score_text}`) + ` (${m.file.split("/").pop()} at ${m.start_s} s` +
    (end < m.end_s ? `; its first ${SHOW_S} s of ${(m.end_s - m.start_s).toFixed(0)} s)` : ")");
  $("item-spec").src = "/api/spectrogram.png?" + span;
  $("item-audio").src = "/api/clip.wav?" + span;
  const open = new URLSearchParams({ recorder: state.night.recorder, night: state.night.night, file_key: m.file_key,
                                     start_s: m.start_s, end_s: m.end_s });
  $("item-open").href = "/?" + open;
  $("item").hidden = false;
  document.body.dataset.opened = `${m.file_key}@${m.start_s}`;
}

async function show() {
  $("item").hidden = true;
  $("overview").hidden = true;
  $("legend").hidden = true;
  if (!$("night").value) return;
  const n = await api("/api/night?" + query());
  state.night = n;
  $("message").textContent = n.message ||
    `${n.files} recording(s), ${n.marks.length} mark(s): click one to see and hear it.`;
  if (!n.rows) {
    document.body.dataset.loaded = "1";
    return;
  }
  const pxMin = Math.max(1, Math.min(8, Math.floor(1100 / n.minutes)));
  const rowPx = Math.max(1, Math.round(256 / n.rows));
  const img = $("night-img");
  img.style.width = `${n.minutes * pxMin}px`;
  img.style.height = `${n.rows * rowPx}px`;
  drawAxes(n, pxMin, rowPx);
  drawMarks(n, pxMin);
  await new Promise((resolve) => {
    img.onload = resolve;
    img.onerror = () => { $("message").textContent = "the picture could not be loaded"; resolve(); };
    img.src = "/api/night.png?" + query();
  });
  $("overview").hidden = false;
  $("legend").hidden = false;
  document.body.dataset.loaded = "1";
}

async function start() {
  const given = new URLSearchParams(location.search);
  state.nights = (await api("/api/nights")).nights;
  if (!state.nights.length) {
    $("message").textContent = "No recordings have been scanned into this store yet.";
    document.body.dataset.loaded = "1";
    return;
  }
  for (const r of [...new Set(state.nights.map((x) => x.recorder))]) option($("recorder"), r, r);
  if (given.get("recorder")) $("recorder").value = given.get("recorder");
  fillNights();
  if (given.get("night")) $("night").value = given.get("night");
  if (given.has("max_hz")) $("band").value = given.get("max_hz");
  await show();
}

$("recorder").addEventListener("change", () => { fillNights(); show().catch(fail); });
$("night").addEventListener("change", () => show().catch(fail));
$("band").addEventListener("change", () => show().catch(fail));

function fail(e) {
  $("message").textContent = "error: " + e.message;
  document.body.dataset.loaded = "1";
}

start().catch(fail);
