// Boxes and polygons, drawn on an SVG stage over the image, in the image's own pixels.
//
// Boxes: drag on the image to draw one of the active class; drag a box to move it, its handles
// to resize it. Polygons: click to add points, close by clicking the first point or Enter;
// drag a vertex to move it, the polygon to move it all; Backspace drops the last point while
// drawing. Both: 1-9 (or the class bar) picks the class of the next shape and relabels the
// selected one; Delete or the x beside a shape in the list deletes it; Esc cancels the shape
// being drawn (never leaving a zero-size one) or drops the selection. Zoom with the wheel or
// + and -, 0 to fit; pan by dragging with Space held or the middle button. S skips the image.
// Prelabeled shapes arrive marked as suggestions with their confidence until changed.

import type { FieldProblem, Task, TaskItem } from "../api";
import { h } from "../dom";
import type { View } from "./view";

const SVG = "http://www.w3.org/2000/svg";
/** A box or polygon smaller than this (image pixels) on either side is a slip, not a shape. */
const MIN_SIDE = 2;
/** Handles and the first point's catch radius, in screen pixels. */
const HANDLE_PX = 7;
const CLOSE_PX = 10;
const MAX_ZOOM = 40;

type Point = [number, number];

interface Shape {
  label: string;
  /** Box: [x, y, w, h]; polygon: its points. */
  box?: [number, number, number, number];
  points?: Point[];
  /** The model's confidence while the shape is its unchanged prelabel; undefined otherwise. */
  suggested?: number | null;
}

type Drag =
  | { kind: "draw"; from: Point; to: Point }
  | { kind: "move"; index: number; from: Point; original: Shape }
  | { kind: "resize"; index: number; handle: string; original: Shape }
  | { kind: "vertex"; index: number; vertex: number }
  | { kind: "pan"; from: [number, number]; view: ViewBox };

interface ViewBox {
  x: number;
  y: number;
  w: number;
  h: number;
}

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number> = {},
): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  return element;
}

const round = (value: number) => Math.round(value * 100) / 100;

function imageSize(item: TaskItem): Promise<[number, number]> {
  if (item.width && item.height) return Promise.resolve([item.width, item.height]);
  return new Promise((resolve) => {
    const image = new Image();
    image.onload = () => resolve([image.naturalWidth || 1, image.naturalHeight || 1]);
    image.onerror = () => resolve([1, 1]);
    image.src = item.image_url;
  });
}

