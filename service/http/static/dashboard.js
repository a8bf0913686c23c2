// The ops page: draws /dashboard/snapshot, then follows /dashboard/events (SSE).
"use strict";

const WINDOW = 120; // seconds of the per-type rate chart
const state = {
  types: [],
  perSecond: new Map(), // second -> Map(type -> count)
  totals: new Map(),    // type -> count since the page opened
  hour: null,           // {start, done: [60], failed: [60]}
  inFlight: new Map(),  // action id -> entry
  failed: [],           // latest failures, newest first
  dead: new Map(),      // entry id -> dead letter, newest first
  webhookEvents: [],    // latest webhook events, newest first
};
let rateChart = null;
let hourChart = null;

const $ = (sel) => document.querySelector(sel);
function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}
function row(cells, attrs = {}) {
  const tr = document.createElement("tr");
  for (const [k, v] of Object.entries(attrs)) tr.setAttribute(k, v);
  cells.forEach((c) => tr.appendChild(c));
  return tr;
}
function fill(sel, rows) {
  const body = $(sel + " tbody");
  body.replaceChildren(...rows);
}
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");
const entryTime = (id) => new Date(Number(String(id).split("-")[0])).toLocaleTimeString();

function colour(i) {
  return `hsl(${(i * 137) % 360} 65% 45%)`;
}

function makeCharts() {
  const width = Math.max(400, $("#rate-chart").clientWidth || 800);
  const series = [{}].concat(state.types.map((t, i) => ({ label: t, stroke: colour(i), width: 1.5 })));
  rateChart = new uPlot(
    { width, height: 220, series, legend: { show: false }, axes: [{}, { label: "events/s" }] },
    rateData(),
    $("#rate-chart"),
  );
  const bars = uPlot.paths.bars({ size: [0.6, 20] });
  hourChart = new uPlot(
    {
      width, height: 200,
      series: [{}, { label: "DONE", fill: "#3b6fd8aa", stroke: "#3b6fd8", paths: bars, points: { show: false } },
               { label: "FAILED", fill: "#b3261eaa", stroke: "#b3261e", paths: bars, points: { show: false } }],
      axes: [{}, { label: "per minute" }],
    },
    hourData(),
    $("#hour-chart"),
  );
}

function rateData() {
  const now = Math.floor(Date.now() / 1000);
  const xs = [];
  const ys = state.types.map(() => []);
  for (let s = now - WINDOW; s <= now; s++) {
    xs.push(s);
    const counts = state.perSecond.get(s);
    state.types.forEach((t, i) => ys[i].push(counts ? counts.get(t) || 0 : 0));
  }
  return [xs, ...ys];
}

function hourData() {
  const h = state.hour;
  const xs = h.done.map((_, i) => Math.floor((h.start + i * 60000) / 1000));
  return [xs, h.done, h.failed];
}

function count(entry) {
  const second = Math.floor(Date.now() / 1000);
  if (!state.perSecond.has(second)) state.perSecond.set(second, new Map());
  const counts = state.perSecond.get(second);
  counts.set(entry.type, (counts.get(entry.type) || 0) + 1);
  state.totals.set(entry.type, (state.totals.get(entry.type) || 0) + 1);
  if (entry.kind === "completed") {
    const minute = Math.min(59, Math.floor((Date.now() - state.hour.start) / 60000));
    const bucket = entry.status === "FAILED" ? state.hour.failed : state.hour.done;
    if (minute >= 0) bucket[minute] += 1;
  }
}

function onEntry(entry) {
  if (entry.kind === "dead") {
    state.dead = new Map([[entry.entry_id, entry], ...state.dead]);
    renderDead();
    return;
  }
  count(entry);
  if (entry.kind === "events") {
    state.webhookEvents = [entry, ...state.webhookEvents].slice(0, 30);
    renderWebhookEvents();
    return;
  }
  if (entry.kind === "progress") {
    state.inFlight.set(entry.id, entry);
  } else {
    state.inFlight.delete(entry.id);
    if (entry.status === "FAILED" || entry.failed_count) {
      state.failed = [entry, ...state.failed].slice(0, 30);
      renderFailed();
    }
  }
  renderInFlight();
}

