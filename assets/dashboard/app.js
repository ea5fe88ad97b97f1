// neuralign dashboard: connects to /ws, keeps the latest state of each frame
// kind and a bounded history of rolling r, and redraws dirty views once per
// animation frame (the table and the brain map at most TABLE_HZ times a second).
// With two or more models, the views show the model chosen in the toolbar and the
// "Models" panel shows every model's layer profile and r side by side.
// No framework, no network access beyond this server.
"use strict";

const TRACE_SECONDS = 8;       // width of the trace window
const MAX_TRACED = 4;          // electrodes traced at once
const TABLE_HZ = 5;            // most table / brain-map refreshes per second
// History of rolling r: one column per HISTORY_STEP_S seconds of session time (the
// last alignment frame of that interval, every electrode × layer), in a ring of
// HISTORY_COLUMNS columns allocated once: 6 minutes, 360 × E × (L + 1) float32
// (11 MB for 256 electrodes × 31 layers, with each electrode's best r); the oldest
// column is overwritten.
const HISTORY_STEP_S = 1;
const HISTORY_COLUMNS = 360;
const SVG_NS = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
const state = {
  hello: null,                 // the hello frame as received (every model)
  model: 0,                    // the model the views show (index into hello.session.models)
  latest: [],                  // per model, its latest alignment frame
  session: null, subscription: null, alignment: null, status: null,
  counts: { frames: 0, alignment: 0, trace: 0, word: 0, status: 0 },
  traces: new Map(),           // electrode -> {t: [], actual: [], predicted: [[layer samples]]}
  selected: [],                // traced electrodes, most recent last
  focus: 0,                    // electrode shown in the layer profile
  words: [],
  view: [],                    // electrodes shown (indices into session.electrodes), in order
  rows: [],                    // what the table shows of them (see row())
  held: false,                 // views frozen by the "hold" button
  scale: { lo: -0.1, hi: 0.8 },// r range of every r axis and colour scale; follows the data
  dirty: new Set(),
};

// ---- colour maps: stops interpolated into 256-entry tables ----
function lut(stops) {
  return Array.from({ length: 256 }, (_, i) => {
    const x = (i / 255) * (stops.length - 1), k = Math.min(Math.floor(x), stops.length - 2), f = x - k;
    return stops[k].map((c, j) => Math.round(c + f * (stops[k + 1][j] - c)));
  });
}
const VIRIDIS = lut([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]);
const PLASMA = lut([[13, 8, 135], [126, 3, 168], [204, 71, 120], [248, 149, 64], [240, 249, 33]]);
const EMPTY = [24, 27, 35];
function colour(r) {
  if (r === null || r === undefined || Number.isNaN(r)) return EMPTY;
  const { lo, hi } = state.scale;
  return VIRIDIS[Math.max(0, Math.min(255, Math.round(((r - lo) / (hi - lo)) * 255)))];
}
function layerColour(layer) {
  if (layer === null || layer === undefined) return EMPTY;
  const layers = state.session.layers, max = layers[layers.length - 1] || 1;
  return PLASMA[Math.max(0, Math.min(255, Math.round((layer / max) * 255)))];
}
const css = (rgb, a = 1) => `rgba(${rgb[0]},${rgb[1]},${rgb[2]},${a})`;
const fmt = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v) ? "—" : v.toFixed(d));

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
    state.dirty.add("counters");
    // a per-model frame: the models panel keeps every model's alignment; the other views
    // take only the chosen model's frames
    if (frame.model && state.hello) {
      const m = state.hello.session.models.findIndex((x) => x.name === frame.model.name);
      if (frame.type === "alignment" && m >= 0) { state.latest[m] = frame; state.dirty.add("models"); }
      if (m !== state.model) return;
    }
    (handlers[frame.type] || (() => {}))(frame);
  };
}
function setConn(on) { const el = $("conn"); el.textContent = on ? "live" : "disconnected"; el.className = "pill " + (on ? "on" : "off"); }
function send(msg) { if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(msg)); }
function subscribe() { send({ type: "subscribe", electrodes: state.selected, layers: "all", rate: 30 }); }

// ---- what the session says of each electrode ----
function info(e) {
  const i = (state.session.electrode_info || [])[e];
  return { group: (i && i.group) || "—", type: i ? i.type : "", xy: i ? i.xy : null };
}
/** Per-electrode live threshold of the rolling r, when the encoders carry a calibrated null. */
function calibrated() {
  const t = state.session && state.session.null_threshold;
  return Array.isArray(t) && t.length === state.session.electrodes.length;
}
/** What a row shows of electrode `e`, from the latest alignment frame. */
function row(e) {
  const a = state.alignment, s = a ? a.summary : null;
  const sig = s && Array.isArray(s.significant) && s.significant.length ? s.significant[e] : null;
  return {
    e, label: state.session.electrodes[e], group: info(e).group,
    r: s ? s.peak_r[e] : null, layer: s ? s.peak_layer[e] : null,
    threshold: calibrated() ? state.session.null_threshold[e] : null, significant: sig,
  };
}

