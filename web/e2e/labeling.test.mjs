// The web app in headless Chromium (Debian's, driven by playwright-core) against a real local
// server on a fresh data folder, started by infra/test.sh (web/e2e/run.sh), which passes:
// LABELING_URL, LABELING_ADMIN_TOKEN, LABELING_DATA (the server's data folder: buckets are
// folders in it), CHROMIUM (the browser) and ARTIFACTS (where screenshots go).
//
// Every page gets a screenshot at 1280 x 800 and an axe-core check (no serious or critical
// violation).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import { chromium } from "playwright-core";

const URL = process.env.LABELING_URL;
const ADMIN = process.env.LABELING_ADMIN_TOKEN;
const DATA = process.env.LABELING_DATA;
const ARTIFACTS = process.env.ARTIFACTS ?? "web/e2e/artifacts";
const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const CLASSES = ["red", "green", "blue", "yellow", "purple", "orange", "teal", "gray", "pink"];
const COLOURS = {
  red: [220, 38, 38], green: [22, 163, 74], blue: [37, 99, 235], yellow: [234, 179, 8],
  purple: [147, 51, 234], orange: [234, 88, 12], teal: [13, 148, 136], gray: [107, 114, 128],
  pink: [219, 39, 119],
};

/** A solid-colour PNG, made here so the test needs no image library. */
function png(width, height, [r, g, b]) {
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

async function api(method, path, body, token = ADMIN) {
  const response = await fetch(`${URL}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** A classification project over `count` images whose names say their class. */
async function classificationProject(name, count) {
  const folder = join(DATA, "buckets", "e2e", name);
  mkdirSync(folder, { recursive: true });
  for (let i = 0; i < count; i++) {
    const colour = CLASSES[i % CLASSES.length];
    writeFileSync(join(folder, `${String(i).padStart(3, "0")}_${colour}.png`), png(96, 72, COLOURS[colour]));
  }
  const created = await api("POST", "/projects", {
    name,
    task_type: "image_classification_multiclass",
    labels: CLASSES,
    source: `s3://e2e/${name}/**`,
    page_size: 9,
    instructions: { text: "Pick the colour that fills the image.", url: null },
  });
  assert.equal(created.status, 202, JSON.stringify(created.body));
  const id = created.body.id;
  for (let waited = 0; ; waited += 100) {
    const project = await api("GET", `/projects/${id}`);
    if (project.body.status === "running") return id;
    assert.ok(waited < 30_000, `project ${id} stayed ${project.body.status}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A project of one-image pages (boxes or polygons) over `count` photos-to-be of 320 x 240. */
async function drawingProject(name, taskType, count) {
  const folder = join(DATA, "buckets", "e2e", name);
  mkdirSync(folder, { recursive: true });
  for (let i = 0; i < count; i++) {
    writeFileSync(join(folder, `${String(i).padStart(3, "0")}.png`), png(320, 240, COLOURS[CLASSES[i % 9]]));
  }
  const created = await api("POST", "/projects", {
    name,
    task_type: taskType,
    labels: CLASSES,
    source: `s3://e2e/${name}/**`,
    page_size: 1,
  });
  assert.equal(created.status, 202, JSON.stringify(created.body));
  const id = created.body.id;
  for (let waited = 0; ; waited += 100) {
    const project = await api("GET", `/projects/${id}`);
    if (project.body.status === "running") return id;
    assert.ok(waited < 30_000, `project ${id} stayed ${project.body.status}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Where image pixel (x, y) is on the screen. */
async function onScreen(page, x, y) {
  return page.evaluate(([x, y]) => {
    const stage = document.querySelector(".stage-svg");
    const point = new DOMPoint(x, y).matrixTransform(stage.getScreenCTM());
    return [point.x, point.y];
  }, [x, y]);
}

async function dragImage(page, from, to, { release = true } = {}) {
  const [x0, y0] = await onScreen(page, ...from);
  const [x1, y1] = await onScreen(page, ...to);
  await page.mouse.move(x0, y0);
  await page.mouse.down();
  await page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2);
  await page.mouse.move(x1, y1);
  if (release) await page.mouse.up();
}

async function clickImage(page, x, y) {
  const [sx, sy] = await onScreen(page, x, y);
  await page.mouse.click(sx, sy);
}

async function openDrawing(page, project) {
  await page.goto(`${URL}/#/projects/${project}/label`);
  await page.waitForSelector("[role=dialog] button");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelector(".stage-svg")?.getAttribute("viewBox") === "0 0 320 240");
  return page.getAttribute(".shapes-view", "data-task");
}

const shapeCount = (page) => page.locator(".shape-list li").count();

/** The labeled item of a one-image task, as the API lists it. */
async function labeledItem(project, key) {
  const labeled = await api("GET", `/projects/${project}/items?state=labeled`);
  const item = labeled.body.items.find((candidate) => candidate.key === key);
  assert.ok(item, `${key} is not labeled: ${JSON.stringify(labeled.body)}`);
  return item;
}

/** The class an image's key names (`cls/004_yellow.png` -> yellow). */
function truthOf(key) {
  return key.split("/").pop().replace(/^\d+_/, "").replace(/\.png$/, "");
}

let browser;
before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
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
  });
});
after(async () => {
  await browser?.close();
});

