// Headless Chromium test of the dashboard: starts `neuralign serve --synthetic`
// (a real server publishing real frames), loads the page in Debian's chromium via
// playwright-core, waits for frames to show up in the DOM counters, clicks an
// electrode, saves a screenshot and checks that it is not blank.
//
// Run: cargo build && (cd tests/browser && npm ci && npm test)
// Env: NEURALIGN_BIN (default <target>/debug/neuralign), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOT (default <tmp>/neuralign-dashboard.png).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const target = process.env.CARGO_TARGET_DIR || path.join(repo, "target");
const bin = process.env.NEURALIGN_BIN || path.join(target, "debug", "neuralign");
const shot = process.env.SCREENSHOT || path.join(tmpdir(), "neuralign-dashboard.png");

function startServer() {
  const server = spawn(bin, ["serve", "--synthetic", "--electrodes", "256", "--bind", "127.0.0.1:0"], {
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
    setTimeout(() => reject(new Error("server printed no URL within 30 s")), 30_000);
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
    viewport: { width: 1600, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || (await context.newPage());
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  // nothing but the server itself may be fetched
  const foreign = [];
  page.on("request", (r) => { if (!r.url().startsWith(url.replace(/\/$/, "")) && !r.url().startsWith("ws://")) foreign.push(r.url()); });

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

  // clicking an electrode in the heatmap subscribes to its trace
  const box = await page.locator("#heatmap").boundingBox();
  const rowOf = 200, plotH = box.height - 18;
  await page.mouse.click(box.x + box.width / 2, box.y + ((rowOf + 0.5) / 256) * plotH);
  await page.waitForFunction((e) => state.subscription && state.subscription.electrodes.includes(e) && state.traces.has(e), rowOf, { timeout: 10_000 });
  assert.match(await page.textContent("#profile-title"), /^M9 · peak layer \d+/);

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
  console.log(`ok: ${await count("#n-frames")} frames, ${await count("#n-word")} words shown`);
} finally {
  if (context) await context.close();
  server.kill("SIGINT");
  rmSync(profile, { recursive: true, force: true });
}
