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
import { join } from "node:path";
import { chromium } from "playwright-core";

import {
  ADMIN,
  ARTIFACTS,
  CLASSES,
  COLOURS,
  DATA,
  URL,
  api,
  classificationProject,
  drawingProject,
  launchOptions,
  look,
  png,
  signInAs,
  truthOf,
} from "./support.mjs";

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

/** Waits for the page after `task` and returns the one labeled item of the project. */
async function submittedDrawing(page, project, task) {
  await page.waitForFunction((before) => {
    const view = document.querySelector(".shapes-view");
    return view?.dataset.task && view.dataset.task !== before;
  }, task);
  const labeled = await api("GET", `/projects/${project}/items?state=labeled`);
  assert.equal(labeled.body.items.length, 1, JSON.stringify(labeled.body));
  return labeled;
}

const shapeCount = (page) => page.locator(".shape-list li").count();

let browser;
before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch(launchOptions());
});
after(async () => {
  await browser?.close();
});

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  return { page, context, errors };
}

async function signIn(page, token = ADMIN) {
  await page.goto(`${URL}/`);
  await page.waitForSelector("#token");
  await look(page, "sign-in");
  await signInAs(page, token);
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

test("the lease is renewed while the labeler is active; one that runs out while away says so and brings a fresh page", async () => {
  const project = await classificationProject("away", 27);
  const { page, context, errors } = await newPage();
  // The page's clock is Playwright's, so an hour can pass in a moment.
  await context.clock.install();
  await signIn(page);
  await page.goto(`${URL}/#/projects/${project}/label`);
  await page.waitForSelector("[role=dialog] button");
  await page.keyboard.press("Enter");
  await page.waitForSelector("figure.cell:focus");
  const before = await page.getAttribute(".grid", "data-task");
  assert.match(await page.textContent(".lease"), /^(59|60):\d\d$/);
  // Active past half the lease: the app renews it.
  const renewals = [];
  page.on("request", (request) => request.url().endsWith("/renew") && renewals.push(request.url()));
  await context.clock.runFor(28 * 60 * 1000);
  await page.keyboard.press("ArrowRight");
  // Listening before the clock moves: the renewal may be answered before runFor returns.
  const renewed = page.waitForResponse((response) => response.url().endsWith("/renew"));
  await context.clock.runFor(3 * 60 * 1000);
  await renewed;
  assert.equal(renewals.length, 1, "renewed once while active");
  // Away for an hour and a minute: nothing renews the lease, the countdown runs out.
  await context.clock.fastForward(61 * 60 * 1000);
  await page.waitForSelector(".notice.error");
  assert.match(await page.textContent(".notice.error"), /lease on that page ran out.*fresh page/);
  await page.waitForFunction(
    (before) => document.querySelector(".grid")?.dataset.task && document.querySelector(".grid").dataset.task !== before,
    before,
  );
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
  const labeled = await submittedDrawing(page, project, task);
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
  const labeled = await submittedDrawing(page, project, task);
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
  // Counts the files read into memory at once (hashing reads a whole file).
  await page.addInitScript(() => {
    let reading = 0;
    window.mostReadAtOnce = 0;
    const read = Blob.prototype.arrayBuffer;
    Blob.prototype.arrayBuffer = async function () {
      reading += 1;
      window.mostReadAtOnce = Math.max(window.mostReadAtOnce, reading);
      try {
        return await read.call(this);
      } finally {
        reading -= 1;
      }
    };
  });
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
  assert.equal(await page.evaluate(() => window.mostReadAtOnce), 1, "files are hashed one at a time");
  // The 9 files went into a dataset named after the project, which is the project's source.
  const dataset = await api("GET", "/datasets/uploaded-colours");
  assert.equal(dataset.status, 200, JSON.stringify(dataset.body));
  const project = await api("GET", page.url().split("#/projects/")[1].replace(/^/, "/projects/"));
  assert.match(project.body.source, /datasets\/uploaded-colours\//, JSON.stringify(project.body));
  assert.equal(project.body.refresh.items_added, 9, JSON.stringify(project.body));

  // Labeled (through the API here), one item is rejected from the data page...
  const id = project.body.id;
  const task = await api("POST", `/projects/${id}/tasks/checkout`);
  await api("POST", `/projects/${id}/tasks/${task.body.task_id}/submit`, {
    items: task.body.items.map((item) => ({ item_id: item.item_id, labels: [truthOf(item.key)] })),
  });
  await page.click(`a:text-is("Data")`);
  await page.waitForSelector(".thumb button");
  assert.equal(await page.locator(".thumb").count(), 9);
  await look(page, "data");
  await page.click(".thumb button");
  await page.waitForSelector("[role=dialog] .annotated");
  await look(page, "data-item");
  await page.click("text=Reject: remove its labels and queue it again");
  await page.waitForFunction(() => document.querySelectorAll(".thumb").length === 8);
  assert.match(await page.textContent(".notice"), /rejected and is back in the queue/);
  // ...and a COCO export is made and downloaded from the details page.
  await page.click(`a:text-is("Details")`);
  await page.waitForSelector("#export_format");
  await look(page, "details");
  await page.click("form:has(#export_format) button[type=submit]");
  const link = await page.waitForSelector("a.download", { timeout: 30_000 });
  const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
  const coco = JSON.parse(readFileSync(await download.path(), "utf8"));
  assert.equal(coco.annotations.length, 8, JSON.stringify(coco).slice(0, 500));
  assert.equal(coco.categories.length, 9);
  assert.deepEqual(errors, []);
  await context.close();
});