async function newPage() {
  // axe is injected as a script: the app's content security policy would refuse it.
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, bypassCSP: true });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  return { page, context, errors };
}

/** A screenshot and an accessibility check of what the page shows now. */
async function look(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
  await page.addScriptTag({ content: AXE });
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const { violations } = await axe.run(document, { resultTypes: ["violations"] });
    return violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  });
  assert.deepEqual(result, [], `${name}: accessibility violations`);
}

async function signIn(page, token = ADMIN) {
  await page.goto(`${URL}/`);
  await page.waitForSelector("#token");
  await look(page, "sign-in");
  await page.keyboard.type(token);
  await page.keyboard.press("Enter");
  await page.waitForSelector(".projects, .card p");
}

test("a labeler labels a 9-image page with the keyboard alone, and the next page is there at once", async () => {
  const project = await classificationProject("keyboard", 27);
  const { page, context, errors } = await newPage();
  await signIn(page);
  await look(page, "projects");
  await page.goto(`${URL}/#/projects/${project}/label`);
  // The instructions come first; Enter starts.
  await page.waitForSelector("[role=dialog] button");
  await look(page, "instructions");
  await page.keyboard.press("Enter");
  await page.waitForSelector("figure.cell:focus");
  const firstTask = await page.getAttribute(".grid", "data-task");
  await look(page, "label-classification");

  const answered = new Map();
  for (let i = 0; i < 9; i++) {
    const label = await page.evaluate(() => document.activeElement?.getAttribute("aria-label") ?? "");
    const key = label.split(", ")[1].split(":")[0];
    const truth = truthOf(key);
    answered.set(key, truth);
    await page.keyboard.press(String(CLASSES.indexOf(truth) + 1));
  }
  await look(page, "label-classification-done");
  await page.keyboard.press("Enter");
  await page.waitForFunction((before) => {
    const grid = document.querySelector(".grid");
    return grid?.dataset.task && grid.dataset.task !== before && grid.querySelectorAll("img").length === 9;
  }, firstTask);

  const labeled = await api("GET", `/projects/${project}/items?state=labeled`);
  assert.equal(labeled.body.items.length, 9);
  for (const item of labeled.body.items) {
    assert.deepEqual(item.labels.map((l) => l.label ?? l), [answered.get(item.key)], JSON.stringify(item));
  }

  // The admin's dashboard shows it, and follows the next submit by itself.
  await page.goto(`${URL}/#/projects/${project}`);
  await page.waitForFunction(() => /9 of 27 items labeled/.test(document.querySelector(".summary")?.textContent ?? ""));
  await look(page, "dashboard");
  const next = await api("POST", `/projects/${project}/tasks/checkout`);
  await api("POST", `/projects/${project}/tasks/${next.body.task_id}/submit`, {
    items: next.body.items.map((item) => ({ item_id: item.item_id, labels: [truthOf(item.key)] })),
  });
  await page.waitForFunction(() => /18 of 27 items labeled/.test(document.querySelector(".summary")?.textContent ?? ""), null, { timeout: 10_000 });
  assert.deepEqual(errors, []);
  await context.close();
});

