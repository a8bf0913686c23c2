// The ops page: draws /dashboard/snapshot, then follows /dashboard/events (SSE).
"use strict";

const WINDOW = 120; // seconds of the per-type rate chart
const REASON_COLOURS = {
  invalid_signature: "#b3261e",
  forbidden: "#8e24aa",
  too_large: "#ef6c00",
  unsupported_media_type: "#6d4c41",
  invalid_payload: "#c2185b",
  malformed_json: "#5d4037",
  unavailable: "#455a64",
  stream_full: "#37474f",
};
const state = {
  types: [],
  perSecond: new Map(), // second -> Map(type -> count)
  hour: null,           // {start, done: [60], failed: [60]}
  refusals: null,       // {start, reasons: {reason: [60]}, status: {reason: code}}
  inFlight: new Map(),  // action id -> entry (with firstSeen)
  failed: [],           // latest failures, newest first
  dead: new Map(),      // entry id -> dead letter, newest first
  webhookEvents: [],    // latest webhook events, newest first
  open: null,           // entry id of the dead letter shown with its body
  groups: [],           // consumer groups per stream, as the last stats said
};
let rateChart = null;
let hourChart = null;
let refusalChart = null;

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
  $(sel + " tbody").replaceChildren(...rows);
}
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");
const entryMs = (id) => Number(String(id).split("-")[0]);
const entryTime = (id) => new Date(entryMs(id)).toLocaleTimeString();
function age(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor(s / 3600) % 24}h`;
}

function colour(i) {
  return `hsl(${(i * 137) % 360} 65% 45%)`;
}

// A y axis wide enough for its numbers, its label clear of them.
const yAxis = (label) => ({ label, size: 56, gap: 6, labelGap: 4, labelSize: 18 });

function chartWidth(sel) {
  return Math.max(300, $(sel).clientWidth || 600);
}

function makeCharts() {
  makeRateChart();
  const bars = uPlot.paths.bars({ size: [0.7, 20] });
  hourChart = new uPlot(
    {
      width: chartWidth("#hour-chart"), height: 200,
      series: [{}, { label: "DONE", fill: "#3b6fd8aa", stroke: "#3b6fd8", paths: bars, points: { show: false } },
               { label: "FAILED", fill: "#b3261eaa", stroke: "#b3261e", paths: bars, points: { show: false } }],
      axes: [{}, yAxis("per minute")],
      legend: { live: false },
    },
    hourData(),
    $("#hour-chart"),
  );
  makeRefusalChart();
}

// Stacked bars: each series is the running sum of the reasons before it, drawn
// largest first so the smaller sums paint over it.
function refusalReasons() {
  return Object.keys(state.refusals.reasons).sort();
}
function makeRefusalChart() {
  const reasons = refusalReasons();
  const bars = uPlot.paths.bars({ size: [0.7, 20] });
  const series = [{}].concat(reasons.slice().reverse().map((r) => ({
    label: `${state.refusals.status[r] || ""} ${r}`,
    fill: (REASON_COLOURS[r] || "#777") + "cc",
    stroke: REASON_COLOURS[r] || "#777",
    paths: bars,
    points: { show: false },
  })));
  if (refusalChart) refusalChart.destroy();
  refusalChart = new uPlot(
    { width: chartWidth("#refusal-chart"), height: 200, series, legend: { live: false }, axes: [{}, yAxis("per minute")] },
    refusalData(reasons),
    $("#refusal-chart"),
  );
  refusalChart.reasons = reasons.join(",");
}
function refusalData(reasons) {
  const r = state.refusals;
  const xs = Array.from({ length: 60 }, (_, i) => Math.floor(r.start / 1000) + i * 60);
  const sums = [];
  let running = xs.map(() => 0);
  for (const reason of reasons) {
    running = running.map((v, i) => v + (r.reasons[reason][i] || 0));
    sums.push(running);
  }
  return [xs, ...sums.reverse()];
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

function countAt(second, type, n = 1) {
  if (!state.perSecond.has(second)) state.perSecond.set(second, new Map());
  const counts = state.perSecond.get(second);
  counts.set(type, (counts.get(type) || 0) + n);
  if (!state.types.includes(type)) state.types.push(type);
}

function count(entry) {
  countAt(Math.floor(entryMs(entry.entry_id) / 1000), entry.type);
  if (entry.kind === "completed") {
    const minute = Math.min(59, Math.floor((entryMs(entry.entry_id) - state.hour.start) / 60000));
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
    const known = state.inFlight.get(entry.id);
    entry.firstSeen = known ? known.firstSeen : entryMs(entry.entry_id);
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
  const window = new Map();
  for (const [s, counts] of state.perSecond) {
    for (const [t, n] of counts) {
      if (s > now - WINDOW) window.set(t, (window.get(t) || 0) + n);
      if (s >= now - 10 && s < now) recent.set(t, (recent.get(t) || 0) + n);
    }
  }
  const rows = [...window.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([t, n]) => {
      const rate = (recent.get(t) || 0) / 10;
      total += rate;
      return row([cell(t), cell(rate.toFixed(1), "num"), cell(n, "num")]);
    });
  fill("#rates", rows);
  $("#rate-total").textContent = total.toFixed(1);
  for (const s of state.perSecond.keys()) if (s < now - WINDOW - 5) state.perSecond.delete(s);
  if (rateChart) {
    if (rateChart.series.length !== state.types.length + 1) {
      rateChart.destroy();
      makeRateChart();
    }
    rateChart.setData(rateData());
  }
  if (hourChart) hourChart.setData(hourData());
  renderInFlight();
}

// One line per type that had events (its legend names them); made again when a type
// appears that the page did not know.
function makeRateChart() {
  const series = [{}].concat(state.types.map((t, i) => ({ label: t, stroke: colour(i), width: 1.5 })));
  rateChart = new uPlot(
    { width: chartWidth("#rate-chart"), height: 220, series, legend: { live: false }, axes: [{}, yAxis("events/s")] },
    rateData(),
    $("#rate-chart"),
  );
}

function renderInFlight() {
  const now = Date.now();
  fill("#in-flight", [...state.inFlight.values()].map((e) => {
    const bar = document.createElement("td");
    bar.innerHTML = '<span class="bar"><span></span></span> ';
    bar.querySelector(".bar > span").style.width = `${Math.max(0, Math.min(100, e.progress || 0))}%`;
    bar.append(`${e.progress ?? 0}%`);
    const since = e.created_at ? Date.parse(e.created_at) : e.firstSeen;
    const ageCell = cell(age(now - since), "num age");
    ageCell.title = e.created_at ? `created ${new Date(since).toLocaleString()}` : "since first seen";
    return row([cell(e.type), cell(e.id), cell(e.status), bar, ageCell], { "data-id": e.id });
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
  const rows = [];
  for (const d of state.dead.values()) {
    const action = document.createElement("td");
    const button = document.createElement("button");
    button.textContent = "Replay";
    button.onclick = (event) => { event.stopPropagation(); replay(d.entry_id, button); };
    action.appendChild(button);
    const tr = row(
      [cell(entryTime(d.entry_id)), cell(d.reason), cell(d.detail), cell(d.size, "num"), action],
      { "data-entry": d.entry_id, class: "openable" + (state.open === d.entry_id ? " open" : "") },
    );
    tr.onclick = () => toggleLetter(d.entry_id);
    rows.push(tr);
    if (state.open === d.entry_id && d.full) rows.push(letterRow(d));
  }
  fill("#dead", rows);
}

function letterRow(d) {
  const td = document.createElement("td");
  td.colSpan = 5;
  const facts = document.createElement("dl");
  for (const name of ["entry_id", "reason", "received_at", "sha256", "detail"]) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = d.full[name] || "";
    facts.append(dt, dd);
  }
  const body = document.createElement("pre");
  body.className = "body";
  body.textContent = d.full.body; // text only: a body is never markup here
  td.append(facts, body);
  return row([td], { class: "letter", "data-letter": d.entry_id });
}

async function toggleLetter(entryId) {
  if (state.open === entryId) {
    state.open = null;
    renderDead();
    return;
  }
  state.open = entryId;
  const d = state.dead.get(entryId);
  if (d && !d.full) {
    const response = await fetch(`/dashboard/dead-letters/${encodeURIComponent(entryId)}`);
    if (!response.ok) {
      d.full = { body: `(${response.status}: ${(await response.json()).detail || "not found"})` };
    } else {
      d.full = await response.json();
    }
  }
  renderDead();
}

async function replay(entryId, button) {
  button.disabled = true;
  const response = await fetch(`/dashboard/dead-letters/${encodeURIComponent(entryId)}/replay`, { method: "POST" });
  const outcome = await response.json();
  state.dead.delete(entryId);
  if (state.open === entryId) state.open = null;
  if (!outcome.replayed && outcome.new_entry_id) {
    // Still failing: it was re-filed under its new reason.
    state.dead = new Map([[outcome.new_entry_id, { entry_id: outcome.new_entry_id, reason: outcome.reason, detail: outcome.detail, size: "" }], ...state.dead]);
  }
  renderDead();
}

function renderRefusals() {
  const r = state.refusals;
  if (!r) return;
  const reasons = refusalReasons();
  let hourTotal = 0;
  fill("#refusals", reasons.map((reason) => {
    const counts = r.reasons[reason];
    const hour = counts.reduce((a, b) => a + b, 0);
    const last5 = counts.slice(-5).reduce((a, b) => a + b, 0);
    hourTotal += hour;
    const swatch = cell(r.status[reason] || "");
    swatch.style.borderLeft = `4px solid ${REASON_COLOURS[reason] || "#777"}`;
    return row([swatch, cell(reason), cell(last5, "num"), cell(hour, "num")], { "data-reason": reason });
  }));
  if (!reasons.length) fill("#refusals", [row([cell("none in the last hour", "quiet")])]);
  $("#refused-total").textContent = hourTotal;
  if (!refusalChart || refusalChart.reasons !== reasons.join(",")) makeRefusalChart();
  else refusalChart.setData(refusalData(reasons));
}

// Each consumer group: its totals, then the streams it reads that hold something
// (entries, pending or lag); "show all" lists the empty ones too.
function renderGroups() {
  const showAll = $("#groups-all").checked;
  const byGroup = new Map();
  for (const g of state.groups) {
    if (!byGroup.has(g.group)) byGroup.set(g.group, []);
    byGroup.get(g.group).push(g);
  }
  const rows = [];
  for (const [name, streams] of [...byGroup].sort((a, b) => a[0].localeCompare(b[0]))) {
    const sum = (key) => streams.reduce((n, s) => n + (s[key] || 0), 0);
    const lag = streams.some((s) => s.lag == null) ? "?" : sum("lag");
    const consumers = Math.max(...streams.map((s) => s.consumers));
    rows.push(row(
      [cell(`${name} (${streams.length} stream${streams.length === 1 ? "" : "s"})`), cell(sum("length"), "num"), cell(consumers, "num"), cell(sum("pending"), "num"), cell(lag, "num")],
      { class: "group-total", "data-group": name },
    ));
    const shown = streams.filter((s) => showAll || s.length || s.pending || s.lag);
    for (const s of shown) {
      rows.push(row(
        [cell(s.stream), cell(s.length, "num"), cell(s.consumers, "num"), cell(s.pending, "num"), cell(s.lag, "num")],
        { class: "group-stream", "data-group": name, "data-stream": s.stream },
      ));
    }
    if (shown.length < streams.length) {
      const hidden = streams.length - shown.length;
      const note = cell(`${hidden} empty stream${hidden === 1 ? "" : "s"} hidden`, "hidden-note");
      note.colSpan = 5;
      rows.push(row([note], { class: "group-stream" }));
    }
  }
  fill("#groups", rows.length ? rows : [row([cell("no consumer groups yet", "quiet")])]);
}

function renderRefusedLatest(latest) {
  fill("#refused-latest", latest.length ? latest.map((r) => {
    const detail = cell(r.detail, "detail");
    const status = cell(r.status);
    status.style.borderLeft = `4px solid ${REASON_COLOURS[r.reason] || "#777"}`;
    return row(
      [cell(time(r.at)), status, cell(r.reason), detail, cell(r.peer), cell(r.headers.split(",").join(", "), "headers")],
      { "data-entry": r.entry_id, "data-reason": r.reason },
    );
  }) : [row([cell("none kept", "quiet")])]);
}

// Memory headroom: used of maxmemory, and where deliveries start getting 503.
function memoryText(redis) {
  if (!redis.maxmemory) return `${redis.memory} (no maxmemory)`;
  const percent = Math.round((100 * redis.used_memory) / redis.maxmemory);
  const mib = (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`;
  return `${mib(redis.used_memory)} of ${mib(redis.maxmemory)} (${percent}%, 503 from ${redis.memory_limit}%)`;
}

