// neuralign dashboard: connects to /ws, keeps the latest state of each frame
// kind, and redraws dirty canvases once per animation frame. No framework, no
// network access beyond this server.
"use strict";

const TRACE_SECONDS = 8;       // width of the trace window
const HEAT_COLUMNS = 300;      // alignment frames kept in the heatmap
const MAX_TRACED = 4;          // electrodes traced at once
const R_MIN = -0.1, R_MAX = 0.8;

const $ = (id) => document.getElementById(id);
const state = {
  session: null, subscription: null, alignment: null, status: null,
  counts: { frames: 0, alignment: 0, trace: 0, word: 0, status: 0 },
  traces: new Map(),           // electrode -> {t: [], actual: [], predicted: [[layer samples]]}
  selected: [],                // traced electrodes, most recent last
  focus: 0,                    // electrode shown in the layer profile
  words: [],
  dirty: new Set(),
};

// ---- colour map (viridis stops, interpolated into a 256-entry table) ----
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const LUT = Array.from({ length: 256 }, (_, i) => {
  const x = (i / 255) * (VIRIDIS.length - 1), k = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - k;
  return VIRIDIS[k].map((c, j) => Math.round(c + f * (VIRIDIS[k + 1][j] - c)));
});
function colour(r) {
  if (r === null || Number.isNaN(r)) return [24, 27, 35];
  const i = Math.max(0, Math.min(255, Math.round(((r - R_MIN) / (R_MAX - R_MIN)) * 255)));
  return LUT[i];
}
const css = (rgb, a = 1) => `rgba(${rgb[0]},${rgb[1]},${rgb[2]},${a})`;

// ---- canvas helpers ----
function fit(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr)), h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w: canvas.clientWidth, h: canvas.clientHeight };
}
function axisText(ctx) { ctx.fillStyle = "#7d8799"; ctx.font = "11px system-ui, sans-serif"; }

