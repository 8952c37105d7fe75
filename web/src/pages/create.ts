// Creating a project, in the order an admin thinks of it: name and task type, the data (a
// bucket prefix with a glob, an existing dataset, or files uploaded from this browser with
// progress, through the signed upload URLs), the label classes, instructions, ML assist. Then
// the project's dashboard, which follows it from initializing to running by itself.

import { ApiError, TASK_TYPES, call, messageOf } from "../api";
import { h, header, notice, show } from "../dom";

/** Files named in one upload request. */
const UPLOAD_BATCH = 200;
const PARALLEL_PUTS = 4;

interface UploadSlot {
  name: string;
  url?: string;
  headers: Record<string, string>;
  skip: boolean;
}

function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  const id = control.id;
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
  );
}

/** Larger files go without a digest: hashing reads the whole file into memory. */
const HASH_AT_MOST = 512 * 1024 * 1024;

async function sha256Hex(file: File): Promise<string | undefined> {
  if (!crypto?.subtle || file.size > HASH_AT_MOST) return undefined;
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** PUTs one file to its signed URL with exactly its headers, reporting bytes sent. */
function put(slot: UploadSlot, file: File, progress: (sent: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("PUT", slot.url!);
    for (const [name, value] of Object.entries(slot.headers)) request.setRequestHeader(name, value);
    request.upload.onprogress = (event) => progress(event.loaded);
    request.onload = () =>
      request.status < 300 ? resolve() : reject(new Error(`${file.name}: the upload answered ${request.status}`));
    request.onerror = () => reject(new Error(`${file.name}: the upload failed`));
    request.send(file);
  });
}

/** A dataset named after the project holding `files`, uploaded with a progress bar. */
async function upload(dataset: string, files: File[], bar: HTMLProgressElement, status: HTMLElement): Promise<void> {
  await call("POST", "/datasets", { name: dataset, description: "uploaded from the web app" }).catch((error) => {
    // Uploading into a dataset that exists (a retried upload) adds to it.
    if (!(error instanceof ApiError && error.status === 409)) throw error;
  });
  const total = files.reduce((sum, file) => sum + file.size, 0);
  const sent = new Map<File, number>();
  const report = () => {
    const done = [...sent.values()].reduce((a, b) => a + b, 0);
    bar.value = total ? done / total : 1;
    status.textContent = `Uploaded ${(done / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`;
  };
  for (let start = 0; start < files.length; start += UPLOAD_BATCH) {
    const batch = files.slice(start, start + UPLOAD_BATCH);
    // One file in memory at a time: 200 camera photos hashed at once would hold 2 GB.
    const described = [];
    for (const file of batch) {
      described.push({ name: file.webkitRelativePath || file.name, size: file.size, sha256: await sha256Hex(file) });
    }
    const answer = await call<{ uploads: UploadSlot[] }>("POST", `/datasets/${encodeURIComponent(dataset)}/uploads`, {
      files: described,
    });
    const slots = answer?.uploads ?? [];
    let next = 0;
    const worker = async () => {
      while (next < slots.length) {
        const index = next++;
        const slot = slots[index];
        const file = batch[index];
        if (slot.skip || !slot.url) {
          sent.set(file, file.size);
          report();
          continue;
        }
        await put(slot, file, (bytes) => {
          sent.set(file, bytes);
          report();
        });
        sent.set(file, file.size);
        report();
      }
    };
    await Promise.all(Array.from({ length: PARALLEL_PUTS }, worker));
  }
}

