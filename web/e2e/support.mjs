// What the browser tests and the benchmark share: the server web/e2e/run.sh started (its
// address, admin token and data folder), images made here, API calls, and Chromium's options.

import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { deflateSync } from "node:zlib";

export const URL = process.env.LABELING_URL;
export const ADMIN = process.env.LABELING_ADMIN_TOKEN;
export const DATA = process.env.LABELING_DATA;
export const ARTIFACTS = process.env.ARTIFACTS ?? "web/e2e/artifacts";

export const CLASSES = ["red", "green", "blue", "yellow", "purple", "orange", "teal", "gray", "pink"];
export const COLOURS = {
  red: [220, 38, 38], green: [22, 163, 74], blue: [37, 99, 235], yellow: [234, 179, 8],
  purple: [147, 51, 234], orange: [234, 88, 12], teal: [13, 148, 136], gray: [107, 114, 128],
  pink: [219, 39, 119],
};

/** A solid-colour PNG, made here so the test needs no image library. */
export function png(width, height, [r, g, b]) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (bytes) => {
    let c = 0xffffffff;
    for (const byte of bytes) c = crcTable[(c ^ byte) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([length, body, sum]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.alloc(1 + width * 3);
  for (let x = 0; x < width; x++) row.set([r, g, b], 1 + x * 3);
  const raw = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

export async function api(method, path, body, token = ADMIN) {
  const response = await fetch(`${URL}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** Writes `count` solid-colour PNGs into bucket `e2e` under `name/`, named by `fileName`. */
function writeImages(name, count, width, height, fileName) {
  const folder = join(DATA, "buckets", "e2e", name);
  mkdirSync(folder, { recursive: true });
  for (let i = 0; i < count; i++) {
    const colour = CLASSES[i % CLASSES.length];
    writeFileSync(join(folder, fileName(i, colour)), png(width, height, COLOURS[colour]));
  }
}

/** Creates a project over bucket `e2e`'s `name/` and waits until it runs; returns its id. */
async function createRunning(body) {
  const created = await api("POST", "/projects", { labels: CLASSES, source: `s3://e2e/${body.name}/**`, ...body });
  assert.equal(created.status, 202, JSON.stringify(created.body));
  const id = created.body.id;
  for (let waited = 0; ; waited += 100) {
    const project = await api("GET", `/projects/${id}`);
    if (project.body.status === "running") return id;
    assert.ok(waited < 30_000, `project ${id} stayed ${project.body.status}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A classification project of 9-image pages over `count` images whose names say their class. */
export async function classificationProject(name, count, { width = 96, height = 72 } = {}) {
  writeImages(name, count, width, height, (i, colour) => `${String(i).padStart(3, "0")}_${colour}.png`);
  return createRunning({
    name,
    task_type: "image_classification_multiclass",
    page_size: 9,
    instructions: { text: "Pick the colour that fills the image.", url: null },
  });
}

/** A project of one-image pages (boxes or polygons) over `count` images of 320 x 240. */
export async function drawingProject(name, taskType, count) {
  writeImages(name, count, 320, 240, (i) => `${String(i).padStart(3, "0")}.png`);
  return createRunning({ name, task_type: taskType, page_size: 1 });
}

/** The class an image's key names (`cls/004_yellow.png` -> yellow). */
export function truthOf(key) {
  return key.split("/").pop().replace(/^\d+_/, "").replace(/\.png$/, "");
}

/** Debian's Chromium, headless, without the background traffic a closed network refuses. */
export function launchOptions() {
  return {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  };
}

/** Signs in through the sign-in page, by keyboard. */
export async function signInAs(page, token = ADMIN) {
  await page.goto(`${URL}/`);
  await page.waitForSelector("#token");
  await page.keyboard.type(token);
  await page.keyboard.press("Enter");
  await page.waitForSelector(".projects, .card p");
}

const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/**
 * A screenshot of what the page shows now, and an axe-core check of it (no serious or critical
 * violation). axe is evaluated through the DevTools protocol, which the app's content security
 * policy (enforced in every test) does not govern.
 */
export async function look(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const { violations } = await axe.run(document, { resultTypes: ["violations"] });
    return violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  });
  assert.deepEqual(result, [], `${name}: accessibility violations`);
}