/** The session as the views see it: the chosen model's name, layers and thresholds. */
function modelSession(session, m) {
  const models = session.models || [];
  if (!models[m]) return session; // a server without models in hello
  const md = models[m];
  return { ...session, model: md.name, layers: md.layers, null_threshold: md.null_threshold };
}
/** Shows model `m` in the views (from the hello kept), starting their state afresh. */
function showModel(m) {
  state.model = m;
  handlers.session({ session: modelSession(state.hello.session, m), subscription: state.subscription });
  if (state.latest[m]) handlers.alignment(state.latest[m]);
}

// ---- frame handlers: update state only; drawing happens in the animation frame ----
const handlers = {
  hello(f) {
    const models = f.session.models || [];
    const keep = state.hello ? (state.hello.session.models || [])[state.model] : null;
    const m = Math.max(0, keep ? models.findIndex((x) => x.name === keep.name) : 0);
    state.hello = f;
    state.latest = models.map(() => null);
    state.model = m;
    $("model").replaceChildren(...models.map((x, i) => new Option(x.name, String(i))));
    $("model").value = String(m);
    $("model-pick").hidden = models.length < 2;
    handlers.session({ session: modelSession(f.session, m), subscription: f.subscription });
    state.dirty.add("models");
  },
  /** The views' session (one model's), from hello or a change of model. */
  session(f) {
    state.session = f.session;
    state.subscription = f.subscription;
    state.alignment = null;
    state.traces.clear();
    history.reset(f.session.electrodes.length, f.session.layers.length);
    state.selected = f.subscription.electrodes.slice(0, MAX_TRACED);
    state.focus = state.selected[0] ?? 0;
    const s = f.session;
    $("session-meta").textContent = `${s.model} · ${s.electrodes.length} electrodes × ${s.layers.length} layers · ${s.rates.high_gamma_hz} Hz · window ${s.window_s} s`;
    for (const id of ["trace-layer", "heat-layer"]) {
      const sel = $(id), keep = sel.options[0];
      sel.replaceChildren(keep, ...s.layers.map((l) => new Option(`layer ${l}`, String(l))));
    }
    const groups = [...new Set(s.electrodes.map((_, e) => info(e).group))];
    const gsel = $("group");
    gsel.replaceChildren(gsel.options[0], ...groups.map((g) => new Option(g, g)));
    const rec = $("rec");
    rec.textContent = s.recording ? `● REC ${s.recording.split(/[\\/]/).pop()}` : "not recording";
    rec.title = s.recording ? `serve is recording this session to ${s.recording}` : "serve is not writing an XDF recording";
    rec.className = "pill " + (s.recording ? "rec-on" : "rec-off");
    const cal = $("calibration");
    cal.textContent = calibrated() ? "null calibrated" : "uncalibrated";
    cal.title = calibrated() ? "significance: rolling r above each electrode's null threshold (from the encoder file)"
      : "the encoder file carries no null calibration: no significance, no null band";
    cal.className = "pill " + (calibrated() ? "on" : "dim");
    $("sig-only").disabled = !calibrated();
    if (!calibrated()) $("sig-only").checked = false;
    map.layout();
    table.header();
    updateView();
    subscribe();
    everything();
  },
  subscribed(f) { state.subscription = f.subscription; },
  alignment(f) {
    state.alignment = f;
    history.push(f);
    rescale();
    if (f.horizon !== undefined) $("horizon").textContent = f.horizon.toFixed(2) + " s";
    ["profile", "peaks", "traces", "table", "map"].forEach((p) => state.dirty.add(p));
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
  status(f) { state.status = f; state.dirty.add("status"); state.dirty.add("models"); },
  error(f) { console.warn("server refused a message:", f.code, f.message); },
};
function everything() { Object.keys(painters).forEach((p) => state.dirty.add(p)); }

// ---- the r scale: fits the data (every electrode's peak r, chance and the null
// thresholds), in steps of 0.05; it widens at once and narrows only when the data
// use less than 60 % of it, so that it does not flicker ----
function rescale() {
  const a = state.alignment;
  let lo = 0, hi = Math.max(0.05, a.chance || 0);
  for (const r of a.summary.peak_r) if (r !== null && !Number.isNaN(r)) { lo = Math.min(lo, r); hi = Math.max(hi, r); }
  if (calibrated()) for (const t of state.session.null_threshold) if (t !== null) hi = Math.max(hi, t);
  lo = Math.max(-1, Math.floor(lo / 0.05 - 1e-9) * 0.05);
  hi = Math.min(1, Math.ceil(hi / 0.05 + 1e-9) * 0.05);
  const s = state.scale;
  if (lo < s.lo || hi > s.hi || hi - lo < 0.6 * (s.hi - s.lo)) {
    state.scale = { lo, hi };
    drawLegend();
    history.dirty = true;
    everything();
  }
}
function scaleTicks() {
  const { lo, hi } = state.scale, span = hi - lo;
  const step = span > 0.8 ? 0.2 : span > 0.4 ? 0.1 : 0.05, out = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + 1e-9; t += step) out.push(Math.round(t * 100) / 100);
  return out;
}