function renderRedis(redis) {
  const badge = $("#redis");
  badge.classList.toggle("down", !redis.ok);
  badge.classList.toggle("up", !!redis.ok);
  if (!redis.ok) {
    badge.textContent = "Redis down";
    badge.title = redis.error;
    return;
  }
  badge.textContent = `${redis.server} · ${redis.latency_ms} ms · ${memoryText(redis)}`;
  badge.title = `role ${redis.role}, ${redis.clients} clients, AOF ${redis.aof ? "on" : "off"}${redis.cluster ? ", cluster" : ""}, maxmemory-policy ${redis.maxmemory_policy}, ${redis.evicted_keys} keys evicted`;
  const used = redis.maxmemory ? (100 * redis.used_memory) / redis.maxmemory : 0;
  badge.classList.toggle("warn", used >= 0.9 * redis.memory_limit);
}

function renderReconciler(reconciler) {
  const badge = $("#reconciler");
  if (!reconciler) return;
  badge.classList.toggle("up", reconciler.running);
  const mark = reconciler.mark ? `, complete to ${new Date(reconciler.mark).toLocaleString()}` : "";
  badge.textContent = reconciler.running ? `reconciler polling${mark}` : `reconciler off${mark}`;
  badge.title = reconciler.running
    ? "a poller holds the lease (fanout poll, or fanout serve --poll)"
    : "no poller holds the lease: start fanout poll, or fanout serve --poll";
}

