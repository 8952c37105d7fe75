// The classification labeling page: a grid of the task's images (the project's page size),
// classes applied by click or the keys 1-9 (more classes through the search box), arrows or Tab
// to move, Enter to submit, S to skip an image. Prelabels arrive applied and marked as
// suggestions with their confidence. The next task is checked out and its images loaded while
// the labeler works on this one, so Enter shows the next page at once. The lease counts down
// on screen and is renewed while the labeler is active; a lost lease says so and brings a
// fresh task.

import { ApiError, Project, Task, TaskItem, call, callOnExit } from "../api";
import { h, header, notice, show } from "../dom";

/** Problem types that end the task in hand: the labeler gets a fresh one. */
const TASK_GONE: Record<string, string> = {
  "lease-taken-over": "Your lease on that page ran out and someone else has it now.",
  "task-released": "That page was released.",
  "task-revoked": "You were removed from the project's members, so that page was taken back.",
  "round-started-over": "The label classes changed and labeling started over.",
  "task-already-submitted": "That page was submitted already.",
};

/** Renew when less than this share of the lease is left and the labeler was active lately. */
const RENEW_BELOW_SHARE = 0.5;
const ACTIVE_WITHIN_MS = 5 * 60 * 1000;

interface Answer {
  labels: Set<string>;
  skip: boolean;
  /** The prelabels, while the labeler has not changed this image. */
  suggested: Map<string, number | null> | null;
}

interface Page {
  task: Task;
  answers: Answer[];
  leaseEndsAt: number;
  leaseLength: number;
}

function isClassification(taskType: string): boolean {
  return taskType.startsWith("image_classification");
}

function page(task: Task): Page {
  const leaseEndsAt = Date.parse(task.lease_expires_at);
  return {
    task,
    leaseEndsAt,
    leaseLength: Math.max(leaseEndsAt - Date.now(), 1000),
    answers: task.items.map((item) => {
      const suggested = new Map(item.prelabels.map((p) => [p.label, p.confidence ?? null]));
      return {
        labels: new Set(item.prelabels.map((p) => p.label)),
        skip: false,
        suggested: suggested.size ? suggested : null,
      };
    }),
  };
}

/** Loads the images of a task into the browser's cache before it is shown. */
function preload(task: Task): Promise<void> {
  return Promise.all(
    task.items.map(
      (item) =>
        new Promise<void>((resolve) => {
          const image = new Image();
          image.onload = image.onerror = () => resolve();
          image.src = item.image_url;
        }),
    ),
  ).then(() => undefined);
}