// ---- the view: which electrodes the table, map, heatmap and peak plot show, in what order ----
function updateView() {
  if (!state.session) return;
  const q = $("search").value.trim(), group = $("group").value, sigOnly = $("sig-only").checked;
  const minR = $("min-r").value === "" ? null : Number($("min-r").value);
  let match = () => true;
  if (q) {
    try { const re = new RegExp(q, "i"); match = (l) => re.test(l); } catch { const lq = q.toLowerCase(); match = (l) => l.toLowerCase().includes(lq); }
  }
  const rows = state.session.electrodes.map((_, e) => row(e)).filter((r) =>
    match(r.label) && (!group || r.group === group) && (!sigOnly || r.significant) &&
    (minR === null || (r.r !== null && r.r >= minR)));
  const groupOrder = new Map([...$("group").options].slice(1).map((o, i) => [o.value, i]));
  const num = (v) => (v === null || v === undefined || Number.isNaN(v) ? -Infinity : v);
  const by = {
    group: (a, b) => groupOrder.get(a.group) - groupOrder.get(b.group) || a.e - b.e,
    r: (a, b) => num(b.r) - num(a.r) || a.e - b.e,
    layer: (a, b) => num(a.layer) - num(b.layer) || num(b.r) - num(a.r),
    sig: (a, b) => Number(!!b.significant) - Number(!!a.significant) || num(b.r) - num(a.r),
    label: (a, b) => a.label.localeCompare(b.label, undefined, { numeric: true }),
  }[$("sort").value];
  rows.sort(by);
  if ($("sort-dir").dataset.reverse === "1") rows.reverse();
  const view = rows.map((r) => r.e);
  if (view.join() !== state.view.join()) history.dirty = true;
  state.view = view;
  state.rows = rows;
  $("shown").textContent = `${rows.length} of ${state.session.electrodes.length} shown`;
}

// ---- history of rolling r and the heatmap drawn from it (rows in view order) ----
const history = {
  data: null, peak: null, electrodes: 0, layers: 0, head: 0, count: 0, bucket: null, dirty: true,
  reset(e, l) {
    this.electrodes = e; this.layers = l; this.head = 0; this.count = 0; this.bucket = null; this.dirty = true;
    this.data = new Float32Array(HISTORY_COLUMNS * e * l).fill(NaN);
    this.peak = new Float32Array(HISTORY_COLUMNS * e).fill(NaN);
  },
  /** Stores the frame into the column of its time bucket (a new column when the bucket is new). */
  push(f) {
    if (!this.data) return;
    const bucket = Math.floor(f.horizon / HISTORY_STEP_S);
    if (bucket !== this.bucket) {
      // the column just completed is drawn; the new one fills in until the next
      this.bucket = bucket;
      this.head = (this.head + 1) % HISTORY_COLUMNS;
      this.count = Math.min(HISTORY_COLUMNS, this.count + 1);
      this.dirty = true;
      state.dirty.add("heatmap");
    }
    const L = this.layers, base = this.head * this.electrodes * L, layers = state.session.layers;
    const cols = f.layers.map((l) => layers.indexOf(l));
    for (let e = 0; e < this.electrodes; e++) {
      const r = f.r[e];
      for (let j = 0; j < cols.length; j++) this.data[base + e * L + cols[j]] = r[j] === null ? NaN : r[j];
      const p = f.summary.peak_r[e];
      this.peak[this.head * this.electrodes + e] = p === null ? NaN : p;
    }
  },
  /** Value at column `k` (0 = oldest kept) of electrode `e`: at layer index `j`, or (j < 0) its best. */
  value(k, e, j) {
    const slot = (this.head - this.count + 1 + k + HISTORY_COLUMNS) % HISTORY_COLUMNS;
    return j < 0 ? this.peak[slot * this.electrodes + e] : this.data[(slot * this.electrodes + e) * this.layers + j];
  },
  image: document.createElement("canvas"),
  /** Renders the kept columns (oldest left) for the view's rows. */
  render() {
    const rows = state.view, n = Math.max(1, rows.length), img = this.image;
    img.width = HISTORY_COLUMNS; img.height = n;
    const c = img.getContext("2d"), pixels = c.createImageData(HISTORY_COLUMNS, n);
    const choice = $("heat-layer").value, j = choice === "peak" ? -1 : state.session.layers.indexOf(Number(choice));
    const offset = HISTORY_COLUMNS - this.count;
    for (let i = 0; i < rows.length; i++) {
      for (let x = 0; x < HISTORY_COLUMNS; x++) {
        const rgb = x < offset ? EMPTY : colour(this.value(x - offset, rows[i], j)), p = (i * HISTORY_COLUMNS + x) * 4;
        pixels.data[p] = rgb[0]; pixels.data[p + 1] = rgb[1]; pixels.data[p + 2] = rgb[2]; pixels.data[p + 3] = 255;
      }
    }
    c.putImageData(pixels, 0, 0);
    this.dirty = false;
  },
};

