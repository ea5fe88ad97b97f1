// Headless Chromium test of the dashboard: starts `neuralign serve --synthetic`
// (a real server publishing real frames: 256 electrodes in a grid and depth shafts,
// one shaft without coordinates, one bad contact), loads the page in Debian's chromium
// via playwright-core, waits for frames to show up in the DOM counters, then checks the
// electrode views: groups, the bad list, the brain map, sorting, search, tooltips, the
// r scale, CSV and PNG export, the recording indicator; clicks an electrode, saves a
// screenshot and checks that it is not blank. Then `neuralign demo` with two real models
// (SmolLM2 and its untrained control, from the default model folder) live over LSL: the
// models panel shows both side by side, and the views follow the model chosen.
//
// Run: cargo build && (cd tests/browser && npm ci && npm test)
// Env: NEURALIGN_BIN (default <target>/debug/neuralign), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOT (default <tmp>/neuralign-dashboard.png).
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const target = process.env.CARGO_TARGET_DIR || path.join(repo, "target");
const bin = process.env.NEURALIGN_BIN || path.join(target, "debug", "neuralign");
const shot = process.env.SCREENSHOT || path.join(tmpdir(), "neuralign-dashboard.png");

function startServer(args = ["serve", "--synthetic", "--electrodes", "256"], wait = 30_000) {
  const server = spawn(bin, [...args, "--bind", "127.0.0.1:0"], {
    env: { ...process.env, LSLAPICFG: path.join(repo, "configs", "lsl_api.cfg"), RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = new Promise((resolve, reject) => {
    let out = "";
    server.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/dashboard: (http:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    server.on("exit", (code) => reject(new Error(`server exited (${code}) before printing its URL`)));
    // unref: a pending deadline must not keep node alive after the test (it held CI 5 min)
    setTimeout(() => reject(new Error(`server printed no URL within ${wait / 1000} s`)), wait).unref();
  });
  return { server, url };
}

const { server, url: urlPromise } = startServer();
const profile = mkdtempSync(path.join(tmpdir(), "neuralign-chromium-"));
let context;
try {
  const url = await urlPromise;
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1600, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || (await context.newPage());
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  // nothing but the server itself may be fetched
  const foreign = [];
  const own = (u) => u.startsWith(url.replace(/\/$/, "")) || u.startsWith("ws://") || u.startsWith("blob:" + url.replace(/\/$/, ""));
  page.on("request", (r) => { if (!own(r.url())) foreign.push(r.url()); });

  await page.goto(url);
  const count = (id) => page.$eval(id, (el) => Number(el.textContent));
  await page.waitForFunction(() =>
    document.getElementById("conn").textContent === "live" &&
    Number(document.getElementById("n-alignment").textContent) >= 40 &&
    Number(document.getElementById("n-trace").textContent) >= 40 &&
    Number(document.getElementById("n-word").textContent) >= 5 &&
    document.querySelectorAll("#streams tbody tr").length === 2, null, { timeout: 60_000 });
  const frames = await count("#n-frames");
  assert.ok(frames >= 85, `frames counter ${frames}`);
  assert.match(await page.textContent("#session-meta"), /256 electrodes × 31 layers/);
  // the latency panel lists the stages the server measured (frame_send at least)
  await page.waitForFunction(() => document.querySelector("#stages tbody")?.textContent.includes("frame_send"),
    null, { timeout: 10_000 });

  const session = await page.evaluate(() => state.session);
  const withXy = session.electrode_info.filter((i) => i.xy).length;
  assert.equal(withXy, 240, "the synthetic session places all but its last shaft");
  await page.waitForFunction(() => document.querySelectorAll("#table tbody tr").length === 256, null, { timeout: 10_000 });
  // document order (playwright's $$eval does not keep it for rows moved by replaceChildren)
  const tableRows = () => page.evaluate(() =>
    [...document.querySelectorAll("#table tbody tr")].map((tr) => [...tr.cells].map((td) => td.textContent)));
  const column = (rows, k) => rows.map((r) => r[k]);

  // groups: the grid and the shafts E…P, in the group filter and the table
  const groups = await page.$$eval("#group option", (o) => o.slice(1).map((x) => x.value));
  assert.deepEqual(groups, ["grid", ..."EFGHIJKLMNOP"]);
  assert.deepEqual([...new Set(column(await tableRows(), 1))], groups, "the table is grouped by default");

  // the bad contact is listed as bad, and nowhere among the data
  assert.deepEqual(session.bad_channels, ["Q1"]);
  assert.deepEqual(await page.$$eval("#bad-list li", (l) => l.map((x) => x.textContent)), ["Q1"]);
  assert.ok(!column(await tableRows(), 0).includes("Q1"), "bad channel in the table");

  // the brain map: one mark per electrode with coordinates; the others listed beside it
  const markLabels = await page.$$eval("#brainmap circle.electrode", (c) => c.map((x) => state.session.electrodes[Number(x.dataset.e)]));
  assert.equal(markLabels.length, withXy);
  assert.equal(new Set(markLabels).size, withXy, "one mark per electrode");
  assert.ok(!markLabels.includes("Q1"));
  assert.deepEqual(await page.$$eval("#no-coords li", (l) => l.map((x) => x.textContent)),
    Array.from({ length: 16 }, (_, i) => `P${i + 1}`));
  // coloured by live r: more than a handful of distinct fills once alignment frames arrive
  const fills = await page.$$eval("#brainmap circle.electrode", (c) => new Set(c.map((x) => x.getAttribute("fill"))).size);
  assert.ok(fills > 20, `map fills ${fills}`);
  await page.selectOption("#map-colour", "layer");
  await page.waitForTimeout(400);
  const legend = await page.$$eval("#brainmap text", (t) => t.map((x) => x.textContent));
  assert.ok(legend.includes("peak layer") && legend.includes("30"), `legend ${legend}`);
  await page.selectOption("#map-colour", "r");

  // no calibration in the synthetic encoders: said so, no significance column
  assert.equal(await page.textContent("#calibration"), "uncalibrated");
  assert.deepEqual(await page.$$eval("#table thead th", (t) => t.map((x) => x.textContent)), ["label", "group", "r", "peak layer"]);

  // sorting by r orders the table (values as shown, highest first)
  await page.selectOption("#sort", "r");
  await page.waitForTimeout(500);
  const byR = await tableRows();
  const rs = column(byR, 2).filter((v) => v !== "—").map(Number);
  assert.ok(rs.length > 200, `${rs.length} r values`);
  assert.ok(rs.every((v, i) => i === 0 || rs[i - 1] >= v), `table not sorted by r: ${rs.slice(0, 10)}`);
  assert.notDeepEqual(column(byR, 0).slice(0, 20), session.electrodes.slice(0, 20));

  // the r scale follows the data: it spans every electrode's r, and not much more
  const scale = await page.evaluate(() => {
    const r = state.alignment.summary.peak_r.filter((v) => v !== null);
    const d = document.getElementById("legend-text").dataset;
    return { lo: Number(d.lo), hi: Number(d.hi), min: Math.min(...r), max: Math.max(...r), scale: state.scale };
  });
  assert.ok(scale.lo <= Math.min(0, scale.min) && scale.hi >= scale.max, JSON.stringify(scale));
  assert.ok(scale.hi <= scale.max / 0.6 + 0.05 && scale.lo >= Math.min(0, scale.min) - 0.05 / 0.6 - 0.1, JSON.stringify(scale));
  assert.match(await page.textContent("#legend-text"), /^r -?\d\.\d\d … \d\.\d\d$/);

  // search by label filters the table (and the map dims what it hides)
  await page.fill("#search", "^E1");
  await page.waitForTimeout(500);
  assert.deepEqual(column(await tableRows(), 0).sort(), ["E1", "E10", "E11", "E12", "E13", "E14", "E15", "E16"]);
  assert.match(await page.textContent("#shown"), /^8 of 256 shown/);
  await page.fill("#search", "");

  // hovering an electrode on the map shows its numbers
  const mark = page.locator("#brainmap circle.electrode").last(); // drawn on top
  const e10 = Number(await mark.getAttribute("data-e"));
  await mark.hover();
  await page.waitForSelector("#tip:not([hidden])", { timeout: 5_000 });
  const tip = await page.textContent("#tip");
  const i10 = session.electrode_info[e10];
  assert.equal(`${i10.group} ${i10.type}`, "O SEEG");
  assert.match(tip, new RegExp(`^${session.electrodes[e10]} ${i10.group} · ${i10.type}`));
  assert.match(tip, /r -?\d\.\d{3} at peak layer \d+/);
  assert.match(tip, /significance: uncalibrated/);
  assert.match(tip, /xy -?\d+\.\d, -?\d+\.\d/);

  // hold the views, then export the table: the CSV's rows are the table's
  await page.click("#hold");
  await page.waitForTimeout(300);
  const held = await tableRows();
  const [csv] = await Promise.all([page.waitForEvent("download"), page.click("#export-csv")]);
  assert.match(csv.suggestedFilename(), /^neuralign-electrodes-.*\.csv$/);
  const csvLines = readFileSync(await csv.path(), "utf8").trimEnd().split("\n").map((l) => l.split(","));
  assert.deepEqual(csvLines[0], ["label", "group", "r", "peak layer"]);
  assert.deepEqual(csvLines.slice(1), held, "CSV rows equal the table");
  assert.deepEqual(await tableRows(), held, "held table changed");
  // the brain map as PNG: a PNG, and not blank
  const [pngDownload] = await Promise.all([page.waitForEvent("download"), page.click("#export-png")]);
  const mapPng = readFileSync(await pngDownload.path());
  assert.deepEqual([...mapPng.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10], "PNG signature");
  const mapStats = await page.evaluate(async (b64) => {
    const img = new Image();
    img.src = "data:image/png;base64," + b64;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.width; c.height = img.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data, colours = new Set();
    for (let i = 0; i < d.length; i += 4) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    return { w: img.width, h: img.height, colours: colours.size };
  }, mapPng.toString("base64"));
  assert.ok(mapStats.w >= 400 && mapStats.colours > 50, `map PNG looks blank: ${JSON.stringify(mapStats)}`);
  await page.click("#hold");

  // the recording indicator: the synthetic session writes no file
  assert.equal(await page.textContent("#rec"), "not recording");
  assert.ok(await page.isVisible("#rec"));

  // clicking an electrode in the table traces it and shows its layer profile
  await page.selectOption("#sort", "group");
  await page.click('#table tbody tr[data-e="200"]');
  await page.waitForFunction((e) => state.subscription && state.subscription.electrodes.includes(e) && state.traces.has(e), 200, { timeout: 10_000 });
  assert.match(await page.textContent("#profile-title"), /^M9 · peak layer \d+/);
  // … and clicking its row in the heatmap (grouped order = session order) too
  const box = await page.locator("#heatmap").boundingBox();
  const rowOf = 150, plotH = box.height - 18;
  await page.mouse.click(box.x + box.width / 2, box.y + ((rowOf + 0.5) / 256) * plotH);
  await page.waitForFunction((e) => state.subscription.electrodes.includes(e), rowOf, { timeout: 10_000 });
  assert.match(await page.textContent("#profile-title"), /^J7 · peak layer \d+/);

  await page.mouse.move(0, 0); // no tooltip in the screenshot
  await page.waitForTimeout(4000); // let the traces and heatmap fill in
  const png = await page.screenshot({ path: shot, fullPage: true });

  // not blank: luminance variance of the whole screenshot and of the heatmap alone
  const stats = await page.evaluate(async (b64) => {
    const img = new Image();
    img.src = "data:image/png;base64," + b64;
    await img.decode();
    const measure = (source, w, h) => {
      const c = document.createElement("canvas");
      c.width = w; c.height = h;
      const ctx = c.getContext("2d");
      ctx.drawImage(source, 0, 0);
      const d = ctx.getImageData(0, 0, w, h).data;
      let sum = 0, sq = 0;
      const colours = new Set();
      for (let i = 0; i < d.length; i += 4) {
        const y = 0.2126 * d[i] + 0.7152 * d[i + 1] + 0.0722 * d[i + 2];
        sum += y; sq += y * y;
        if (colours.size < 5000) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      }
      const n = d.length / 4, mean = sum / n;
      return { mean, variance: sq / n - mean * mean, colours: colours.size };
    };
    const heat = document.getElementById("heatmap");
    return { page: measure(img, img.width, img.height), heatmap: measure(heat, heat.width, heat.height) };
  }, png.toString("base64"));
  console.log("screenshot", shot, JSON.stringify(stats));
  assert.ok(stats.page.variance > 100, `screenshot looks blank: ${JSON.stringify(stats.page)}`);
  assert.ok(stats.heatmap.variance > 50 && stats.heatmap.colours > 50, `heatmap looks blank: ${JSON.stringify(stats.heatmap)}`);
  assert.deepEqual(pageErrors, [], "the page threw");
  assert.deepEqual(foreign, [], "the page fetched something from elsewhere");

  // a session that records says to which file (the hello of a recording pipeline, as
  // tests/pipeline.rs checks the server sends it)
  const file = "/data/sub-p07/ses-20261130/sub-p07_ses-20261130_task-listen_run-01_ieeg.xdf";
  await page.evaluate((f) => handlers.hello({ type: "hello", session: { ...state.session, recording: f }, subscription: state.subscription }), file);
  assert.equal(await page.textContent("#rec"), "● REC sub-p07_ses-20261130_task-listen_run-01_ieeg.xdf");
  assert.equal(await page.getAttribute("#rec", "title"), `serve is recording this session to ${file}`);

  // with a calibrated null (hello.session.null_threshold, alignment.summary.significant:
  // fields of encoder files that carry a calibration), the page shows significance; the
  // socket is closed first so that only these frames reach the page
  const sig = await page.evaluate(() => {
    socket.onclose = null; socket.close();
    const a = state.alignment, thr = a.summary.peak_r.map((_, e) => 0.2 + 0.4 * (e % 2));
    const models = state.hello.session.models.map((m) => ({ ...m, null_threshold: thr }));
    handlers.hello({ type: "hello", session: { ...state.session, null_threshold: thr, models }, subscription: state.subscription });
    const significant = a.summary.peak_r.map((r, e) => r > thr[e]);
    handlers.alignment({ ...a, summary: { ...a.summary, significant } });
    return { n: significant.filter(Boolean).length, labels: state.session.electrodes.filter((_, e) => significant[e]) };
  });
  assert.ok(sig.n > 20 && sig.n < 240, `${sig.n} significant`);
  await page.waitForFunction(() => document.querySelectorAll("#table thead th").length === 6, null, { timeout: 5_000 });
  assert.equal(await page.textContent("#calibration"), "null calibrated");
  assert.deepEqual(await page.$$eval("#table thead th", (t) => t.map((x) => x.textContent)),
    ["label", "group", "r", "peak layer", "threshold", "significant"]);
  await page.check("#sig-only");
  await page.waitForTimeout(500);
  const sigRows = await tableRows();
  assert.deepEqual(column(sigRows, 0).sort(), [...sig.labels].sort(), "significant only");
  // the table rounds to 3 decimals: an r just above its threshold can print equal to it
  assert.ok(sigRows.every((r) => r[5] === "yes" && Number(r[2]) >= Number(r[4])),
    `significant rows are above threshold: ${JSON.stringify(sigRows.filter((r) => !(Number(r[2]) >= Number(r[4]))))}`);
  assert.equal(await page.textContent("#peaks-title").then((t) => t.split(" ")[0]), `${sig.n}/256`);
  console.log(`ok: ${await count("#n-frames")} frames, ${await count("#n-word")} words shown`);
} finally {
  if (context) await context.close();
  server.kill("SIGINT");
  rmSync(profile, { recursive: true, force: true });
}

// Two models live: `demo --models` simulates a short session, fits each model's encoders on
// its first part (kept between runs in the model folder) and replays the rest over LSL at 1×
// (one minute of session: the fits in the debug build are most of this part's time).
const demo = startServer(["demo", "--models", "smollm2-135m,smollm2-135m-untrained",
  "--electrodes", "8", "--minutes", "1", "--pcs", "4"], 300_000);
const demoProfile = mkdtempSync(path.join(tmpdir(), "neuralign-chromium-"));
let demoContext;
try {
  const url = await demo.url;
  demoContext = await chromium.launchPersistentContext(demoProfile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1600, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  });
  const page = demoContext.pages()[0] || (await demoContext.newPage());
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(url);
  // both models' alignment frames, then their rows drawn with a best layer each
  await page.waitForFunction(() => state.hello && state.latest.length === 2 && state.latest.every(Boolean) &&
    [...document.querySelectorAll("#models-table tbody tr")].every((tr) => tr.cells[2].textContent !== "—"),
  null, { timeout: 120_000 });
  const models = await page.evaluate(() => state.hello.session.models.map((m) => m.name));
  assert.equal(models.length, 2);
  assert.match(models[0], /SmolLM2-135M-Instruct/);
  assert.match(models[1], /untrained/);
  assert.notEqual(...(await page.evaluate(() => state.hello.session.models.map((m) => m.sha256))));
  const rows = await page.$$eval("#models-table tbody tr", (t) => t.map((tr) => [...tr.cells].map((td) => td.textContent)));
  assert.deepEqual(rows.map((r) => r[0]), models, "a row per model, side by side");
  assert.deepEqual(rows.map((r) => r[1]), ["31", "31"], "every layer of each");
  // each model's progress from the status: words embedded · updates waiting
  await page.waitForFunction(() => [...document.querySelectorAll("#models-table tbody tr")]
    .every((tr) => /^[1-9]\d* · \d+$/.test(tr.cells[6].textContent)), null, { timeout: 10_000 });
  assert.ok(await page.isVisible("#model-pick"), "the model choice is shown");
  assert.deepEqual(await page.$$eval("#model option", (o) => o.map((x) => x.textContent)), models);
  // the profiles drawn: more than the axes' colours on the canvas
  const colours = await page.evaluate(() => {
    const c = document.getElementById("models-profile"), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < d.length; i += 4) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    return seen.size;
  });
  assert.ok(colours > 10, `models profile looks blank (${colours} colours)`);
  // the views show the first model, then the one chosen
  assert.match(await page.textContent("#session-meta"), new RegExp(`^${models[0].replace(/\./g, "\\.")} · 8 electrodes × 31 layers`));
  await page.selectOption("#model", "1");
  await page.waitForFunction((name) => state.session.model === name && state.alignment &&
    document.getElementById("session-meta").textContent.startsWith(name), models[1], { timeout: 20_000 });
  assert.deepEqual(pageErrors, [], "the page threw");
  console.log(`ok: two models side by side: ${rows.map((r) => `${r[0]} best layer ${r[2]}`).join("; ")}`);
} finally {
  if (demoContext) await demoContext.close();
  demo.server.kill("SIGINT");
  rmSync(demoProfile, { recursive: true, force: true });
}