test("a page whose task was lost says so and brings a fresh task", async () => {
  const project = await classificationProject("lost", 18);
  const { page, context, errors } = await newPage();
  await signIn(page);
  await page.goto(`${URL}/#/projects/${project}/label`);
  await page.waitForSelector("[role=dialog] button");
  await page.keyboard.press("Enter");
  await page.waitForSelector("figure.cell:focus");
  const lostTask = await page.getAttribute(".grid", "data-task");
  for (let i = 0; i < 9; i++) await page.keyboard.press("1");
  // Behind the app's back the task ends (as when its lease runs out and another labeler takes it).
  const released = await api("POST", `/projects/${project}/tasks/${lostTask}/release`);
  assert.ok(released.status < 300, JSON.stringify(released.body));
  await page.keyboard.press("Enter");
  await page.waitForSelector(".notice.error");
  const message = await page.textContent(".notice.error");
  assert.match(message, /released.*fresh page/);
  await page.waitForFunction(
    (before) => document.querySelector(".grid")?.dataset.task && document.querySelector(".grid").dataset.task !== before,
    lostTask,
  );
  await look(page, "label-lease-lost");
  assert.deepEqual(errors, []);
  await context.close();
});

test("a labeler draws, resizes, relabels and deletes boxes; Escape mid-draw leaves nothing behind", async () => {
  const project = await drawingProject("boxes", "object_detection", 3);
  const { page, context, errors } = await newPage();
  await signIn(page);
  const task = await openDrawing(page, project);

  await dragImage(page, [40, 40], [140, 120]);
  assert.equal(await shapeCount(page), 1);
  await look(page, "label-boxes");
  // Resize by the bottom-right handle.
  await dragImage(page, [140, 120], [200, 160]);
  assert.match(await page.textContent(".shape-list li"), /red: 160 x 120 at 40, 40/);
  // Relabel the selected box with a key.
  await page.keyboard.press("2");
  assert.match(await page.textContent(".shape-list li"), /^green: 160 x 120/);
  // A second box goes with Delete, a third with its x.
  await dragImage(page, [220, 20], [300, 90]);
  assert.equal(await shapeCount(page), 2);
  await page.keyboard.press("Delete");
  assert.equal(await shapeCount(page), 1);
  await dragImage(page, [220, 170], [300, 230]);
  assert.equal(await shapeCount(page), 2);
  await page.click(".shape-list li:nth-child(2) .delete");
  assert.equal(await shapeCount(page), 1);
  // Escape in the middle of a drag cancels it; a click draws nothing.
  await dragImage(page, [10, 200], [60, 230], { release: false });
  await page.keyboard.press("Escape");
  await page.mouse.up();
  await clickImage(page, 300, 20);
  assert.equal(await shapeCount(page), 1);
  await look(page, "label-boxes-done");

  const item = await page.evaluate(() => document.querySelector(".shapes-view").dataset.task);
  assert.equal(item, task);
  await page.keyboard.press("Enter");
  await page.waitForFunction((before) => {
    const view = document.querySelector(".shapes-view");
    return view?.dataset.task && view.dataset.task !== before;
  }, task);
  const labeled = await api("GET", `/projects/${project}/items?state=labeled`);
  assert.equal(labeled.body.items.length, 1, JSON.stringify(labeled.body));
  const [box] = labeled.body.items[0].labels;
  assert.equal(box.label, "green");
  const expected = [40, 40, 160, 120];
  box.bbox.forEach((value, i) => assert.ok(Math.abs(value - expected[i]) <= 1, `bbox ${box.bbox} vs ${expected}`));
  assert.deepEqual(errors, []);
  await context.close();
});

