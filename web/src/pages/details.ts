// A project's settings and actions for an admin: pause or resume, add classes (with the three
// modes explained), instructions, incremental refresh and ML assist, members, and exports with
// their progress and a download link.

import { ApiError, Project, call, messageOf } from "../api";
import { h, header, notice, show } from "../dom";

interface Export {
  id: string;
  format: string;
  status: string;
  created_at: string;
  progress: { items_written: number; items_total: number };
  download_url: string | null;
  error?: string | null;
}

interface FullProject extends Project {
  members: string[] | null;
  incremental_refresh: boolean;
  lease_seconds: number;
  ml_assist: { enabled: boolean; target_precision: number; min_labels: number };
}

const MODES: [string, string][] = [
  ["continue", "Keep going: labeled items stay as they are; the new classes apply from now on."],
  ["start_over_keep", "Start over, keeping labels as suggestions: every item is labeled again, shown with its earlier labels."],
  ["start_over_remove", "Start over from scratch: every item is labeled again and the earlier labels are dropped."],
];

function section(title: string, ...children: (Node | null)[]): HTMLElement {
  return h("section", { class: "card", "aria-label": title }, h("h2", {}, title), ...children.filter(Boolean));
}

export async function detailsPage(projectId: string): Promise<() => void> {
  const base = `/projects/${encodeURIComponent(projectId)}`;
  let timer = 0;
  let stopped = false;
  const message = h("div", { class: "message", "aria-live": "polite" });

  async function act(what: () => Promise<unknown>, done: string): Promise<void> {
    try {
      await what();
      message.replaceChildren(notice(done));
      await render();
    } catch (error) {
      const fields = error instanceof ApiError ? error.errors.map((e) => ` ${e.pointer}: ${e.detail}`).join(";") : "";
      message.replaceChildren(notice(`${messageOf(error)}${fields}`, "error"));
    }
  }

  const exportsList = h("ul", { class: "exports" });
  async function refreshExports(): Promise<void> {
    const answer = await call<{ exports: Export[] }>("GET", `${base}/exports`).catch(() => null);
    if (stopped || !answer) return;
    exportsList.replaceChildren(
      ...answer.exports.slice(0, 10).map((x) =>
        h(
          "li",
          {},
          `${x.format.toUpperCase()} ${new Date(x.created_at).toLocaleString()}: ${x.status}`,
          x.status === "running" || x.status === "queued"
            ? h("progress", {
                max: Math.max(1, x.progress.items_total),
                value: x.progress.items_written,
                "aria-label": `Export ${x.id} progress`,
              })
            : null,
          x.download_url ? h("a", { href: x.download_url, download: "", class: "download" }, "Download") : null,
          x.error ? h("span", { class: "field-error" }, x.error) : null,
        ),
      ),
    );
    if (answer.exports.some((x) => x.status === "running" || x.status === "queued")) {
      timer = window.setTimeout(() => void refreshExports(), 1000);
    }
  }

  async function render(): Promise<void> {
    const project = await call<FullProject>("GET", base);
    if (!project || stopped) return;
    const running = project.status === "running";
    const pause = h(
      "button",
      { type: "button", onclick: () => void act(() => call("POST", `${base}/${running ? "pause" : "resume"}`), running ? "Paused." : "Resumed.") },
      running ? "Pause labeling" : "Resume labeling",
    );

    const newClasses = h("input", { id: "new_classes", placeholder: "bird, fish", autocomplete: "off" });
    const modeChoices = MODES.map(([value, text], index) =>
      h("label", { class: "choice" }, h("input", { type: "radio", name: "mode", value, checked: index === 0 }), text),
    );
    const addClasses = h("form", { class: "stack" },
      h("label", { for: "new_classes" }, "New classes, separated by commas"),
      newClasses,
      h("fieldset", { class: "choices" }, h("legend", {}, "Items labeled so far"), ...modeChoices),
      h("button", { type: "submit" }, "Add classes"),
    );
    addClasses.addEventListener("submit", (event) => {
      event.preventDefault();
      const mode = (addClasses.querySelector("input[name=mode]:checked") as HTMLInputElement).value;
      const labels = newClasses.value.split(",").map((s) => s.trim()).filter(Boolean);
      void act(() => call("POST", `${base}/labels`, { labels, mode }), `Added ${labels.join(", ")}.`);
    });

    const text = h("textarea", { id: "instructions_text", rows: 4 });
    text.value = project.instructions.text ?? "";
    const url = h("input", { id: "instructions_url", type: "url" });
    url.value = project.instructions.url ?? "";
    const refresh = h("input", { id: "incremental_refresh", type: "checkbox", checked: project.incremental_refresh });
    const ml = h("input", { id: "ml_enabled", type: "checkbox", checked: project.ml_assist.enabled });
    const target = h("input", { id: "ml_target", type: "number", min: 0.5, max: 0.999, step: 0.001, value: project.ml_assist.target_precision });
    const minLabels = h("input", { id: "ml_min", type: "number", min: 10, max: 500000, value: project.ml_assist.min_labels });
    const settings = h("form", { class: "stack" },
      h("label", { for: "instructions_text" }, "Instructions"), text,
      h("label", { for: "instructions_url" }, "A page with more (optional)"), url,
      h("label", { class: "choice" }, refresh, "Incremental refresh: add new images in the source as they arrive"),
      h("label", { class: "choice" }, ml, "ML assist"),
      h("label", { for: "ml_target" }, "Target precision of prelabels"), target,
      h("label", { for: "ml_min" }, "Labels before the first training"), minLabels,
      h("button", { type: "submit" }, "Save"),
    );
    settings.addEventListener("submit", (event) => {
      event.preventDefault();
      void act(
        () =>
          call("PATCH", base, {
            instructions: { text: text.value.trim() || null, url: url.value.trim() || null },
            incremental_refresh: refresh.checked,
            ml_assist: { enabled: ml.checked, target_precision: Number(target.value), min_labels: Number(minLabels.value) },
          }),
        "Saved.",
      );
    });

    const member = h("input", { id: "member", placeholder: "user name", autocomplete: "off" });
    const members = h("form", { class: "stack" },
      h("ul", { class: "members" },
        (project.members ?? []).map((name) =>
          h("li", {}, name, h("button", {
            type: "button",
            class: "delete",
            "aria-label": `Remove ${name}`,
            onclick: () => void act(() => call("DELETE", `${base}/members/${encodeURIComponent(name)}`), `Removed ${name}; their tasks went back to the queue.`),
          }, "\u00d7")),
        ),
      ),
      h("label", { for: "member" }, "Add a member"), member,
      h("button", { type: "submit" }, "Add"),
    );
    members.addEventListener("submit", (event) => {
      event.preventDefault();
      void act(() => call("POST", `${base}/members`, { user: member.value.trim() }), `Added ${member.value.trim()}.`);
    });

    const format = h("select", { id: "export_format" }, h("option", { value: "coco" }, "COCO"), h("option", { value: "jsonl" }, "JSON Lines"));
    const exportForm = h("form", { class: "stack" },
      h("label", { for: "export_format" }, "Format"), format,
      h("button", { type: "submit" }, "Export"),
      exportsList,
    );
    exportForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void act(() => call("POST", `${base}/exports`, { format: format.value }), "Export started.");
    });

    show(
      header(
        project.name,
        h("a", { href: `#/projects/${encodeURIComponent(projectId)}` }, "Dashboard"),
        h("a", { href: `#/projects/${encodeURIComponent(projectId)}/data` }, "Data"),
        h("a", { href: "#/" }, "Projects"),
      ),
      message,
      h("div", { class: "details" },
        section("Status", h("p", {}, `The project is ${project.status}.`), project.status === "running" || project.status === "paused" ? pause : null),
        section("Classes", h("p", {}, project.labels.map((l) => l.name).join(", ")), addClasses),
        section("Instructions and assistance", settings),
        section("Members", members),
        section("Exports", exportForm),
      ),
    );
    await refreshExports();
  }

  await render();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