export function createPage(): void {
  const name = h("input", { id: "name", required: true, maxlength: 200, autocomplete: "off" });
  const typeGroup = h(
    "fieldset",
    { class: "choices" },
    h("legend", {}, "Task type"),
    TASK_TYPES.map(([value, label], index) =>
      h(
        "label",
        { class: "choice" },
        h("input", { type: "radio", name: "task_type", value, checked: index === 0 }),
        label,
      ),
    ),
  );
  const pageSize = h("select", { id: "page_size" });
  const source = h("input", { id: "source", placeholder: "s3://photos/cats/**", autocomplete: "off" });
  const dataset = h("select", { id: "dataset" });
  const files = h("input", { id: "files", type: "file", multiple: true, accept: "image/*" });
  const dataGroup = h(
    "fieldset",
    { class: "choices" },
    h("legend", {}, "Data"),
    h("label", { class: "choice" }, h("input", { type: "radio", name: "data", value: "bucket", checked: true }), "Images in a bucket"),
    h("label", { class: "choice" }, h("input", { type: "radio", name: "data", value: "dataset" }), "A dataset"),
    h("label", { class: "choice" }, h("input", { type: "radio", name: "data", value: "upload" }), "Upload files from this computer"),
  );
  const classes = h("textarea", { id: "classes", rows: 5, required: true, placeholder: "cat\ndog" });
  const instructions = h("textarea", { id: "instructions", rows: 3 });
  const instructionsUrl = h("input", { id: "instructions_url", type: "url", placeholder: "https://..." });
  const ml = h("input", { id: "ml", type: "checkbox" });
  const target = h("input", { id: "target_precision", type: "number", min: 0.5, max: 0.999, step: 0.001, value: 0.95 });
  const minLabels = h("input", { id: "min_labels", type: "number", min: 10, max: 500000, step: 1, value: 100 });
  const progress = h("progress", { max: 1, value: 0, hidden: true, "aria-label": "Upload progress" });
  const status = h("p", { class: "hint", "aria-live": "polite" });
  const message = h("div", { class: "message" });
  const create = h("button", { class: "primary", type: "submit" }, "Create project");

  const chosen = (group: string) =>
    (document.querySelector(`input[name=${group}]:checked`) as HTMLInputElement | null)?.value ?? "";
  const refresh = () => {
    const sizes = TASK_TYPES.find(([value]) => value === chosen("task_type"))?.[2] ?? [1];
    const before = pageSize.value;
    pageSize.replaceChildren(...sizes.map((size) => h("option", { value: size }, `${size} image${size > 1 ? "s" : ""} a task`)));
    pageSize.value = sizes.map(String).includes(before) ? before : String(sizes[sizes.length - 1]);
    const data = chosen("data");
    sourceField.hidden = data !== "bucket";
    datasetField.hidden = data !== "dataset";
    filesField.hidden = data !== "upload";
  };
  const sourceField = field("Bucket and prefix", source, "s3://bucket/prefix with a glob: * within a folder, ** across folders.");
  const datasetField = field("Dataset", dataset);
  const filesField = field("Images", files, "They become a dataset named after the project.");

  const form = h(
    "form",
    { class: "card wizard" },
    h("h2", {}, "1. Name and task"),
    field("Project name", name, "Unique, and never reused."),
    typeGroup,
    field("Page size", pageSize),
    h("h2", {}, "2. Data"),
    dataGroup,
    sourceField,
    datasetField,
    filesField,
    progress,
    status,
    h("h2", {}, "3. Label classes"),
    field("Classes, one a line", classes),
    h("h2", {}, "4. Instructions"),
    field("Instructions for labelers", instructions),
    field("A page with more (optional)", instructionsUrl),
    h("h2", {}, "5. ML assist"),
    h("label", { class: "choice" }, ml, "Train on the labels so far and prelabel the rest"),
    field("Target precision of prelabels", target),
    field("Labels before the first training", minLabels),
    message,
    create,
  );
  form.addEventListener("change", refresh);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    create.disabled = true;
    message.replaceChildren();
    try {
      const data = chosen("data");
      let sourceValue = source.value.trim();
      if (data === "dataset") sourceValue = `dataset:${dataset.value}`;
      if (data === "upload") {
        const picked = [...(files.files ?? [])];
        if (!picked.length) throw new Error("Pick the images to upload first.");
        const datasetName = name.value.trim().toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 63) || "upload";
        progress.hidden = false;
        await upload(datasetName, picked, progress, status);
        sourceValue = `dataset:${datasetName}`;
      }
      const created = await call<{ id: string }>("POST", "/projects", {
        name: name.value.trim(),
        task_type: chosen("task_type"),
        page_size: Number(pageSize.value),
        source: sourceValue,
        labels: classes.value.split("\n").map((line) => line.trim()).filter(Boolean),
        instructions: { text: instructions.value.trim() || null, url: instructionsUrl.value.trim() || null },
        ml_assist: { enabled: ml.checked, target_precision: Number(target.value), min_labels: Number(minLabels.value) },
      });
      if (created) location.hash = `#/projects/${encodeURIComponent(created.id)}`;
    } catch (error) {
      const problems = error instanceof ApiError ? error.errors : [];
      message.replaceChildren(
        notice(messageOf(error), "error"),
        ...problems.map((problem) => notice(`${problem.pointer}: ${problem.detail}`, "error")),
      );
    } finally {
      create.disabled = false;
    }
  });

  show(header("New project", h("a", { href: "#/" }, "Projects")), form);
  refresh();
  name.focus();
  void call<{ datasets: { name: string; files: number }[] }>("GET", "/datasets")
    .then((answer) => {
      dataset.replaceChildren(
        ...(answer?.datasets ?? []).map((d) => h("option", { value: d.name }, `${d.name} (${d.files} files)`)),
      );
    })
    .catch(() => undefined);
}
