// An admin's data browser: a project's items by state, as thumbnails with their labels; one
// opens large with its boxes or polygons drawn, and a labeled one can be rejected (its labels
// removed, the item back at the front of the queue).

import { Project, call, messageOf } from "../api";
import { h, header, notice, show } from "../dom";

const STATES = ["labeled", "unlabeled", "in_task", "queued", "skipped", "missing"] as const;
const PAGE = 48;

interface Shape {
  label: string;
  bbox?: [number, number, number, number] | null;
  polygon?: [number, number][];
}

interface Item {
  item_id: number;
  key: string;
  image_url: string;
  state: string;
  labels: (string | Shape)[];
  labeled_by: string | null;
  width: number | null;
  height: number | null;
}

const labelText = (label: string | Shape) => (typeof label === "string" ? label : label.label);

/** The image with its shapes drawn over it, in the image's own pixels. */
function annotated(item: Item): HTMLElement {
  const ns = "http://www.w3.org/2000/svg";
  const width = item.width ?? 1;
  const height = item.height ?? 1;
  const stage = document.createElementNS(ns, "svg");
  stage.setAttribute("viewBox", `0 0 ${width} ${height}`);
  stage.setAttribute("class", "annotated");
  stage.setAttribute("role", "img");
  stage.setAttribute("aria-label", `${item.key}: ${item.labels.map(labelText).join(", ") || "no labels"}`);
  const picture = document.createElementNS(ns, "image");
  picture.setAttribute("href", item.image_url);
  picture.setAttribute("width", String(width));
  picture.setAttribute("height", String(height));
  stage.append(picture);
  const unit = Math.max(width, height) / 600;
  for (const label of item.labels) {
    if (typeof label === "string") continue;
    let shape: SVGElement | null = null;
    if (label.bbox) {
      const [x, y, w, hh] = label.bbox;
      shape = document.createElementNS(ns, "rect");
      for (const [name, value] of Object.entries({ x, y, width: w, height: hh })) shape.setAttribute(name, String(value));
    } else if (label.polygon) {
      shape = document.createElementNS(ns, "polygon");
      shape.setAttribute("points", label.polygon.map((p) => p.join(",")).join(" "));
    }
    if (!shape) continue;
    shape.setAttribute("stroke-width", String(2 * unit));
    const caption = document.createElementNS(ns, "text");
    const [cx, cy] = label.bbox ? [label.bbox[0], label.bbox[1]] : (label.polygon?.[0] ?? [0, 0]);
    caption.setAttribute("x", String(cx));
    caption.setAttribute("y", String(cy - 4 * unit));
    caption.setAttribute("font-size", String(14 * unit));
    caption.textContent = label.label;
    stage.append(shape, caption);
  }
  return h("div", { class: "annotated-frame" }, stage as unknown as HTMLElement);
}

export async function dataPage(projectId: string, state: string): Promise<() => void> {
  const base = `/projects/${encodeURIComponent(projectId)}`;
  const project = await call<Project>("GET", base);
  if (!project) throw new Error("no such project");
  const chosen = (STATES as readonly string[]).includes(state) ? state : "labeled";
  const grid = h("ul", { class: "thumbs", "aria-label": `${chosen} items` });
  const more = h("button", { type: "button", hidden: true }, "More");
  const message = h("div", { class: "message", "aria-live": "polite" });
  let cursor: string | null = null;

  function open(item: Item, tile: HTMLElement): void {
    const reject = h("button", { type: "button", class: "danger" }, "Reject: remove its labels and queue it again");
    const close = h("button", { type: "button" }, "Close");
    const problem = h("div", { class: "message" });
    const dialog = h(
      "div",
      { class: "dialog", role: "dialog", "aria-modal": "true", "aria-labelledby": "item-title" },
      h(
        "div",
        { class: "card wide" },
        h("h2", { id: "item-title" }, item.key),
        annotated(item),
        h(
          "p",
          {},
          `${item.state}${item.labels.length ? `: ${item.labels.map(labelText).join(", ")}` : ""}` +
            (item.labeled_by ? ` (by ${item.labeled_by})` : ""),
        ),
        problem,
        h("div", { class: "actions" }, item.state === "labeled" ? reject : null, close),
      ),
    );
    const done = () => {
      dialog.remove();
      tile.querySelector("button")?.focus();
    };
    close.addEventListener("click", done);
    dialog.addEventListener("keydown", (event) => {
      if (event.key === "Escape") done();
    });
    reject.addEventListener("click", async () => {
      try {
        await call("POST", `${base}/items/${item.item_id}/reject`, {});
        tile.remove();
        done();
        message.replaceChildren(notice(`${item.key} was rejected and is back in the queue.`));
      } catch (error) {
        problem.replaceChildren(notice(messageOf(error), "error"));
      }
    });
    document.body.append(dialog);
    close.focus();
  }

  async function load(): Promise<void> {
    const query = new URLSearchParams({ state: chosen, limit: String(PAGE) });
    if (cursor) query.set("cursor", cursor);
    try {
      const page = await call<{ items: Item[]; next_cursor: string | null }>("GET", `${base}/items?${query}`);
      for (const item of page?.items ?? []) {
        const tile = h("li", { class: "thumb" });
        tile.append(
          h(
            "button",
            { type: "button", title: `Open ${item.key}`, onclick: () => open(item, tile) },
            h("img", { src: item.image_url, alt: "", loading: "lazy" }),
            h("span", { class: "thumb-key" }, item.key.split("/").pop() ?? item.key),
            h("span", { class: "thumb-labels" }, item.labels.map(labelText).join(", ")),
          ),
        );
        grid.append(tile);
      }
      cursor = page?.next_cursor ?? null;
      more.hidden = !cursor;
      if (!grid.children.length && !cursor) message.replaceChildren(notice(`No ${chosen.replace("_", " ")} items.`));
    } catch (error) {
      message.replaceChildren(
        notice(messageOf(error), "error"),
      );
    }
  }
  more.addEventListener("click", () => void load());

  show(
    header(
      project.name,
      h("a", { href: `#/projects/${encodeURIComponent(projectId)}` }, "Dashboard"),
      h("a", { href: `#/projects/${encodeURIComponent(projectId)}/details` }, "Details"),
      h("a", { href: "#/" }, "Projects"),
    ),
    h(
      "nav",
      { class: "tabs", "aria-label": "Items by state" },
      STATES.map((name) =>
        h(
          "a",
          {
            href: `#/projects/${encodeURIComponent(projectId)}/data/${name}`,
            "aria-current": name === chosen ? "page" : undefined,
          },
          name.replace("_", " "),
        ),
      ),
    ),
    message,
    grid,
    h("div", { class: "actions" }, more),
  );
  await load();
  return () => document.querySelector(".dialog")?.remove();
}
