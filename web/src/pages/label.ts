// The labeling page: the session around a view of the task type. The session checks out tasks
// (the next one, with its images, while the labeler works on this one, so Enter shows the next
// page at once), counts the lease down on screen and renews it while the labeler is active,
// submits, and on a lost task says so and brings a fresh one. The view (classification grid,
// or the drawing stage for boxes and polygons) shows a task and turns the labeler's work into
// the submit's items.

import { ApiError, Project, Task, call, callOnExit, messageOf } from "../api";
import { h, header, notice, show } from "../dom";
import { classBar } from "../views/classes";
import { classificationView } from "../views/classify";
import { shapesView } from "../views/shapes";
import type { View } from "../views/view";

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

interface Lease {
  task: Task;
  /** On this browser's clock. */
  endsAt: number;
  length: number;
}

/** A checked-out task and when it arrived: the lease is measured from there on this browser's
 * clock, with the project's lease length, never by comparing this clock with the server's
 * `lease_expires_at` (a clock minutes off would renew every second, or never). */
interface Arrived {
  task: Task;
  at: number;
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

function viewFor(project: Project, classes: string[]): View | null {
  switch (project.task_type) {
    case "image_classification_multiclass":
      return classificationView(classes, false);
    case "image_classification_multilabel":
      return classificationView(classes, true);
    case "object_detection":
      return shapesView(classes, "box");
    case "instance_segmentation":
      return shapesView(classes, "polygon");
    default:
      return null;
  }
}

export async function labelPage(projectId: string): Promise<() => void> {
  const base = `/projects/${encodeURIComponent(projectId)}`;
  const project = await call<Project>("GET", base);
  if (!project) throw new Error("no such project");
  const classes = project.labels.map((label) => label.name);
  const chosen = viewFor(project, classes);
  if (!chosen) {
    show(
      header(project.name, h("a", { href: "#/" }, "Projects")),
      notice(`The app cannot label ${project.task_type} projects.`, "error"),
    );
    return () => undefined;
  }
  const view: View = chosen;

  let current: Lease | null = null;
  let next: Promise<Arrived | null> | null = null;
  const leaseMs = Math.max(1, project.lease_seconds ?? 3600) * 1000;
  const checkout = async (): Promise<Arrived | null> => {
    const task = await call<Task>("POST", `${base}/tasks/checkout`);
    return task ? { task, at: Date.now() } : null;
  };
  let lastActivity = Date.now();
  let renewing = false;
  let submitting = false;
  let closed = false;

  const message = h("div", { class: "message", "aria-live": "polite" });
  const lease = h("span", { class: "lease", role: "timer", "aria-label": "Time left on this page" });
  const submitButton = h("button", { class: "primary", type: "button" }, "Submit (Enter)");
  const instructionsButton = h("button", { class: "link", type: "button" }, "Instructions");
  const bar = classBar(classes, view);

  function say(text: string, kind: "info" | "error" = "info"): void {
    message.replaceChildren(text ? notice(text, kind) : "");
  }

  function prefetch(): void {
    next = checkout()
      .then(async (arrived) => {
        if (arrived) await preload(arrived.task);
        return arrived;
      })
      .catch(() => null);
  }

  function showTask(arrived: Arrived | null): void {
    const task = arrived?.task ?? null;
    if (closed) {
      if (task) callOnExit(`${base}/tasks/${task.task_id}/release`);
      return;
    }
    if (!arrived || !task) {
      current = null;
      view.clear("Nothing left to label in this project for now.");
      lease.textContent = "";
      return;
    }
    current = { task, endsAt: arrived.at + leaseMs, length: leaseMs };
    view.element.dataset.task = task.task_id;
    view.element.dataset.kind = task.kind;
    view.show(task);
    view.focus();
    tick();
    prefetch();
  }

  async function fetchFresh(): Promise<void> {
    const waiting = next;
    next = null;
    const task = waiting ? await waiting : null;
    showTask(task ?? (await checkout()));
  }

  async function submit(): Promise<void> {
    if (!current || submitting) return;
    const answers = view.answers();
    if ("missing" in answers) {
      say(answers.missing, "error");
      return;
    }
    submitting = true;
    const done = current;
    try {
      await call("POST", `${base}/tasks/${done.task.task_id}/submit`, { items: answers.items });
      say("");
      await fetchFresh();
    } catch (error) {
      if (error instanceof ApiError && TASK_GONE[error.kind]) {
        say(`${TASK_GONE[error.kind]} Here is a fresh page.`, "error");
        await fetchFresh();
      } else if (error instanceof ApiError && error.errors.length) {
        say(error.message, "error");
        view.showErrors(error.errors);
      } else {
        say(messageOf(error), "error");
      }
    } finally {
      submitting = false;
    }
  }

  function lost(kind: string): void {
    say(`${TASK_GONE[kind]} Here is a fresh page.`, "error");
    current = null;
    void fetchFresh();
  }

  function tick(): void {
    if (!current) return;
    const left = current.endsAt - Date.now();
    if (left <= 0) {
      lease.textContent = "lease lost";
      lost("lease-taken-over");
      return;
    }
    const seconds = Math.ceil(left / 1000);
    lease.textContent = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
    lease.classList.toggle("short", left < 60_000);
    const active = Date.now() - lastActivity < ACTIVE_WITHIN_MS;
    if (!renewing && active && left < current.length * RENEW_BELOW_SHARE) {
      renewing = true;
      const renewed = current;
      const asked = Date.now();
      call<{ lease_expires_at: string }>("POST", `${base}/tasks/${renewed.task.task_id}/renew`)
        .then((answer) => {
          // The server extended it by a lease length from when it answered: counted from
          // when it was asked, the countdown ends a little early, never late.
          if (answer) renewed.endsAt = asked + leaseMs;
        })
        .catch((error) => {
          if (error instanceof ApiError && TASK_GONE[error.kind] && renewed === current) {
            lost(error.kind);
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
        // The API accepts only http(s) instructions URLs; checked again here, as a link.
        url && /^https?:\/\//i.test(url)
          ? h("p", {}, h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, "More instructions"))
          : null,
        start,
      ),
    );
    const close = () => {
      dialog.remove();
      then?.();
      view.focus();
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
    if (bar.ownsKey(event)) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (view.key(event)) {
      event.preventDefault();
      return;
    }
    if (/^[1-9]$/.test(event.key)) {
      const name = classes[Number(event.key) - 1];
      if (name) view.applyClass(name);
      bar.refresh();
    } else if (event.key === "Enter" && !(event.target instanceof HTMLButtonElement)) {
      void submit();
    } else if (event.key === "/") {
      bar.search.focus();
    } else {
      return;
    }
    event.preventDefault();
  }

  function releaseAll(): void {
    if (current) callOnExit(`${base}/tasks/${current.task.task_id}/release`);
    const waiting = next;
    next = null;
    waiting?.then((arrived) => arrived && callOnExit(`${base}/tasks/${arrived.task.task_id}/release`));
  }

  submitButton.addEventListener("click", () => void submit());
  instructionsButton.addEventListener("click", () => showInstructions());
  show(
    header(project.name, instructionsButton, lease, h("a", { href: "#/" }, "Projects")),
    h("div", { class: "toolbar" }, bar.element, ...view.tools),
    view.element,
    h("footer", { class: "actions" }, message, ...view.actions, submitButton),
  );
  const onActivity = () => {
    lastActivity = Date.now();
  };
  document.addEventListener("keydown", onKey);
  document.addEventListener("pointerdown", onActivity);
  window.addEventListener("pagehide", releaseAll);
  const timer = window.setInterval(tick, 1000);

  const seenKey = `labeling.instructions.${projectId}`;
  const first = checkout();
  const begin = async () => {
    try {
      showTask(await first);
    } catch (error) {
      if (error instanceof ApiError && error.kind === "project-paused") {
        say("This project is paused: an admin resumes it.", "error");
      } else {
        say(messageOf(error), "error");
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
    document.removeEventListener("pointerdown", onActivity);
    window.removeEventListener("pagehide", releaseAll);
    document.querySelector(".dialog")?.remove();
    view.dispose?.();
    releaseAll();
  };
}
