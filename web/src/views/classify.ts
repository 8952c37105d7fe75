// Classification: the task's images in a grid of the project's page size. A class applies to
// the selected image(s); multi-class then moves on to the next image without a class,
// multi-label toggles. Arrows or Tab move, click selects (Ctrl/Shift-click adds), S skips an
// image. Prelabels arrive applied and marked as suggestions with their confidence until the
// labeler changes the image.

import type { FieldProblem, Task, TaskItem } from "../api";
import { h } from "../dom";
import type { View } from "./view";

interface Answer {
  labels: Set<string>;
  skip: boolean;
  /** The prelabels, while the labeler has not changed this image. */
  suggested: Map<string, number | null> | null;
}

export function classificationView(_classes: string[], multiLabel: boolean): View {
  let task: Task | null = null;
  let answers: Answer[] = [];
  let focusIndex = 0;
  let selected = new Set<number>();

  const grid = h("div", {
    class: "grid",
    role: "listbox",
    "aria-multiselectable": "true",
    "aria-label": "Images of this page",
  });
  const skipButton = h("button", { type: "button" }, "Skip image (S)");

  function cellLabel(item: TaskItem, answer: Answer, index: number, count: number): string {
    const state = answer.skip
      ? "skipped"
      : answer.labels.size
        ? `labeled ${[...answer.labels].join(", ")}${answer.suggested ? " (suggested)" : ""}`
        : "no label yet";
    return `Image ${index + 1} of ${count}, ${item.key}: ${state}`;
  }

  function chips(answer: Answer): HTMLElement[] {
    if (answer.skip) return [h("span", { class: "chip skip" }, "skipped")];
    return [...answer.labels].map((label) => {
      const confidence = answer.suggested?.get(label);
      return h(
        "span",
        { class: answer.suggested ? "chip suggested" : "chip" },
        label,
        answer.suggested
          ? h(
              "small",
              {},
              confidence === null || confidence === undefined
                ? " suggested"
                : ` suggested ${Math.round(confidence * 100)}%`,
            )
          : null,
      );
    });
  }

  function render(): void {
    if (!task) return;
    const items = task.items;
    grid.dataset.size = String(items.length);
    grid.replaceChildren(
      ...items.map((item, index) => {
        const answer = answers[index];
        return h(
          "figure",
          {
            class: [
              "cell",
              selected.has(index) ? "selected" : "",
              answer.labels.size || answer.skip ? "done" : "",
            ].join(" "),
            tabindex: index === focusIndex ? 0 : -1,
            role: "option",
            "aria-selected": selected.has(index) ? "true" : "false",
            "aria-label": cellLabel(item, answer, index, items.length),
            dataset: { item: String(item.item_id) },
            onclick: (event: MouseEvent) => {
              if (event.shiftKey || event.ctrlKey || event.metaKey) {
                if (selected.has(index)) selected.delete(index);
                else selected.add(index);
              } else {
                selected = new Set([index]);
              }
              focusIndex = index;
              render();
              focusCell();
            },
          },
          h("img", { src: item.image_url, alt: item.key, draggable: "false" }),
          h("figcaption", {}, ...chips(answer)),
          h("div", { class: "field-error", id: `error-${index}` }),
        );
      }),
    );
  }

  function focusCell(): void {
    (grid.children[focusIndex] as HTMLElement | undefined)?.focus();
  }

  function move(to: number): void {
    if (!task) return;
    focusIndex = Math.max(0, Math.min(task.items.length - 1, to));
    selected = new Set([focusIndex]);
    render();
    focusCell();
  }

  function columns(): number {
    const count = task?.items.length ?? 1;
    return count === 1 ? 1 : count === 4 ? 2 : 3;
  }

  function targets(): number[] {
    return selected.size ? [...selected] : [focusIndex];
  }

  function toggleSkip(): void {
    if (!task) return;
    for (const index of targets()) {
      answers[index].skip = !answers[index].skip;
      answers[index].suggested = null;
    }
    render();
    focusCell();
  }

  // Tab and clicks move the focus without the view's keys: follow it.
  grid.addEventListener("focusin", (event) => {
    const cell = (event.target as HTMLElement).closest?.("figure.cell");
    if (!cell || !task) return;
    const index = [...grid.children].indexOf(cell);
    if (index < 0 || index === focusIndex) return;
    focusIndex = index;
    if (!selected.has(index)) selected = new Set([index]);
    for (const [i, other] of [...grid.children].entries()) {
      other.setAttribute("tabindex", i === index ? "0" : "-1");
      other.classList.toggle("selected", selected.has(i));
      other.setAttribute("aria-selected", selected.has(i) ? "true" : "false");
    }
  });
  skipButton.addEventListener("click", toggleSkip);

  return {
    element: grid,
    tools: [],
    actions: [skipButton],
    show(next) {
      task = next;
      focusIndex = 0;
      selected = new Set([0]);
      answers = next.items.map((item) => {
        const suggested = new Map(item.prelabels.map((p) => [p.label, p.confidence ?? null]));
        return {
          labels: new Set(item.prelabels.map((p) => p.label)),
          skip: false,
          suggested: suggested.size ? suggested : null,
        };
      });
      render();
    },
    clear(text) {
      task = null;
      grid.replaceChildren(h("p", { class: "done-all" }, text));
    },
    focus: focusCell,
    answers() {
      if (!task) return { missing: "No page to submit." };
      const missing = answers.filter((a) => !a.skip && !a.labels.size).length;
      if (missing) {
        move(answers.findIndex((a) => !a.skip && !a.labels.size));
        return {
          missing: `${missing} image${missing > 1 ? "s have" : " has"} no class yet: press a number, or S to skip it.`,
        };
      }
      return {
        items: task.items.map((item, index) =>
          answers[index].skip
            ? { item_id: item.item_id, skip: true }
            : { item_id: item.item_id, labels: [...answers[index].labels] },
        ),
      };
    },
    showErrors(problems: FieldProblem[]) {
      for (const problem of problems) {
        const slot = document.getElementById(`error-${Number(problem.pointer.split("/")[2])}`);
        if (slot) slot.textContent = problem.detail;
      }
    },
    applyClass(name) {
      if (!task) return;
      const chosen = targets();
      for (const index of chosen) {
        const answer = answers[index];
        answer.suggested = null;
        answer.skip = false;
        if (multiLabel) {
          if (answer.labels.has(name)) answer.labels.delete(name);
          else answer.labels.add(name);
        } else {
          answer.labels = new Set([name]);
        }
      }
      // One class per image: move on to the next image without one.
      if (!multiLabel && chosen.length === 1) {
        const count = task.items.length;
        const after = [...Array(count).keys()]
          .map((offset) => (focusIndex + 1 + offset) % count)
          .find((index) => !answers[index].labels.size && !answers[index].skip);
        if (after !== undefined) {
          focusIndex = after;
          selected = new Set([after]);
        }
      }
      render();
      focusCell();
    },
    key(event) {
      const cols = columns();
      switch (event.key) {
        case "ArrowRight":
          move(focusIndex + 1);
          return true;
        case "ArrowLeft":
          move(focusIndex - 1);
          return true;
        case "ArrowDown":
          move(focusIndex + cols);
          return true;
        case "ArrowUp":
          move(focusIndex - cols);
          return true;
        case "s":
        case "S":
          toggleSkip();
          return true;
        default:
          return false;
      }
    },
  };
}