// The front door's counts since start, by reason; "last minute" from the counts seen then.
const FRONT_DOOR = {
  shed: ["shed at the connection cap", "closed (503 mid-request)"],
  refused: ["refused: every connection busy", "503"],
  head_timeout: ["head too slow", "408 (closed if silent)"],
  body_timeout: ["body too slow", "408"],
  head_too_large: ["head too large", "431"],
};
const frontDoorSeen = []; // [ms, counts], the last few minutes of stats
function renderFrontDoor(door) {
  if (!door) return;
  const now = Date.now();
  frontDoorSeen.push([now, door.counts]);
  while (frontDoorSeen.length > 1 && frontDoorSeen[1][0] <= now - 60_000) frontDoorSeen.shift();
  const then = frontDoorSeen[0][1];
  fill("#front-door", Object.entries(FRONT_DOOR).map(([reason, [label, answer]]) => row([
    cell(label), cell(answer), cell((door.counts[reason] || 0) - (then[reason] || 0), "num"),
    cell(door.counts[reason] || 0, "num"),
  ], { "data-reason": reason })));
  const l = door.limits;
  $("#front-door-limits").textContent =
    `at most ${l.max_connections} open connections per worker; heads up to ${l.max_head_bytes} bytes `
    + `within ${l.head_timeout} s, bodies within ${l.body_timeout} s, idle connections kept ${l.keep_alive_timeout} s`;
}