export async function labelPage(projectId: string): Promise<() => void> {
  const base = `/projects/${encodeURIComponent(projectId)}`;
  const project = await call<Project>("GET", base);
  if (!project) throw new Error("no such project");
  const classes = project.labels.map((label) => label.name);
  const multiLabel = project.task_type === "image_classification_multilabel";

  if (!isClassification(project.task_type)) {
    show(
      header(project.name, h("a", { href: "#/" }, "Projects")),
      notice(
        "Drawing boxes and polygons in the browser is not available yet: label this project through the API.",
        "error",
      ),
    );
    return () => undefined;
  }

  let current: Page | null = null;
  let next: Promise<Task | null> | null = null;
  let focusIndex = 0;
  let selected = new Set<number>();
  let lastActivity = Date.now();
  let renewing = false;
  let submitting = false;
  let closed = false;

  const grid = h("div", {
    class: "grid",
    role: "listbox",
    "aria-multiselectable": "true",
    "aria-label": "Images of this page",
  });
  const message = h("div", { class: "message", "aria-live": "polite" });
  const lease = h("span", { class: "lease", role: "timer", "aria-label": "Time left on this page" });
  const search = h("input", {
    type: "search",
    placeholder: "Find a class (/)",
    "aria-label": "Find a class",
    class: "search",
  });
  const classBar = h("div", { class: "classes", role: "toolbar", "aria-label": "Classes" });
  const submitButton = h("button", { class: "primary", type: "button" }, "Submit (Enter)");
  const skipButton = h("button", { type: "button" }, "Skip image (S)");
  const instructionsButton = h("button", { class: "link", type: "button" }, "Instructions");

  function say(text: string, kind: "info" | "error" = "info"): void {
    message.replaceChildren(text ? notice(text, kind) : "");
  }

  function renderClasses(): void {
    const filter = search.value.trim().toLowerCase();
    const shown = classes
      .map((name, index) => ({ name, index }))
      .filter(({ name }) => !filter || name.toLowerCase().includes(filter))
      .slice(0, filter ? 30 : Math.max(9, Math.min(classes.length, 30)));
    classBar.replaceChildren(
      ...shown.map(({ name, index }) =>
        h(
          "button",
          {
            type: "button",
            class: "class",
            title: index < 9 ? `Key ${index + 1}` : undefined,
            onclick: () => apply(name),
          },
          index < 9 ? h("kbd", {}, String(index + 1)) : null,
          name,
        ),
      ),
    );
  }

  function cellLabel(item: TaskItem, answer: Answer, index: number, count: number): string {
    const state = answer.skip
      ? "skipped"
      : answer.labels.size
        ? `labeled ${[...answer.labels].join(", ")}${answer.suggested ? " (suggested)" : ""}`
        : "no label yet";
    return `Image ${index + 1} of ${count}, ${item.key}: ${state}`;
  }

  function renderGrid(): void {
    if (!current) return;
    const count = current.task.items.length;
    grid.dataset.size = String(count);
    grid.replaceChildren(
      ...current.task.items.map((item, index) => {
        const answer = current!.answers[index];
        const chips = answer.skip
          ? [h("span", { class: "chip skip" }, "skipped")]
          : [...answer.labels].map((label) => {
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
        const cell = h(
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
            "aria-label": cellLabel(item, answer, index, count),
            dataset: { item: String(item.item_id) },
            onclick: (event: MouseEvent) => {
              if (event.shiftKey || event.ctrlKey || event.metaKey) {
                if (selected.has(index)) selected.delete(index);
                else selected.add(index);
              } else {
                selected = new Set([index]);
              }
              focusIndex = index;
              renderGrid();
              focusCell();
            },
          },
          h("img", { src: item.image_url, alt: item.key, draggable: "false" }),
          h("figcaption", {}, ...chips),
          h("div", { class: "field-error", id: `error-${index}` }),
        );
        return cell;
      }),
    );
  }

  function focusCell(): void {
    const cell = grid.children[focusIndex] as HTMLElement | undefined;
    cell?.focus();
  }

  function move(to: number): void {
    if (!current) return;
    const count = current.task.items.length;
    focusIndex = Math.max(0, Math.min(count - 1, to));
    selected = new Set([focusIndex]);
    renderGrid();
    focusCell();
  }

  function columns(): number {
    const count = current?.task.items.length ?? 1;
    return count === 1 ? 1 : count === 4 ? 2 : 3;
  }

  function apply(name: string): void {
    if (!current) return;
    const targets = selected.size ? [...selected] : [focusIndex];
    for (const index of targets) {
      const answer = current.answers[index];
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
    if (!multiLabel && targets.length === 1) {
      const count = current.task.items.length;
      const after = [...Array(count).keys()]
        .map((offset) => (focusIndex + 1 + offset) % count)
        .find((index) => !current!.answers[index].labels.size && !current!.answers[index].skip);
      if (after !== undefined) {
        focusIndex = after;
        selected = new Set([after]);
      }
    }
    renderGrid();
    focusCell();
  }

  function toggleSkip(): void {
    if (!current) return;
    for (const index of selected.size ? [...selected] : [focusIndex]) {
      const answer = current.answers[index];
      answer.skip = !answer.skip;
      answer.suggested = null;
    }
    renderGrid();
    focusCell();
  }

  function prefetch(): void {
    next = call<Task>("POST", `${base}/tasks/checkout`)
      .then(async (task) => {
        if (task) await preload(task);
        return task;
      })
      .catch(() => null);
  }

  async function showTask(task: Task | null): Promise<void> {
    if (closed) {
      if (task) callOnExit(`${base}/tasks/${task.task_id}/release`);
      return;
    }
    current = task ? page(task) : null;
    focusIndex = 0;
    selected = new Set([0]);
    if (!current) {
      grid.replaceChildren(
        h("p", { class: "done-all" }, "Nothing left to label in this project for now."),
      );
      lease.textContent = "";
      return;
    }
    grid.dataset.task = current.task.task_id;
    grid.dataset.kind = current.task.kind;
    renderGrid();
    focusCell();
    tick();
    prefetch();
  }

  async function fetchFresh(): Promise<void> {
    const waiting = next;
    next = null;
    const task = waiting ? await waiting : null;
    await showTask(task ?? (await call<Task>("POST", `${base}/tasks/checkout`)));
  }

  async function submit(): Promise<void> {
    if (!current || submitting) return;
    const missing = current.answers.filter((a) => !a.skip && !a.labels.size).length;
    if (missing) {
      say(
        `${missing} image${missing > 1 ? "s have" : " has"} no class yet: press a number, or S to skip it.`,
        "error",
      );
      const first = current.answers.findIndex((a) => !a.skip && !a.labels.size);
      move(first);
      return;
    }
    submitting = true;
    const done = current;
    const items = done.task.items.map((item, index) => {
      const answer = done.answers[index];
      return answer.skip
        ? { item_id: item.item_id, skip: true }
        : { item_id: item.item_id, labels: [...answer.labels] };
    });
    try {
      await call("POST", `${base}/tasks/${done.task.task_id}/submit`, { items });
      say("");
      await fetchFresh();
    } catch (error) {
      if (error instanceof ApiError && TASK_GONE[error.kind]) {
        say(`${TASK_GONE[error.kind]} Here is a fresh page.`, "error");
        await fetchFresh();
      } else if (error instanceof ApiError && error.errors.length) {
        say(error.message, "error");
        for (const problem of error.errors) {
          const index = Number(problem.pointer.split("/")[2]);
          const slot = document.getElementById(`error-${index}`);
          if (slot) slot.textContent = problem.detail;
        }
      } else {
        say(error instanceof Error ? error.message : String(error), "error");
      }
    } finally {
      submitting = false;
    }
  }

  function tick(): void {
    if (!current) return;
    const left = current.leaseEndsAt - Date.now();
    if (left <= 0) {
      lease.textContent = "lease lost";
      say(`${TASK_GONE["lease-taken-over"]} Here is a fresh page.`, "error");
      current = null;
      void fetchFresh();
      return;
    }
    const seconds = Math.ceil(left / 1000);
    lease.textContent = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
    lease.classList.toggle("short", left < 60_000);
    const active = Date.now() - lastActivity < ACTIVE_WITHIN_MS;
    if (!renewing && active && left < current.leaseLength * RENEW_BELOW_SHARE) {
      renewing = true;
      const renewed = current;
      call<{ lease_expires_at: string }>("POST", `${base}/tasks/${renewed.task.task_id}/renew`)
        .then((answer) => {
          if (answer) renewed.leaseEndsAt = Date.parse(answer.lease_expires_at);
        })
        .catch((error) => {
          if (error instanceof ApiError && TASK_GONE[error.kind] && renewed === current) {
            say(`${TASK_GONE[error.kind]} Here is a fresh page.`, "error");
            current = null;
            void fetchFresh();
          }
        })
        .finally(() => {
          renewing = false;
        });
    }
  }

  function showInstructions(then?: () => void): void {
    const { text, url } = project!.instructions;
    const start = h("button", { class: "primary", type: "button" }, "Start labeling");
    const dialog = h(
      "div",
      { class: "dialog", role: "dialog", "aria-modal": "true", "aria-labelledby": "instructions-title" },
      h(
        "div",
        { class: "card" },
        h("h2", { id: "instructions-title" }, "Instructions"),
        h("p", { class: "instructions" }, text || "No written instructions for this project."),
        url ? h("p", {}, h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, "More instructions")) : null,
        start,
      ),
    );
    const close = () => {
      dialog.remove();
      then?.();
      focusCell();
    };
    start.addEventListener("click", close);
    dialog.addEventListener("keydown", (event) => {
      if (event.key === "Escape") close();
      event.stopPropagation();
    });
    document.body.append(dialog);
    start.focus();
  }

  function onKey(event: KeyboardEvent): void {
    lastActivity = Date.now();
    if (event.target === search) {
      if (event.key === "Enter") {
        const first = classBar.querySelector("button");
        first?.click();
        search.value = "";
        renderClasses();
        event.preventDefault();
      } else if (event.key === "Escape") {
        search.value = "";
        renderClasses();
        focusCell();
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    const cols = columns();
    if (/^[1-9]$/.test(key)) {
      const name = classes[Number(key) - 1];
      if (name) apply(name);
    } else if (key === "ArrowRight") move(focusIndex + 1);
    else if (key === "ArrowLeft") move(focusIndex - 1);
    else if (key === "ArrowDown") move(focusIndex + cols);
    else if (key === "ArrowUp") move(focusIndex - cols);
    else if (key === "Enter" && !(event.target instanceof HTMLButtonElement)) void submit();
    else if (key === "s" || key === "S") toggleSkip();
    else if (key === "/") search.focus();
    else return;
    event.preventDefault();
  }

  function onFocus(event: FocusEvent): void {
    const cell = (event.target as HTMLElement).closest?.("figure.cell");
    if (!cell || !current) return;
    const index = [...grid.children].indexOf(cell);
    if (index >= 0 && index !== focusIndex) {
      focusIndex = index;
      if (!selected.has(index)) selected = new Set([index]);
      for (const [i, other] of [...grid.children].entries()) {
        other.setAttribute("tabindex", i === index ? "0" : "-1");
        other.classList.toggle("selected", selected.has(i));
        other.setAttribute("aria-selected", selected.has(i) ? "true" : "false");
      }
    }
  }

  function releaseAll(): void {
    if (current) callOnExit(`${base}/tasks/${current.task.task_id}/release`);
    const waiting = next;
    next = null;
    waiting?.then((task) => task && callOnExit(`${base}/tasks/${task.task_id}/release`));
  }

  submitButton.addEventListener("click", () => void submit());
  skipButton.addEventListener("click", toggleSkip);
  instructionsButton.addEventListener("click", () => showInstructions());
  search.addEventListener("input", renderClasses);
  renderClasses();
  show(
    header(project.name, instructionsButton, lease, h("a", { href: "#/" }, "Projects")),
    h("div", { class: "toolbar" }, classBar, search),
    grid,
    h("footer", { class: "actions" }, message, skipButton, submitButton),
  );
  document.addEventListener("keydown", onKey);
  grid.addEventListener("focusin", onFocus);
  window.addEventListener("pagehide", releaseAll);
  const timer = window.setInterval(tick, 1000);

  const seenKey = `labeling.instructions.${projectId}`;
  const first = call<Task>("POST", `${base}/tasks/checkout`);
  const begin = async () => {
    try {
      await showTask(await first);
    } catch (error) {
      if (error instanceof ApiError && error.kind === "project-paused") {
        say("This project is paused: an admin resumes it.", "error");
      } else {
        say(error instanceof Error ? error.message : String(error), "error");
      }
    }
  };
  if (!sessionStorage.getItem(seenKey)) {
    sessionStorage.setItem(seenKey, "1");
    showInstructions(() => void begin());
  } else {
    void begin();
  }

  return () => {
    closed = true;
    window.clearInterval(timer);
    document.removeEventListener("keydown", onKey);
    window.removeEventListener("pagehide", releaseAll);
    document.querySelector(".dialog")?.remove();
    releaseAll();
  };
}