// ---- connection ----
let socket = null, retry = 500;
function connect() {
  const token = new URLSearchParams(location.search).get("token");
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws` +
    (token ? `?token=${encodeURIComponent(token)}` : "");
  socket = new WebSocket(url);
  socket.onopen = () => { retry = 500; setConn(true); };
  socket.onclose = () => { setConn(false); setTimeout(connect, retry); retry = Math.min(retry * 2, 8000); };
  socket.onmessage = (ev) => {
    let frame;
    try { frame = JSON.parse(ev.data); } catch { return; }
    state.counts.frames++;
    if (frame.type in state.counts) state.counts[frame.type]++;
    (handlers[frame.type] || (() => {}))(frame);
    state.dirty.add("counters");
  };
}
function setConn(on) { const el = $("conn"); el.textContent = on ? "live" : "disconnected"; el.className = "pill " + (on ? "on" : "off"); }
function send(msg) { if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(msg)); }
function subscribe() { send({ type: "subscribe", electrodes: state.selected, layers: "all", rate: 30 }); }

// ---- frame handlers: update state only; drawing happens in the animation frame ----
const handlers = {
  hello(f) {
    state.session = f.session;
    state.subscription = f.subscription;
    state.traces.clear();
    heat.reset(f.session.electrodes.length);
    state.selected = f.subscription.electrodes.slice(0, MAX_TRACED);
    state.focus = state.selected[0] ?? 0;
    const s = f.session;
    $("session-meta").textContent = `${s.model} · ${s.electrodes.length} electrodes × ${s.layers.length} layers · ${s.rates.high_gamma_hz} Hz · window ${s.window_s} s`;
    for (const id of ["trace-layer", "heat-layer"]) {
      const sel = $(id), keep = sel.options[0];
      sel.replaceChildren(keep, ...s.layers.map((l) => new Option(`layer ${l}`, String(l))));
    }
    subscribe();
    ["traces", "profile", "peaks", "heatmap"].forEach((p) => state.dirty.add(p));
  },
  subscribed(f) { state.subscription = f.subscription; },
  alignment(f) {
    state.alignment = f;
    heat.push(f);
    if (f.horizon !== undefined) $("horizon").textContent = f.horizon.toFixed(2) + " s";
    ["profile", "peaks", "heatmap", "traces"].forEach((p) => state.dirty.add(p));
  },
  trace(f) {
    const n = f.actual[0] ? f.actual[0].length : 0, keep = Math.round(TRACE_SECONDS * f.rate);
    f.electrodes.forEach((e, i) => {
      let tr = state.traces.get(e);
      if (!tr || tr.layers.join() !== f.layers.join()) {
        tr = { layers: f.layers.slice(), t: [], actual: [], predicted: f.layers.map(() => []) };
        state.traces.set(e, tr);
      }
      for (let s = 0; s < n; s++) tr.t.push(f.t0 + s / f.rate);
      tr.actual.push(...f.actual[i]);
      f.predicted[i].forEach((samples, j) => tr.predicted[j].push(...samples));
      const extra = tr.t.length - keep;
      if (extra > 0) { tr.t.splice(0, extra); tr.actual.splice(0, extra); tr.predicted.forEach((p) => p.splice(0, extra)); }
    });
    state.dirty.add("traces");
  },
  word(f) {
    if (f.status === "retracted") state.words = state.words.filter((w) => w.id !== f.id);
    else {
      const i = state.words.findIndex((w) => w.id === f.id);
      if (i >= 0) state.words[i] = f; else state.words.push(f);
    }
    state.words = state.words.slice(-40);
    state.dirty.add("words");
  },
  status(f) { state.status = f; state.dirty.add("status"); },
  error(f) { console.warn("server refused a message:", f.code, f.message); },
};

// ---- heatmap: an offscreen image, one column per alignment frame, shifted left ----
const heat = {
  img: null, electrodes: 0, columns: 0,
  reset(n) {
    this.electrodes = n; this.columns = 0;
    this.img = document.createElement("canvas");
    this.img.width = HEAT_COLUMNS; this.img.height = Math.max(1, n);
    const c = this.img.getContext("2d"); c.fillStyle = "rgb(24,27,35)"; c.fillRect(0, 0, HEAT_COLUMNS, n);
  },
  push(f) {
    if (!this.img) return;
    const c = this.img.getContext("2d");
    c.drawImage(this.img, -1, 0);
    const col = c.createImageData(1, this.electrodes);
    const choice = $("heat-layer").value, j = choice === "peak" ? -1 : f.layers.indexOf(Number(choice));
    for (let e = 0; e < this.electrodes; e++) {
      const r = j < 0 ? f.summary.peak_r[e] : f.r[e][j];
      const rgb = colour(r);
      col.data.set([rgb[0], rgb[1], rgb[2], 255], e * 4);
    }
    c.putImageData(col, HEAT_COLUMNS - 1, 0);
    this.columns = Math.min(HEAT_COLUMNS, this.columns + 1);
  },
};

const LEFT = 46; // room for axis labels
function drawHeatmap() {
  const { ctx, w, h } = fit($("heatmap"));
  ctx.clearRect(0, 0, w, h);
  if (!heat.img) return;
  const plotW = w - LEFT - 6, plotH = h - 18;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(heat.img, LEFT, 0, plotW, plotH);
  axisText(ctx);
  const n = heat.electrodes, labels = state.session ? state.session.electrodes : [];
  const step = Math.max(1, Math.ceil(n / Math.floor(plotH / 13)));
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (let e = 0; e < n; e += step) ctx.fillText(labels[e] || e, LEFT - 9, Math.max(6, ((e + 0.5) / n) * plotH));
  // traced electrodes: a notch on the left edge, in their trace colour
  state.selected.forEach((e, i) => {
    const y = ((e + 0.5) / n) * plotH;
    ctx.fillStyle = PRED[i % PRED.length];
    ctx.beginPath(); ctx.moveTo(LEFT - 1, y); ctx.lineTo(LEFT - 7, y - 4); ctx.lineTo(LEFT - 7, y + 4); ctx.fill();
  });
  axisText(ctx); ctx.textAlign = "left"; ctx.textBaseline = "alphabetic";
  const hz = state.session ? state.session.rates.alignment_hz : 10;
  ctx.fillText(`← ${(HEAT_COLUMNS / hz).toFixed(0)} s`, LEFT, h - 4);
  ctx.textAlign = "right"; ctx.fillText("now", w - 6, h - 4);
}

function drawLegend() {
  const c = $("legend").getContext("2d");
  for (let x = 0; x < 160; x++) { c.fillStyle = css(colour(R_MIN + (x / 159) * (R_MAX - R_MIN))); c.fillRect(x, 0, 1, 10); }
  $("legend-text").textContent = `r ${R_MIN} … ${R_MAX}`;
}

// ---- traces ----
const PRED = ["#f5a623", "#4fc3f7", "#ef5350", "#ab47bc"];
function drawTraces() {
  const { ctx, w, h } = fit($("traces"));
  ctx.clearRect(0, 0, w, h);
  const rows = state.selected.filter((e) => state.traces.has(e));
  if (!rows.length) { axisText(ctx); ctx.fillText("waiting for trace frames…", 10, 20); return; }
  const rowH = h / rows.length, choice = $("trace-layer").value;
  const labels = state.session.electrodes;
  rows.forEach((e, i) => {
    const tr = state.traces.get(e), y0 = i * rowH;
    let layer = Number(choice);
    if (choice === "peak") layer = state.alignment ? state.alignment.summary.peak_layer[e] ?? tr.layers[0] : tr.layers[0];
    const li = Math.max(0, tr.layers.indexOf(layer));
    const pred = tr.predicted[li] || [];
    const tEnd = tr.t[tr.t.length - 1], tStart = tEnd - TRACE_SECONDS;
    let lo = Infinity, hi = -Infinity;
    for (const v of tr.actual) { if (v < lo) lo = v; if (v > hi) hi = v; }
    for (const v of pred) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (!(hi > lo)) { lo -= 1; hi += 1; }
    const x = (t) => LEFT + ((t - tStart) / TRACE_SECONDS) * (w - LEFT - 4);
    const y = (v) => y0 + 6 + (1 - (v - lo) / (hi - lo)) * (rowH - 14);
    ctx.strokeStyle = "#262c38"; ctx.beginPath(); ctx.moveTo(LEFT, y0 + rowH - 0.5); ctx.lineTo(w, y0 + rowH - 0.5); ctx.stroke();
    const line = (vals, colour, width) => {
      ctx.strokeStyle = colour; ctx.lineWidth = width; ctx.beginPath();
      vals.forEach((v, k) => (k ? ctx.lineTo(x(tr.t[k]), y(v)) : ctx.moveTo(x(tr.t[k]), y(v))));
      ctx.stroke();
    };
    line(tr.actual, "rgba(232,235,240,0.75)", 1);
    line(pred, PRED[i % PRED.length], 1.6);
    axisText(ctx); ctx.textAlign = "left";
    ctx.fillText(labels[e], 4, y0 + 16);
    const r = state.alignment ? state.alignment.r[e][state.alignment.layers.indexOf(layer)] : null;
    ctx.fillStyle = PRED[i % PRED.length];
    ctx.fillText(`L${layer}`, 4, y0 + 30);
    if (r !== null && r !== undefined) { ctx.fillStyle = "#7d8799"; ctx.fillText(`r ${r.toFixed(2)}`, 4, y0 + 44); }
  });
  ctx.lineWidth = 1;
}

// ---- per-layer profile of the focused electrode, with the mean over electrodes ----
function drawProfile() {
  const { ctx, w, h } = fit($("profile"));
  ctx.clearRect(0, 0, w, h);
  const a = state.alignment;
  if (!a) return;
  const L = a.layers, pad = { l: 36, r: 10, t: 10, b: 26 };
  const x = (j) => pad.l + (L.length > 1 ? j / (L.length - 1) : 0.5) * (w - pad.l - pad.r);
  const y = (r) => pad.t + (1 - (r - R_MIN) / (R_MAX - R_MIN)) * (h - pad.t - pad.b);
  axisText(ctx); ctx.strokeStyle = "#262c38"; ctx.textAlign = "right";
  for (let r = 0; r <= R_MAX + 1e-9; r += 0.2) { ctx.beginPath(); ctx.moveTo(pad.l, y(r)); ctx.lineTo(w - pad.r, y(r)); ctx.stroke(); ctx.fillText(r.toFixed(1), pad.l - 4, y(r) + 4); }
  ctx.textAlign = "center";
  L.forEach((l, j) => { if (j % 5 === 0 || j === L.length - 1) ctx.fillText(l, x(j), h - 10); });
  ctx.fillText("layer", (pad.l + w) / 2, h); 
  ctx.setLineDash([4, 4]); ctx.strokeStyle = "#ef5350";
  ctx.beginPath(); ctx.moveTo(pad.l, y(a.chance)); ctx.lineTo(w - pad.r, y(a.chance)); ctx.stroke(); ctx.setLineDash([]);
  const mean = L.map((l) => a.summary.mean_r[state.session.layers.indexOf(l)]);
  const path = (vals, colour, width) => {
    ctx.strokeStyle = colour; ctx.lineWidth = width; ctx.beginPath();
    let started = false;
    vals.forEach((v, j) => { if (v === null) { started = false; return; } started ? ctx.lineTo(x(j), y(v)) : ctx.moveTo(x(j), y(v)); started = true; });
    ctx.stroke();
  };
  path(mean, "#7d8799", 1.5);
  const row = a.r[state.focus] || [];
  path(row, "#f5a623", 2.2);
  const peak = a.summary.peak_layer[state.focus], pj = L.indexOf(peak);
  if (pj >= 0) { ctx.fillStyle = "#f5a623"; ctx.beginPath(); ctx.arc(x(pj), y(row[pj]), 4, 0, 2 * Math.PI); ctx.fill(); }
  ctx.lineWidth = 1; ctx.textAlign = "left"; axisText(ctx);
  ctx.fillText("— mean over electrodes   - - chance", pad.l + 4, pad.t + 10);
  $("profile-title").textContent = `${state.session.electrodes[state.focus]} · peak layer ${peak ?? "—"}` +
    (pj >= 0 ? ` (r ${row[pj].toFixed(2)})` : "");
}

// ---- peak layer per electrode: the central figure, live ----
function drawPeaks() {
  const { ctx, w, h } = fit($("peaks"));
  ctx.clearRect(0, 0, w, h);
  const a = state.alignment;
  if (!a || !state.session) return;
  const layers = state.session.layers, n = a.summary.peak_layer.length, pad = { l: 30, r: 8, t: 8, b: 22 };
  const maxLayer = layers[layers.length - 1] || 1;
  const x = (e) => pad.l + ((e + 0.5) / n) * (w - pad.l - pad.r);
  const y = (l) => pad.t + (1 - l / maxLayer) * (h - pad.t - pad.b);
  axisText(ctx); ctx.textAlign = "right"; ctx.strokeStyle = "#262c38";
  for (let l = 0; l <= maxLayer; l += 5) { ctx.beginPath(); ctx.moveTo(pad.l, y(l)); ctx.lineTo(w - pad.r, y(l)); ctx.stroke(); ctx.fillText(l, pad.l - 4, y(l) + 4); }
  ctx.textAlign = "center"; ctx.fillText("electrode", (pad.l + w) / 2, h - 4);
  const radius = Math.max(1.5, Math.min(4, (w - pad.l) / n / 2));
  for (let e = 0; e < n; e++) {
    const l = a.summary.peak_layer[e], r = a.summary.peak_r[e];
    if (l === null) continue;
    const above = r > a.chance;
    ctx.fillStyle = above ? css(colour(r)) : "rgba(125,135,153,0.35)";
    ctx.beginPath(); ctx.arc(x(e), y(l), above ? radius : radius * 0.7, 0, 2 * Math.PI); ctx.fill();
  }
  if (state.focus < n) { ctx.fillStyle = "rgba(245,166,35,0.18)"; ctx.fillRect(x(state.focus) - radius - 1, pad.t, 2 * radius + 2, h - pad.t - pad.b); }
  $("peaks-title").textContent = `${a.summary.electrodes_above_chance}/${n} above chance · best mean layer ${a.summary.best_layer ?? "—"}`;
}

// ---- transcript ticker and status ----
function drawWords() {
  const box = $("words");
  box.replaceChildren(...state.words.slice(-14).map((w) => {
    const s = document.createElement("span");
    s.textContent = w.text;
    const total = (w.latency_ms || {}).total || 0;
    if (total > 0) { const m = document.createElement("small"); m.textContent = `${total.toFixed(0)}ms`; s.append(m); }
    return s;
  }));
}
function drawStatus() {
  const st = state.status;
  if (!st) return;
  const horizon = st.horizon;
  $("streams").tBodies[0].replaceChildren(...st.streams.map((s) => {
    const tr = document.createElement("tr");
    const lag = horizon !== null && s.watermark !== null ? `${Math.max(0, horizon - s.watermark).toFixed(2)} s` : "—";
    [s.role, s.connected ? "connected" : "lost", s.rate_hz ? `${s.rate_hz.toFixed(1)} Hz` : "irregular", s.samples, lag]
      .forEach((v) => { const td = document.createElement("td"); td.textContent = v; tr.append(td); });
    return tr;
  }));
  const errs = Object.entries(st.errors).map(([k, v]) => `${k} ${v}`).join(", ") || "none";
  const drops = Object.entries(st.drops).map(([k, v]) => `${k} ${v}`).join(", ") || "none";
  $("status-extra").textContent = `clients ${st.clients} · uptime ${st.uptime_s.toFixed(0)} s · pipeline drops: ${drops} · rejected input: ${errs}`;
  $("n-dropped").textContent = st.client.dropped;
  $("latency").textContent = `${st.send_latency.p50_ms.toFixed(2)} / ${st.send_latency.p99_ms.toFixed(2)} ms`;
  $("stages").tBodies[0].replaceChildren(...(st.stages || []).filter((s) => s.count > 0).map((s) => {
    const tr = document.createElement("tr");
    [s.stage, s.count, s.p50_ms.toFixed(2), s.p99_ms.toFixed(2), s.max_ms.toFixed(2)]
      .forEach((v) => { const td = document.createElement("td"); td.textContent = v; tr.append(td); });
    return tr;
  }));
}
function drawCounters() { for (const k of Object.keys(state.counts)) { const el = $("n-" + k); if (el) el.textContent = state.counts[k]; } }

const painters = { counters: drawCounters, traces: drawTraces, profile: drawProfile, peaks: drawPeaks, heatmap: drawHeatmap, words: drawWords, status: drawStatus };
function frame() {
  for (const p of state.dirty) painters[p]();
  state.dirty.clear();
  requestAnimationFrame(frame);
}

// ---- interaction: choose electrodes by clicking the heatmap or the peak plot ----
function pick(e) {
  if (!state.session || e < 0 || e >= state.session.electrodes.length) return;
  state.focus = e;
  state.selected = state.selected.filter((x) => x !== e).concat([e]).slice(-MAX_TRACED);
  subscribe();
  ["traces", "profile", "peaks", "heatmap"].forEach((p) => state.dirty.add(p));
}
$("heatmap").addEventListener("click", (ev) => {
  const rect = ev.target.getBoundingClientRect();
  pick(Math.floor(((ev.clientY - rect.top) / (rect.height - 18)) * heat.electrodes));
});
$("peaks").addEventListener("click", (ev) => {
  const rect = ev.target.getBoundingClientRect(), n = heat.electrodes;
  pick(Math.floor(((ev.clientX - rect.left - 30) / (rect.width - 38)) * n));
});
for (const id of ["trace-layer", "heat-layer"]) $(id).addEventListener("change", () => { state.dirty.add("traces"); state.dirty.add("heatmap"); });
window.addEventListener("resize", () => Object.keys(painters).forEach((p) => state.dirty.add(p)));

drawLegend();
connect();
requestAnimationFrame(frame);