const LEFT = 46; // room for axis labels
function drawHeatmap() {
  const { ctx, w, h } = fit($("heatmap"));
  ctx.clearRect(0, 0, w, h);
  if (!state.session) return;
  if (history.dirty) history.render();
  const plotW = w - LEFT - 6, plotH = h - 18, rows = state.view, n = Math.max(1, rows.length);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(history.image, LEFT, 0, plotW, plotH);
  axisText(ctx);
  const labels = state.session.electrodes, step = Math.max(1, Math.ceil(n / Math.floor(plotH / 13)));
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (let i = 0; i < rows.length; i += step) ctx.fillText(labels[rows[i]], LEFT - 9, Math.max(6, ((i + 0.5) / n) * plotH));
  // group boundaries when the rows are grouped
  if ($("sort").value === "group") {
    ctx.strokeStyle = "rgba(214,219,228,0.35)";
    for (let i = 1; i < rows.length; i++) if (info(rows[i]).group !== info(rows[i - 1]).group) {
      const y = Math.round((i / n) * plotH) + 0.5; ctx.beginPath(); ctx.moveTo(LEFT, y); ctx.lineTo(LEFT + plotW, y); ctx.stroke();
    }
  }
  // traced electrodes: a notch on the left edge, in their trace colour
  state.selected.forEach((e, k) => {
    const i = rows.indexOf(e);
    if (i < 0) return;
    const y = ((i + 0.5) / n) * plotH;
    ctx.fillStyle = PRED[k % PRED.length];
    ctx.beginPath(); ctx.moveTo(LEFT - 1, y); ctx.lineTo(LEFT - 7, y - 4); ctx.lineTo(LEFT - 7, y + 4); ctx.fill();
  });
  // time axis: a tick a minute, back from now
  axisText(ctx); ctx.textBaseline = "alphabetic"; ctx.textAlign = "center";
  const span = HISTORY_COLUMNS * HISTORY_STEP_S;
  for (let m = 1; m * 60 < span; m++) {
    const x = LEFT + plotW * (1 - (m * 60) / span);
    ctx.fillStyle = "#262c38"; ctx.fillRect(x, plotH, 1, 4); axisText(ctx); ctx.fillText(`−${m} min`, x, h - 4);
  }
  ctx.textAlign = "right"; ctx.fillText("now", LEFT + plotW, h - 4);
  const kept = history.count * HISTORY_STEP_S;
  $("heat-title").textContent = `${rows.length} electrodes · ${Math.floor(kept / 60)}:${String(kept % 60).padStart(2, "0")} of ${span / 60} min kept`;
}