function renderRates() {
  const now = Math.floor(Date.now() / 1000);
  let total = 0;
  const recent = new Map();
  for (let s = now - 10; s < now; s++) {
    for (const [t, n] of state.perSecond.get(s) || []) recent.set(t, (recent.get(t) || 0) + n);
  }
  const rows = [...state.totals.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([t, n]) => {
      const rate = (recent.get(t) || 0) / 10;
      total += rate;
      return row([cell(t), cell(rate.toFixed(1), "num"), cell(n, "num")]);
    });
  fill("#rates", rows);
  $("#rate-total").textContent = total.toFixed(1);
  for (const s of state.perSecond.keys()) if (s < now - WINDOW - 5) state.perSecond.delete(s);
  if (rateChart) rateChart.setData(rateData());
  if (hourChart) hourChart.setData(hourData());
}

function renderInFlight() {
  fill("#in-flight", [...state.inFlight.values()].map((e) => {
    const bar = document.createElement("td");
    bar.innerHTML = '<span class="bar"><span></span></span> ';
    bar.querySelector(".bar > span").style.width = `${Math.max(0, Math.min(100, e.progress || 0))}%`;
    bar.append(`${e.progress ?? 0}%`);
    return row([cell(e.type), cell(e.id), cell(e.status), bar], { "data-id": e.id });
  }));
}

function renderFailed() {
  fill("#failed", state.failed.map((e) => {
    const records = document.createElement("td");
    const list = document.createElement("ul");
    list.className = "records";
    for (const r of e.failures) {
      const li = document.createElement("li");
      const where = [r.row != null ? `row ${r.row}` : null, r.code, r.source_id].filter(Boolean).join(", ");
      li.textContent = `${where}: ${r.reason || ""}`;
      list.appendChild(li);
    }
    records.appendChild(list);
    return row(
      [cell(time(e.received_at)), cell(e.type), cell(e.id), cell(e.status), cell(e.failed_count, "num"), records],
      { class: e.status, "data-id": e.id },
    );
  }));
}

function renderWebhookEvents() {
  fill("#webhook-events", state.webhookEvents.map((e) => row(
    [
      cell(time(e.received_at)), cell(e.type), cell(e.id), cell(e.source),
      cell(e.schema_valid ? "valid" : `drift: ${e.schema_error || ""}`),
    ],
    { class: e.schema_valid ? "" : "drift", "data-id": e.id },
  )));
}

function renderDead() {
  fill("#dead", [...state.dead.values()].map((d) => {
    const action = document.createElement("td");
    const button = document.createElement("button");
    button.textContent = "Replay";
    button.onclick = () => replay(d.entry_id, button);
    action.appendChild(button);
    return row(
      [cell(entryTime(d.entry_id)), cell(d.reason), cell(d.detail), cell(d.size, "num"), action],
      { "data-entry": d.entry_id },
    );
  }));
}

async function replay(entryId, button) {
  button.disabled = true;
  const response = await fetch(`/dashboard/dead-letters/${encodeURIComponent(entryId)}/replay`, { method: "POST" });
  const outcome = await response.json();
  state.dead.delete(entryId);
  if (!outcome.replayed && outcome.new_entry_id) {
    // Still failing: it was re-filed under its new reason.
    state.dead = new Map([[outcome.new_entry_id, { entry_id: outcome.new_entry_id, reason: outcome.reason, detail: outcome.detail, size: "" }], ...state.dead]);
  }
  renderDead();
}

function renderStats(stats) {
  $("#dead-count").textContent = stats.dead_count;

  fill("#groups", stats.groups.map((g) => row([
    cell(g.stream), cell(g.group), cell(g.consumers, "num"), cell(g.pending, "num"), cell(g.lag, "num"),
  ])));
}

async function start() {
  const snapshot = await (await fetch("/dashboard/snapshot")).json();
  state.types = snapshot.types;
  state.hour = snapshot.hour;
  state.failed = snapshot.failed;
  snapshot.in_flight.forEach((e) => state.inFlight.set(e.id, e));
  snapshot.dead.forEach((d) => state.dead.set(d.entry_id, d));
  state.webhookEvents = snapshot.webhook_events;
  makeCharts();
  renderInFlight();
  renderFailed();
  renderDead();
  renderWebhookEvents();
  renderStats(snapshot);
  renderRates();
  const events = new EventSource("/dashboard/events");
  events.onopen = () => { $("#connection").textContent = "live"; $("#connection").classList.add("live"); };
  events.onerror = () => { $("#connection").textContent = "reconnecting…"; $("#connection").classList.remove("live"); };
  events.addEventListener("entry", (m) => onEntry(JSON.parse(m.data)));
  events.addEventListener("stats", (m) => renderStats(JSON.parse(m.data)));
  setInterval(renderRates, 1000);
  document.body.dataset.ready = "1";
}

start();
