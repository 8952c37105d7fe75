// Benchmark: from pressing Enter on a 9-image classification page to the next page's images
// shown, over 50 pages, in headless Chromium against a local server (web/e2e/run.sh starts it:
// `web/e2e/run.sh target/release/labeling bench/next_page.mjs`). Prints the median and p95 and
// the app's compressed size. The clock runs in the page: `performance.now()` when Enter is
// pressed, and again when every image of the next page has loaded (Playwright polls each
// animation frame, so a figure is at most one frame late).

import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";
import { classificationProject, launchOptions, signInAs, truthOf, CLASSES } from "../e2e/support.mjs";

const PAGES = 50;
const project = await classificationProject("bench", 9 * (PAGES + 2), { width: 1024, height: 768 });
const browser = await chromium.launch(launchOptions());
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
await signInAs(page);
await page.goto(`${process.env.LABELING_URL}/#/projects/${project}/label`);
await page.waitForSelector("[role=dialog] button");
await page.keyboard.press("Enter");
await page.waitForSelector("figure.cell:focus");

const times = [];
for (let n = 0; n < PAGES; n++) {
  for (let i = 0; i < 9; i++) {
    const label = await page.evaluate(() => document.activeElement?.getAttribute("aria-label") ?? "");
    await page.keyboard.press(String(CLASSES.indexOf(truthOf(label.split(", ")[1].split(":")[0])) + 1));
  }
  const before = await page.getAttribute(".grid", "data-task");
  await page.evaluate(() => {
    document.addEventListener("keydown", () => (window.benchStart = performance.now()), { capture: true, once: true });
  });
  await page.keyboard.press("Enter");
  const took = await page.waitForFunction((before) => {
    const grid = document.querySelector(".grid");
    const images = [...(grid?.querySelectorAll("img") ?? [])];
    const shown = grid?.dataset.task !== before && images.length === 9 && images.every((img) => img.complete && img.naturalWidth > 0);
    return shown ? performance.now() - window.benchStart : false;
  }, before, { polling: "raf" });
  times.push(await took.jsonValue());
}
await browser.close();

times.sort((a, b) => a - b);
const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
const size = (file) => gzipSync(readFileSync(new URL(`../dist/${file}`, import.meta.url)), { level: 9 }).length;
console.log(`next page shown after Enter, ${PAGES} pages of 9 images (1024 x 768 PNG):`);
console.log(`  median ${at(0.5).toFixed(1)} ms, p95 ${at(0.95).toFixed(1)} ms, max ${times[times.length - 1].toFixed(1)} ms (target: median under 100 ms)`);
console.log(`  app size compressed: ${((size("app.js") + size("app.css")) / 1024).toFixed(1)} KB (JS ${(size("app.js") / 1024).toFixed(1)} KB + CSS ${(size("app.css") / 1024).toFixed(1)} KB; target: under 150 KB)`);