test("a labeler draws polygons, closing by the first point or Enter, and deletes one", async () => {
  const project = await drawingProject("polygons", "instance_segmentation", 2);
  const { page, context, errors } = await newPage();
  await signIn(page);
  const task = await openDrawing(page, project);
  for (const [x, y] of [[50, 50], [150, 50], [150, 150]]) await clickImage(page, x, y);
  await look(page, "label-polygon-drawing");
  await clickImage(page, 50, 50);
  assert.equal(await shapeCount(page), 1);
  await page.keyboard.press("3");
  for (const [x, y] of [[200, 100], [300, 100], [250, 200]]) await clickImage(page, x, y);
  await page.keyboard.press("Enter");
  assert.equal(await shapeCount(page), 2);
  await page.keyboard.press("Delete");
  assert.equal(await shapeCount(page), 1);
  // Escape drops a polygon half drawn.
  await clickImage(page, 20, 200);
  await clickImage(page, 60, 220);
  await page.keyboard.press("Escape");
  assert.equal(await shapeCount(page), 1);
  await look(page, "label-polygons");
  await page.keyboard.press("Enter");
  await page.waitForFunction((before) => {
    const view = document.querySelector(".shapes-view");
    return view?.dataset.task && view.dataset.task !== before;
  }, task);
  const labeled = await api("GET", `/projects/${project}/items?state=labeled`);
  assert.equal(labeled.body.items.length, 1, JSON.stringify(labeled.body));
  const [polygon] = labeled.body.items[0].labels;
  assert.equal(polygon.label, "blue");
  assert.equal(polygon.polygon.length, 3);
  [[50, 50], [150, 50], [150, 150]].forEach(([x, y], i) => {
    assert.ok(Math.abs(polygon.polygon[i][0] - x) <= 1 && Math.abs(polygon.polygon[i][1] - y) <= 1, JSON.stringify(polygon));
  });
  assert.deepEqual(errors, []);
  await context.close();
});

test("an admin creates a project through the form from uploaded files and sees it reach running", async () => {
  const folder = mkdtempSync(join(tmpdir(), "e2e-upload-"));
  const paths = CLASSES.map((colour, i) => {
    const path = join(folder, `${i}_${colour}.png`);
    writeFileSync(path, png(200, 150, COLOURS[colour]));
    return path;
  });
  const { page, context, errors } = await newPage();
  await signIn(page);
  await page.click("text=New project");
  await page.waitForSelector("#name");
  await page.fill("#name", "Uploaded colours");
  await page.check("input[name=data][value=upload]");
  await page.setInputFiles("#files", paths);
  await page.fill("#classes", CLASSES.join("\n"));
  await page.fill("#instructions", "Pick the colour.");
  await look(page, "create-project");
  await page.click("button[type=submit]");
  await page.waitForFunction(() => /#\/projects\/p_/.test(location.hash), null, { timeout: 30_000 });
  await page.waitForFunction(() => document.querySelector(".summary .status")?.textContent === "running", null, {
    timeout: 30_000,
  });
  assert.match(await page.textContent(".summary"), /0 of 9 items labeled/);
  // The 9 files went into a dataset named after the project, which is the project's source.
  const dataset = await api("GET", "/datasets/uploaded-colours");
  assert.equal(dataset.status, 200, JSON.stringify(dataset.body));
  const project = await api("GET", page.url().split("#/projects/")[1].replace(/^/, "/projects/"));
  assert.match(project.body.source, /datasets\/uploaded-colours\//, JSON.stringify(project.body));
  assert.equal(project.body.refresh.items_added, 9, JSON.stringify(project.body));
  assert.deepEqual(errors, []);
  await context.close();
});