export function shapesView(classes: string[], mode: "box" | "polygon"): View {
  let task: Task | null = null;
  let item: TaskItem | null = null;
  let width = 1;
  let height = 1;
  let shapes: Shape[] = [];
  let selected: number | null = null;
  let active = classes[0] ?? "";
  let skip = false;
  let drag: Drag | null = null;
  let draft: Point[] | null = null;
  let view: ViewBox = { x: 0, y: 0, w: 1, h: 1 };
  let spaceHeld = false;
  let errors = new Map<number, string>();

  const stage = svg("svg", { class: "stage-svg", preserveAspectRatio: "xMidYMid meet" });
  const picture = svg("image", { x: 0, y: 0 });
  const layer = svg("g");
  stage.append(picture, layer);
  const area = h("div", {
    class: "stage",
    tabindex: 0,
    role: "application",
    "aria-roledescription": mode === "box" ? "box drawing area" : "polygon drawing area",
    "aria-label":
      mode === "box"
        ? "Drag to draw a box; Delete removes the selected one; Escape cancels"
        : "Click to add points, Enter or the first point closes; Delete removes the selected polygon",
  });
  area.append(stage);
  const list = h("ol", { class: "shape-list", "aria-label": mode === "box" ? "Boxes" : "Polygons" });
  const status = h("p", { class: "stage-status", "aria-live": "polite" });
  const element = h("div", { class: "shapes-view" }, area, h("aside", { class: "side" }, status, list));
  const skipButton = h("button", { type: "button" }, "Skip image (S)");
  const zoomOut = h("button", { type: "button", "aria-label": "Zoom out" }, "-");
  const zoomFit = h("button", { type: "button", "aria-label": "Fit the image" }, "Fit");
  const zoomIn = h("button", { type: "button", "aria-label": "Zoom in" }, "+");
  const zoomTools = h("div", { class: "zoom", role: "group", "aria-label": "Zoom" }, zoomOut, zoomFit, zoomIn);

  /** Screen pixels to image pixels at the current zoom. */
  function perScreenPixel(): number {
    const rect = stage.getBoundingClientRect();
    if (!rect.width || !rect.height) return 1;
    return Math.max(view.w / rect.width, view.h / rect.height);
  }

  function toImage(event: { clientX: number; clientY: number }): Point {
    const matrix = stage.getScreenCTM();
    if (!matrix) return [0, 0];
    const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
    return [point.x, point.y];
  }

  const clampX = (x: number) => Math.min(Math.max(x, 0), width);
  const clampY = (y: number) => Math.min(Math.max(y, 0), height);

  function setView(next: ViewBox): void {
    view = next;
    stage.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
    render();
  }

  function fit(): void {
    setView({ x: 0, y: 0, w: width, h: height });
  }

  function zoom(factor: number, around?: Point): void {
    const [px, py] = around ?? [view.x + view.w / 2, view.y + view.h / 2];
    const w = Math.min(Math.max(view.w / factor, width / MAX_ZOOM), width);
    const h2 = (w / view.w) * view.h;
    const scale = w / view.w;
    setView({ x: px - (px - view.x) * scale, y: py - (py - view.y) * scale, w, h: h2 });
  }

  function boxOf(shape: Shape): [number, number, number, number] {
    if (shape.box) return shape.box;
    const xs = (shape.points ?? []).map((p) => p[0]);
    const ys = (shape.points ?? []).map((p) => p[1]);
    return [Math.min(...xs), Math.min(...ys), Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)];
  }

  function describe(shape: Shape): string {
    const [x, y, w, hh] = boxOf(shape).map(Math.round);
    const where = shape.box ? `${w} x ${hh} at ${x}, ${y}` : `${shape.points?.length} points around ${x}, ${y}`;
    const suggestion =
      shape.suggested === undefined
        ? ""
        : shape.suggested === null
          ? " (suggested)"
          : ` (suggested ${Math.round(shape.suggested * 100)}%)`;
    return `${shape.label}: ${where}${suggestion}`;
  }

  function render(): void {
    const unit = perScreenPixel();
    const handle = HANDLE_PX * unit;
    layer.replaceChildren();
    shapes.forEach((shape, index) => {
      const group = svg("g", { class: `shape${index === selected ? " selected" : ""}${shape.suggested !== undefined ? " suggested" : ""}` });
      group.dataset.index = String(index);
      let body: SVGElement;
      if (shape.box) {
        const [x, y, w, hh] = shape.box;
        body = svg("rect", { x, y, width: w, height: hh });
      } else {
        body = svg("polygon", { points: (shape.points ?? []).map((p) => p.join(",")).join(" ") });
      }
      body.setAttribute("class", "body");
      body.setAttribute("stroke-width", String(2 * unit));
      body.dataset.index = String(index);
      const [x, y] = boxOf(shape);
      const caption = svg("text", { x, y: y - 4 * unit, "font-size": 13 * unit });
      caption.textContent = shape.label + (shape.suggested != null ? ` ${Math.round(shape.suggested * 100)}%` : "");
      group.append(body, caption);
      if (index === selected) {
        const handles: [string, number, number][] = shape.box
          ? (() => {
              const [bx, by, bw, bh] = shape.box;
              return [
                ["nw", bx, by], ["n", bx + bw / 2, by], ["ne", bx + bw, by], ["e", bx + bw, by + bh / 2],
                ["se", bx + bw, by + bh], ["s", bx + bw / 2, by + bh], ["sw", bx, by + bh], ["w", bx, by + bh / 2],
              ];
            })()
          : (shape.points ?? []).map((p, vertex) => [`v${vertex}`, p[0], p[1]]);
        for (const [name, hx, hy] of handles) {
          const knob = svg("rect", {
            class: "handle",
            x: hx - handle / 2,
            y: hy - handle / 2,
            width: handle,
            height: handle,
            "stroke-width": unit,
          });
          knob.dataset.index = String(index);
          knob.dataset.handle = name;
          group.append(knob);
        }
      }
      layer.append(group);
    });
    if (drag?.kind === "draw") {
      const [x0, y0] = drag.from;
      const [x1, y1] = drag.to;
      layer.append(
        svg("rect", {
          class: "draft",
          x: Math.min(x0, x1),
          y: Math.min(y0, y1),
          width: Math.abs(x1 - x0),
          height: Math.abs(y1 - y0),
          "stroke-width": 2 * unit,
        }),
      );
    }
    if (draft) {
      layer.append(svg("polyline", { class: "draft", points: draft.map((p) => p.join(",")).join(" "), "stroke-width": 2 * unit }));
      draft.forEach((p, i) =>
        layer.append(svg("circle", { class: i === 0 ? "draft first" : "draft", cx: p[0], cy: p[1], r: (i === 0 ? CLOSE_PX / 2 : 3) * unit })),
      );
    }
    renderList();
  }

  function renderList(): void {
    list.replaceChildren(
      ...shapes.map((shape, index) =>
        h(
          "li",
          { class: index === selected ? "selected" : "" },
          h(
            "button",
            {
              type: "button",
              class: "link",
              onclick: () => {
                selected = index;
                render();
                area.focus();
              },
            },
            describe(shape),
          ),
          h(
            "button",
            {
              type: "button",
              class: "delete",
              "aria-label": `Delete ${shape.label} ${mode === "box" ? "box" : "polygon"} ${index + 1}`,
              onclick: () => remove(index),
            },
            "\u00d7",
          ),
          errors.has(index) ? h("div", { class: "field-error" }, errors.get(index)!) : null,
        ),
      ),
    );
    status.textContent = skip
      ? "This image is marked skipped (S to undo)."
      : draft
        ? `Drawing a ${active} polygon: ${draft.length} point${draft.length === 1 ? "" : "s"}; Enter or the first point closes it, Escape cancels.`
        : `${shapes.length} ${mode === "box" ? "box" : "polygon"}${shapes.length === 1 ? "" : mode === "box" ? "es" : "s"}; next: ${active}.`;
  }

  function remove(index: number): void {
    shapes.splice(index, 1);
    errors = new Map();
    if (selected === index) selected = null;
    else if (selected !== null && selected > index) selected -= 1;
    render();
    area.focus();
  }

  function changed(index: number): void {
    delete shapes[index].suggested;
    errors.delete(index);
  }

  function closeDraft(): void {
    if (!draft) return;
    if (draft.length >= 3) {
      const [, , w, hh] = boxOf({ label: active, points: draft });
      if (w >= MIN_SIDE && hh >= MIN_SIDE) {
        shapes.push({ label: active, points: draft });
        selected = shapes.length - 1;
      }
    }
    draft = null;
    render();
  }

  function onPointerDown(event: PointerEvent): void {
    if (!task || skip) return;
    area.focus();
    const point = toImage(event);
    if (event.button === 1 || spaceHeld) {
      drag = { kind: "pan", from: [event.clientX, event.clientY], view: { ...view } };
    } else if (event.button !== 0) {
      return;
    } else {
      const target = event.target as SVGElement;
      const index = target.dataset.index === undefined ? null : Number(target.dataset.index);
      const handle = target.dataset.handle;
      if (mode === "polygon" && draft) {
        const first = draft[0];
        const near = Math.hypot(point[0] - first[0], point[1] - first[1]) <= CLOSE_PX * perScreenPixel();
        if (near && draft.length >= 3) closeDraft();
        else {
          draft.push([clampX(point[0]), clampY(point[1])]);
          render();
        }
        event.preventDefault();
        return;
      }
      if (index !== null && handle?.startsWith("v")) {
        drag = { kind: "vertex", index, vertex: Number(handle.slice(1)) };
      } else if (index !== null && handle) {
        drag = { kind: "resize", index, handle, original: structuredClone(shapes[index]) };
      } else if (index !== null) {
        selected = index;
        drag = { kind: "move", index, from: point, original: structuredClone(shapes[index]) };
      } else if (mode === "box") {
        selected = null;
        const start: Point = [clampX(point[0]), clampY(point[1])];
        drag = { kind: "draw", from: start, to: start };
      } else {
        selected = null;
        draft = [[clampX(point[0]), clampY(point[1])]];
      }
    }
    stage.setPointerCapture(event.pointerId);
    render();
    event.preventDefault();
  }

  function onPointerMove(event: PointerEvent): void {
    if (!drag) return;
    const point = toImage(event);
    if (drag.kind === "pan") {
      const unit = perScreenPixel();
      setView({
        ...drag.view,
        x: drag.view.x - (event.clientX - drag.from[0]) * unit,
        y: drag.view.y - (event.clientY - drag.from[1]) * unit,
      });
      return;
    }
    if (drag.kind === "draw") {
      drag.to = [clampX(point[0]), clampY(point[1])];
    } else if (drag.kind === "move") {
      const [ox, oy, ow, oh] = boxOf(drag.original);
      const dx = Math.min(Math.max(point[0] - drag.from[0], -ox), width - ox - ow);
      const dy = Math.min(Math.max(point[1] - drag.from[1], -oy), height - oy - oh);
      const shape = shapes[drag.index];
      if (drag.original.box) shape.box = [ox + dx, oy + dy, ow, oh];
      else shape.points = (drag.original.points ?? []).map(([x, y]) => [x + dx, y + dy]);
      changed(drag.index);
    } else if (drag.kind === "resize") {
      const [ox, oy, ow, oh] = drag.original.box!;
      let [left, top, right, bottom] = [ox, oy, ox + ow, oy + oh];
      const [px, py] = [clampX(point[0]), clampY(point[1])];
      if (drag.handle.includes("w")) left = Math.min(px, right - MIN_SIDE);
      if (drag.handle.includes("e")) right = Math.max(px, left + MIN_SIDE);
      if (drag.handle.includes("n")) top = Math.min(py, bottom - MIN_SIDE);
      if (drag.handle.includes("s")) bottom = Math.max(py, top + MIN_SIDE);
      shapes[drag.index].box = [left, top, right - left, bottom - top];
      changed(drag.index);
    } else if (drag.kind === "vertex") {
      const points = shapes[drag.index].points!;
      points[drag.vertex] = [clampX(point[0]), clampY(point[1])];
      changed(drag.index);
    }
    render();
  }

  function onPointerUp(): void {
    if (drag?.kind === "draw") {
      const [x0, y0] = drag.from;
      const [x1, y1] = drag.to;
      const box: [number, number, number, number] = [Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0)];
      // A click or a slip is no box: nothing zero-size is ever kept.
      if (box[2] >= MIN_SIDE && box[3] >= MIN_SIDE) {
        shapes.push({ label: active, box });
        selected = shapes.length - 1;
      }
    }
    drag = null;
    render();
  }

  function nudge(dx: number, dy: number): void {
    if (selected === null) {
      setView({ ...view, x: view.x + dx * perScreenPixel() * 10, y: view.y + dy * perScreenPixel() * 10 });
      return;
    }
    const shape = shapes[selected];
    const [x, y, w, hh] = boxOf(shape);
    const mx = Math.min(Math.max(dx, -x), width - x - w);
    const my = Math.min(Math.max(dy, -y), height - y - hh);
    if (shape.box) shape.box = [x + mx, y + my, w, hh];
    else shape.points = (shape.points ?? []).map(([px, py]) => [px + mx, py + my]);
    changed(selected);
    render();
  }

  stage.addEventListener("pointerdown", onPointerDown);
  stage.addEventListener("pointermove", onPointerMove);
  stage.addEventListener("pointerup", onPointerUp);
  stage.addEventListener("pointercancel", () => {
    drag = null;
    render();
  });
  stage.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      zoom(event.deltaY < 0 ? 1.2 : 1 / 1.2, toImage(event));
    },
    { passive: false },
  );
  const onKeyUp = (event: KeyboardEvent) => {
    if (event.key === " ") spaceHeld = false;
  };
  document.addEventListener("keyup", onKeyUp);
  const onResize = () => render();
  window.addEventListener("resize", onResize);
  zoomIn.addEventListener("click", () => zoom(1.5));
  zoomOut.addEventListener("click", () => zoom(1 / 1.5));
  zoomFit.addEventListener("click", fit);
  skipButton.addEventListener("click", () => {
    skip = !skip;
    render();
  });

  return {
    element,
    tools: [zoomTools],
    actions: [skipButton],
    show(next) {
      task = next;
      item = next.items[0] ?? null;
      shapes = [];
      selected = null;
      skip = false;
      drag = null;
      draft = null;
      errors = new Map();
      if (!item) return;
      const shown = item;
      picture.setAttribute("href", shown.image_url);
      for (const prelabel of shown.prelabels) {
        const confidence = prelabel.confidence ?? null;
        if (mode === "box" && prelabel.bbox?.length === 4) {
          const [x, y, w, hh] = prelabel.bbox;
          shapes.push({ label: prelabel.label, box: [x, y, w, hh], suggested: confidence });
        } else if (mode === "polygon" && prelabel.polygon && prelabel.polygon.length >= 3) {
          shapes.push({ label: prelabel.label, points: prelabel.polygon.map(([x, y]) => [x, y]), suggested: confidence });
        }
      }
      void imageSize(shown).then(([w, hh]) => {
        if (item !== shown) return;
        width = w;
        height = hh;
        picture.setAttribute("width", String(w));
        picture.setAttribute("height", String(hh));
        fit();
      });
      render();
    },
    clear(text) {
      task = null;
      item = null;
      shapes = [];
      layer.replaceChildren();
      picture.removeAttribute("href");
      list.replaceChildren();
      status.textContent = text;
    },
    focus() {
      area.focus();
    },
    answers() {
      if (!task || !item) return { missing: "No image to submit." };
      if (draft) return { missing: "Finish the polygon being drawn (Enter) or cancel it (Escape) first." };
      if (skip) return { items: [{ item_id: item.item_id, skip: true }] };
      return {
        items: [
          {
            item_id: item.item_id,
            annotations: shapes.map((shape) =>
              shape.box
                ? { label: shape.label, bbox: shape.box.map(round) }
                : { label: shape.label, polygon: (shape.points ?? []).map(([x, y]) => [round(x), round(y)]) },
            ),
          },
        ],
      };
    },
    showErrors(problems: FieldProblem[]) {
      errors = new Map();
      for (const problem of problems) {
        const parts = problem.pointer.split("/");
        const index = parts[3] === "annotations" ? Number(parts[4]) : NaN;
        if (Number.isInteger(index)) errors.set(index, problem.detail);
        else status.textContent = problem.detail;
      }
      render();
    },
    applyClass(name) {
      active = name;
      if (selected !== null && shapes[selected]) {
        shapes[selected].label = name;
        changed(selected);
      }
      render();
    },
    activeClass: () => active,
    key(event) {
      const step = event.shiftKey ? 10 : 1;
      switch (event.key) {
        case "Escape":
          if (drag?.kind === "draw") drag = null;
          else if (draft) draft = null;
          else selected = null;
          render();
          return true;
        case "Enter":
          if (!draft) return false;
          closeDraft();
          return true;
        case "Delete":
          if (selected !== null) remove(selected);
          return true;
        case "Backspace":
          if (draft) {
            draft.pop();
            if (!draft.length) draft = null;
            render();
          } else if (selected !== null) remove(selected);
          return true;
        case "+":
        case "=":
          zoom(1.5);
          return true;
        case "-":
          zoom(1 / 1.5);
          return true;
        case "0":
          fit();
          return true;
        case " ":
          spaceHeld = true;
          return true;
        case "ArrowLeft":
          nudge(-step, 0);
          return true;
        case "ArrowRight":
          nudge(step, 0);
          return true;
        case "ArrowUp":
          nudge(0, -step);
          return true;
        case "ArrowDown":
          nudge(0, step);
          return true;
        case "s":
        case "S":
          skip = !skip;
          render();
          return true;
        default:
          return false;
      }
    },
    dispose() {
      document.removeEventListener("keyup", onKeyUp);
      window.removeEventListener("resize", onResize);
    },
  };
}