function drawLegend() {
  const c = $("legend").getContext("2d"), { lo, hi } = state.scale;
  for (let x = 0; x < 160; x++) { c.fillStyle = css(colour(lo + (x / 159) * (hi - lo))); c.fillRect(x, 0, 1, 10); }
  $("legend-text").textContent = `r ${lo.toFixed(2)} … ${hi.toFixed(2)}`;
  $("legend-text").dataset.lo = lo; $("legend-text").dataset.hi = hi;
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

// ---- per-layer profile of the focused electrode, with the mean over electrodes and
// the null band (r up to the electrode's live threshold) when calibrated ----
function drawProfile() {
  const { ctx, w, h } = fit($("profile"));
  ctx.clearRect(0, 0, w, h);
  const a = state.alignment;
  if (!a) return;
  const L = a.layers, pad = { l: 38, r: 10, t: 10, b: 26 }, { lo, hi } = state.scale;
  const x = (j) => pad.l + (L.length > 1 ? j / (L.length - 1) : 0.5) * (w - pad.l - pad.r);
  const y = (r) => pad.t + (1 - (Math.max(lo, Math.min(hi, r)) - lo) / (hi - lo)) * (h - pad.t - pad.b);
  const thr = calibrated() ? state.session.null_threshold[state.focus] : null;
  if (thr !== null) {
    ctx.fillStyle = "rgba(239,83,80,0.12)";
    ctx.fillRect(pad.l, y(thr), w - pad.l - pad.r, y(lo) - y(thr));
  }
  axisText(ctx); ctx.strokeStyle = "#262c38"; ctx.textAlign = "right";
  for (const r of scaleTicks()) { ctx.beginPath(); ctx.moveTo(pad.l, y(r)); ctx.lineTo(w - pad.r, y(r)); ctx.stroke(); ctx.fillText(r.toFixed(2), pad.l - 4, y(r) + 4); }
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
  const r = a.r[state.focus] || [];
  path(r, "#f5a623", 2.2);
  const peak = a.summary.peak_layer[state.focus], pj = L.indexOf(peak);
  if (pj >= 0) { ctx.fillStyle = "#f5a623"; ctx.beginPath(); ctx.arc(x(pj), y(r[pj]), 4, 0, 2 * Math.PI); ctx.fill(); }
  ctx.lineWidth = 1; ctx.textAlign = "left"; axisText(ctx);
  ctx.fillText(`— mean over electrodes   - - chance${thr !== null ? "   ▒ null (live threshold)" : "   (uncalibrated: no null band)"}`, pad.l + 4, pad.t + 10);
  $("profile-title").textContent = `${state.session.electrodes[state.focus]} · peak layer ${peak ?? "—"}` +
    (pj >= 0 ? ` (r ${r[pj].toFixed(2)})` : "");
}

// ---- peak layer per electrode (view order): the central figure, live ----
const PEAK_PAD = { l: 30, r: 8, t: 8, b: 22 };
function drawPeaks() {
  const { ctx, w, h } = fit($("peaks"));
  ctx.clearRect(0, 0, w, h);
  const a = state.alignment;
  if (!a || !state.session) return;
  const layers = state.session.layers, rows = state.view, n = Math.max(1, rows.length), pad = PEAK_PAD;
  const maxLayer = layers[layers.length - 1] || 1;
  const x = (i) => pad.l + ((i + 0.5) / n) * (w - pad.l - pad.r);
  const y = (l) => pad.t + (1 - l / maxLayer) * (h - pad.t - pad.b);
  axisText(ctx); ctx.textAlign = "right"; ctx.strokeStyle = "#262c38";
  for (let l = 0; l <= maxLayer; l += 5) { ctx.beginPath(); ctx.moveTo(pad.l, y(l)); ctx.lineTo(w - pad.r, y(l)); ctx.stroke(); ctx.fillText(l, pad.l - 4, y(l) + 4); }
  ctx.textAlign = "center"; ctx.fillText("electrode (table order)", (pad.l + w) / 2, h - 4);
  const radius = Math.max(1.5, Math.min(4, (w - pad.l) / n / 2));
  rows.forEach((e, i) => {
    const rw = row(e);
    if (rw.layer === null) return;
    const above = rw.significant ?? rw.r > a.chance;
    ctx.fillStyle = above ? css(colour(rw.r)) : "rgba(125,135,153,0.35)";
    ctx.beginPath(); ctx.arc(x(i), y(rw.layer), above ? radius : radius * 0.7, 0, 2 * Math.PI); ctx.fill();
  });
  const fi = rows.indexOf(state.focus);
  if (fi >= 0) { ctx.fillStyle = "rgba(245,166,35,0.18)"; ctx.fillRect(x(fi) - radius - 1, pad.t, 2 * radius + 2, h - pad.t - pad.b); }
  const sig = a.summary.significant;
  $("peaks-title").textContent = (Array.isArray(sig) && sig.length
    ? `${sig.filter(Boolean).length}/${a.summary.peak_layer.length} significant`
    : `${a.summary.electrodes_above_chance}/${a.summary.peak_layer.length} above chance`) +
    ` · best mean layer ${a.summary.best_layer ?? "—"}`;
}

// ---- every model side by side: the mean r per layer against relative depth (layer over
// the model's last layer), and a row of figures per model ----
const MODEL_COLOURS = ["#f5a623", "#4fc3f7", "#5ec962", "#ab47bc", "#ef5350"];
function drawModels() {
  const { ctx, w, h } = fit($("models-profile"));
  ctx.clearRect(0, 0, w, h);
  if (!state.hello) return;
  const models = state.hello.session.models || [], pad = { l: 38, r: 10, t: 8, b: 26 };
  const { lo, hi } = state.scale;
  const x = (d) => pad.l + d * (w - pad.l - pad.r);
  const y = (r) => pad.t + (1 - (Math.max(lo, Math.min(hi, r)) - lo) / (hi - lo)) * (h - pad.t - pad.b);
  axisText(ctx); ctx.strokeStyle = "#262c38"; ctx.textAlign = "right";
  for (const r of scaleTicks()) { ctx.beginPath(); ctx.moveTo(pad.l, y(r)); ctx.lineTo(w - pad.r, y(r)); ctx.stroke(); ctx.fillText(r.toFixed(2), pad.l - 4, y(r) + 4); }
  ctx.textAlign = "center";
  for (const d of [0, 0.25, 0.5, 0.75, 1]) ctx.fillText(d.toFixed(2), x(d), h - 12);
  ctx.fillText("relative depth (layer / last layer)", (pad.l + w) / 2, h);
  const rows = models.map((md, m) => {
    const a = state.latest[m], colour = MODEL_COLOURS[m % MODEL_COLOURS.length];
    const last = md.layers[md.layers.length - 1] || 1, s = a ? a.summary : null;
    if (s) {
      ctx.strokeStyle = colour; ctx.lineWidth = m === state.model ? 2.4 : 1.6; ctx.beginPath();
      let started = false;
      md.layers.forEach((l, j) => {
        const v = s.mean_r[j];
        if (v === null) { started = false; return; }
        started ? ctx.lineTo(x(l / last), y(v)) : ctx.moveTo(x(l / last), y(v)); started = true;
      });
      ctx.stroke(); ctx.lineWidth = 1;
    }
    const best = s ? s.best_layer : null, bj = best === null ? -1 : md.layers.indexOf(best);
    const focus = s ? s.peak_r[state.focus] : null, sig = s && s.significant && s.significant.length;
    const progress = state.status && state.status.models ? state.status.models[m] : null;
    return [
      [m, colour],
      md.name,
      String(md.layers.length),
      best === null ? "—" : `${best} (${(best / last).toFixed(2)})`,
      bj < 0 ? "—" : fmt(s.mean_r[bj]),
      s ? `${s.electrodes_above_chance}/${s.peak_r.length}${sig ? " sig." : ""}` : "—",
      fmt(focus),
      progress ? `${progress.words} · ${progress.lm_queue_waiting}` : "—",
    ];
  });
  const body = $("models-table").tBodies[0];
  body.replaceChildren(...rows.map(([[m, colour], ...cells]) => {
    const tr = document.createElement("tr");
    tr.dataset.model = m;
    tr.classList.toggle("focus", m === state.model);
    cells.forEach((text, k) => {
      const td = document.createElement("td"); td.textContent = text;
      if (k === 0) td.style.borderLeft = `4px solid ${colour}`;
      tr.append(td);
    });
    return tr;
  }));
  $("models-title").textContent = `${models.length} model${models.length === 1 ? "" : "s"} · r at ${state.session ? state.session.electrodes[state.focus] : "—"}`;
}

// ---- the electrode table: rows reused, reordered only when the order changes ----
const table = {
  rows: new Map(), order: "",
  columns() {
    return ["label", "group", "r", "peak layer", ...(calibrated() ? ["threshold", "significant"] : [])];
  },
  header() {
    this.rows.clear(); this.order = "";
    $("table").tHead.rows[0].replaceChildren(...this.columns().map((c) => {
      const th = document.createElement("th"); th.textContent = c; return th;
    }));
    $("table").tBodies[0].replaceChildren();
  },
  /** The cells of electrode `e` as text, in column order (the CSV export writes the same). */
  cells(r) {
    const out = [r.label, r.group, fmt(r.r), r.layer === null ? "—" : String(r.layer)];
    if (calibrated()) out.push(fmt(r.threshold), r.significant === null ? "—" : r.significant ? "yes" : "no");
    return out;
  },
  draw() {
    if (!state.session) return;
    updateView();
    const body = $("table").tBodies[0];
    const order = state.view.join();
    state.rows.forEach((r) => {
      let tr = this.rows.get(r.e);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.e = r.e;
        this.columns().forEach(() => tr.append(document.createElement("td")));
        this.rows.set(r.e, tr);
      }
      this.cells(r).forEach((text, k) => { if (tr.cells[k].textContent !== text) tr.cells[k].textContent = text; });
      tr.cells[2].style.background = r.r === null ? "" :
        `linear-gradient(90deg, ${css(colour(r.r), 0.55)} ${Math.round(100 * Math.max(0, (r.r - state.scale.lo) / (state.scale.hi - state.scale.lo)))}%, transparent 0)`;
      tr.classList.toggle("focus", r.e === state.focus);
      tr.classList.toggle("sig", !!r.significant);
    });
    if (order !== this.order) { body.replaceChildren(...state.view.map((e) => this.rows.get(e))); this.order = order; }
    $("table-title").textContent = `sorted by ${$("sort").selectedOptions[0].text}${$("sort-dir").dataset.reverse === "1" ? " (reversed)" : ""}`;
    state.dirty.add("heatmap"); state.dirty.add("peaks");
  },
};