function renderStats(stats) {
  renderFrontDoor(stats.front_door);
  renderRedis(stats.redis);
  if (!stats.redis.ok) return;
  $("#dead-count").textContent = stats.dead_count;
  state.groups = stats.groups;
  renderGroups();
  renderRefusedLatest(stats.refused_latest || []);
  state.refusals = stats.refusals;
  renderRefusals();
  renderReconciler(stats.reconciler);
}

function seedRates(rates) {
  for (const [type, counts] of Object.entries(rates.types)) {
    counts.forEach((n, i) => { if (n) countAt(rates.start + i, type, n); });
  }
}

async function start() {
  const snapshot = await (await fetch("/dashboard/snapshot")).json();
  state.types = Object.keys(snapshot.rates.types).sort();
  state.hour = snapshot.hour;
  state.failed = snapshot.failed;
  state.refusals = snapshot.refusals;
  seedRates(snapshot.rates);
  snapshot.in_flight.forEach((e) => { e.firstSeen = entryMs(e.entry_id); state.inFlight.set(e.id, e); });
  snapshot.dead.forEach((d) => state.dead.set(d.entry_id, d));
  state.webhookEvents = snapshot.webhook_events;
  makeCharts();
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
  $("#groups-all").onchange = renderGroups;
  setInterval(renderRates, 1000);
  document.body.dataset.ready = "1";
}

start();