// ---- the brain map: every electrode with coordinates at its side-view position ----
const map = {
  marks: new Map(), size: null,
  /** Places the marks (on a new session or a resize); colours are set by draw(). */
  layout() {
    const svg = $("brainmap"), s = state.session;
    const w = svg.clientWidth || 400, h = svg.clientHeight || 300;
    this.size = { w, h };
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("width", w); svg.setAttribute("height", h);
    svg.replaceChildren();
    this.marks.clear();
    const placed = [], missing = [];
    s.electrodes.forEach((_, e) => (info(e).xy ? placed : missing).push(e));
    $("no-coords").replaceChildren(...missing.map((e) => { const li = document.createElement("li"); li.textContent = s.electrodes[e]; li.dataset.e = e; return li; }));
    $("n-nocoords").textContent = `(${missing.length})`;
    $("bad-list").replaceChildren(...(s.bad_channels || []).map((b) => { const li = document.createElement("li"); li.textContent = b; return li; }));
    $("n-bad").textContent = `(${(s.bad_channels || []).length})`;
    const el = (name, attrs, text) => {
      const n = document.createElementNS(SVG_NS, name);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
      if (text !== undefined) n.textContent = text;
      return n;
    };
    svg.append(el("rect", { x: 0, y: 0, width: w, height: h, fill: "#171b23" }));
    if (!placed.length) {
      svg.append(el("text", { x: w / 2, y: h / 2, "text-anchor": "middle", fill: "#7d8799", "font-size": 12, "font-family": "system-ui, sans-serif" },
        "the neural stream gives no electrode coordinates"));
      return;
    }
    const xs = placed.map((e) => info(e).xy[0]), ys = placed.map((e) => info(e).xy[1]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const pad = { l: 34, r: 12, t: 14, b: 44 };
    const k = Math.min((w - pad.l - pad.r) / Math.max(1e-9, x1 - x0), (h - pad.t - pad.b) / Math.max(1e-9, y1 - y0));
    const cx = pad.l + (w - pad.l - pad.r - k * (x1 - x0)) / 2, cy = pad.t + (h - pad.t - pad.b - k * (y1 - y0)) / 2;
    const px = (v) => cx + k * (v - x0), py = (v) => cy + k * (y1 - v); // superior up
    // a scale bar and the orientation
    const unit = [1, 2, 5, 10, 20, 50, 100, 200].find((u) => u * k >= 40) || 500;
    const font = { fill: "#7d8799", "font-size": 10, "font-family": "system-ui, sans-serif" };
    svg.append(el("line", { x1: pad.l, y1: h - 34, x2: pad.l + unit * k, y2: h - 34, stroke: "#7d8799", "stroke-width": 2 }),
      el("text", { ...font, x: pad.l, y: h - 38 }, `${unit} units`),
      el("text", { ...font, x: w - pad.r, y: h - 30, "text-anchor": "end" }, "anterior →"),
      el("text", { ...font, x: 10, y: pad.t + 8, transform: `rotate(-90 10 ${pad.t + 8})`, "text-anchor": "end" }, "superior →"));
    // group names beside their first contact
    const seen = new Set();
    const r = Math.max(2.5, Math.min(6, k * 2));
    for (const e of placed) {
      const g = info(e).group, [x, y] = info(e).xy;
      if (!seen.has(g)) { seen.add(g); svg.append(el("text", { ...font, x: px(x) - r - 2, y: py(y) - r - 2, "text-anchor": "end", fill: "#aab3c2" }, g)); }
      const c = el("circle", { cx: px(x).toFixed(1), cy: py(y).toFixed(1), r, class: "electrode", "data-e": e, fill: css(EMPTY), stroke: "#0f1218", "stroke-width": 1 });
      svg.append(c);
      this.marks.set(e, c);
    }
    this.legend = el("g", {});
    svg.append(this.legend);
    this.legendBox = { x: w - pad.r - 170, y: h - 22, w: 170 };
  },
  /** Colours every mark by live r or by peak layer; hides marks outside the view. */
  draw() {
    if (!state.session || !this.size) return;
    const byLayer = $("map-colour").value === "layer", shown = new Set(state.view), calib = calibrated();
    for (const [e, c] of this.marks) {
      const rw = row(e);
      const rgb = byLayer ? layerColour(rw.layer) : colour(rw.r);
      c.setAttribute("fill", css(rgb));
      c.setAttribute("opacity", shown.has(e) ? (calib && !rw.significant ? 0.45 : 1) : 0.08);
      c.setAttribute("stroke", e === state.focus ? "#f5a623" : calib && rw.significant ? "#e8ebf0" : "#0f1218");
      c.setAttribute("stroke-width", e === state.focus ? 2.5 : 1);
    }
    this.drawLegend(byLayer);
  },
  drawLegend(byLayer) {
    const g = this.legend, b = this.legendBox, s = state.session;
    if (!g) return;
    const { lo, hi } = state.scale, layers = s.layers, max = layers[layers.length - 1] || 1;
    const key = byLayer ? `layer${max}` : `r${lo},${hi}`;
    if (g.dataset.key === key) return;
    g.dataset.key = key;
    const el = (name, attrs, text) => {
      const n = document.createElementNS(SVG_NS, name);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
      if (text !== undefined) n.textContent = text;
      return n;
    };
    const steps = 40, cw = b.w / steps, parts = [];
    for (let i = 0; i < steps; i++) {
      const f = (i + 0.5) / steps;
      parts.push(el("rect", { x: (b.x + i * cw).toFixed(2), y: b.y, width: (cw + 0.5).toFixed(2), height: 8,
        fill: css(byLayer ? PLASMA[Math.round(f * 255)] : colour(lo + f * (hi - lo))) }));
    }
    const font = { fill: "#aab3c2", "font-size": 10, "font-family": "system-ui, sans-serif", y: b.y + 19 };
    parts.push(el("text", { ...font, x: b.x, "text-anchor": "start" }, byLayer ? "0" : lo.toFixed(2)),
      el("text", { ...font, x: b.x + b.w / 2, "text-anchor": "middle" }, byLayer ? "peak layer" : "live r"),
      el("text", { ...font, x: b.x + b.w, "text-anchor": "end" }, byLayer ? String(max) : hi.toFixed(2)));
    g.replaceChildren(...parts);
  },
};

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

// views that "hold" freezes, and those refreshed at most TABLE_HZ times a second
const HELD = new Set(["table", "map", "heatmap", "peaks", "profile", "models"]);
const THROTTLED = new Set(["table", "map"]);
const painters = {
  counters: drawCounters, traces: drawTraces, profile: drawProfile, peaks: drawPeaks, heatmap: drawHeatmap,
  words: drawWords, status: drawStatus, table: () => table.draw(), map: () => map.draw(),
  models: drawModels,
};
let lastThrottled = 0;
function frame(now) {
  const throttle = now - lastThrottled < 1000 / TABLE_HZ;
  // the table runs first: it sets the view the heatmap and the peak plot draw
  for (const p of ["table", ...state.dirty]) {
    if (!state.dirty.has(p) || (state.held && HELD.has(p)) || (throttle && THROTTLED.has(p))) continue;
    if (THROTTLED.has(p)) lastThrottled = now;
    painters[p]();
    state.dirty.delete(p);
  }
  requestAnimationFrame(frame);
}

// ---- interaction ----
function pick(e) {
  if (!state.session || e === undefined || e < 0 || e >= state.session.electrodes.length) return;
  state.focus = e;
  state.selected = state.selected.filter((x) => x !== e).concat([e]).slice(-MAX_TRACED);
  subscribe();
  everything();
}
/** The electrode under the pointer in each view, or undefined. */
function heatmapAt(ev) {
  const rect = $("heatmap").getBoundingClientRect();
  return state.view[Math.floor(((ev.clientY - rect.top) / (rect.height - 18)) * state.view.length)];
}
function peaksAt(ev) {
  const rect = $("peaks").getBoundingClientRect(), n = state.view.length;
  return state.view[Math.floor(((ev.clientX - rect.left - PEAK_PAD.l) / (rect.width - PEAK_PAD.l - PEAK_PAD.r)) * n)];
}
const markAt = (ev) => (ev.target.dataset && ev.target.dataset.e !== undefined ? Number(ev.target.dataset.e) : undefined);

// hover tooltips with the numbers
function tooltip(ev, e) {
  const tip = $("tip");
  if (e === undefined || !state.session) { tip.hidden = true; return; }
  const r = row(e), i = info(e), sig = calibrated()
    ? `threshold ${fmt(r.threshold)} · ${r.significant === null ? "—" : r.significant ? "significant" : "not significant"}`
    : "significance: uncalibrated";
  tip.replaceChildren(...[
    ["b", `${r.label}`], ["span", ` ${r.group}${i.type ? " · " + i.type : ""}`],
    ["div", `r ${fmt(r.r)} at peak layer ${r.layer ?? "—"}`], ["div", sig],
    ["div", i.xy ? `xy ${i.xy[0].toFixed(1)}, ${i.xy[1].toFixed(1)}` : "no coordinates"],
  ].map(([tag, text]) => { const n = document.createElement(tag); n.textContent = text; return n; }));
  tip.hidden = false;
  tip.style.left = `${Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 4) + window.scrollX}px`;
  tip.style.top = `${ev.clientY + 14 + window.scrollY}px`;
}
for (const [id, at] of [["heatmap", heatmapAt], ["peaks", peaksAt], ["brainmap", markAt]]) {
  $(id).addEventListener("click", (ev) => pick(at(ev)));
  $(id).addEventListener("mousemove", (ev) => tooltip(ev, at(ev)));
  $(id).addEventListener("mouseleave", () => { $("tip").hidden = true; });
}
$("table").addEventListener("click", (ev) => { const tr = ev.target.closest("tr[data-e]"); if (tr) pick(Number(tr.dataset.e)); });
$("no-coords").addEventListener("click", (ev) => { if (ev.target.dataset.e !== undefined) pick(Number(ev.target.dataset.e)); });
for (const id of ["search", "group", "sort", "sig-only", "min-r"]) $(id).addEventListener("input", () => { updateView(); everything(); });
$("sort-dir").addEventListener("click", (ev) => {
  const b = ev.currentTarget; b.dataset.reverse = b.dataset.reverse === "1" ? "0" : "1"; b.textContent = b.dataset.reverse === "1" ? "↑" : "↓";
  updateView(); everything();
});
$("hold").addEventListener("click", (ev) => {
  state.held = !state.held; ev.currentTarget.classList.toggle("active", state.held);
  ev.currentTarget.textContent = state.held ? "held — resume" : "hold";
  everything();
});
$("map-colour").addEventListener("change", () => state.dirty.add("map"));
$("model").addEventListener("change", (ev) => showModel(Number(ev.target.value)));
$("models-table").addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr[data-model]");
  if (tr && Number(tr.dataset.model) !== state.model) { $("model").value = tr.dataset.model; showModel(Number(tr.dataset.model)); }
});
for (const id of ["trace-layer", "heat-layer"]) $(id).addEventListener("change", () => { history.dirty = true; state.dirty.add("traces"); state.dirty.add("heatmap"); });
window.addEventListener("resize", () => { if (state.session) map.layout(); everything(); });

// ---- export: the brain map as PNG, the table as CSV ----
function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob); a.download = name;
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}
const stamp = () => new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
$("export-csv").addEventListener("click", () => {
  if (!state.session) return;
  const quote = (v) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  const lines = [table.columns(), ...[...$("table").tBodies[0].rows].map((tr) => [...tr.cells].map((td) => td.textContent))];
  download(new Blob([lines.map((l) => l.map(quote).join(",")).join("\n") + "\n"], { type: "text/csv" }), `neuralign-electrodes-${stamp()}.csv`);
});
$("export-png").addEventListener("click", async () => {
  const svg = $("brainmap"), { w, h } = map.size, scale = 2;
  const xml = new XMLSerializer().serializeToString(svg);
  const img = new Image();
  img.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(xml);
  await img.decode();
  const c = document.createElement("canvas");
  c.width = w * scale; c.height = h * scale;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0, c.width, c.height);
  c.toBlob((blob) => download(blob, `neuralign-map-${stamp()}.png`), "image/png");
});

drawLegend();
connect();
requestAnimationFrame(frame);
