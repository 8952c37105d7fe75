// An admin's view of one project, updating by itself every few seconds: progress (labeled, in
// tasks, queued, not yet in a task), the queues by kind, the label distribution, the last
// refresh, and with ML assist the runs, when the next training happens, each class's threshold
// with its precision/coverage curve, and how labelers took the prelabels.

import { Project, call, messageOf } from "../api";
import { h, header, notice, show } from "../dom";

const EVERY_MS = 3000;

interface Dashboard {
  status: string;
  round: number;
  total_items: number;
  labeled: number;
  skipped: number;
  missing: number;
  dropped: number;
  pending: { not_in_task: number; in_task: number; queued: number };
  queues: Record<string, number>;
  label_distribution: Record<string, number>;
  prelabel_acceptance: Record<
    string,
    { accepted: number; edited: number; replaced: number; acceptance_rate: number | null }
  >;
  /** Object detection: what labelers did with each prelabeled box, per class. */
  box_acceptance?: Record<
    string,
    { accepted: number; edited: number; deleted: number; added: number; acceptance_rate: number | null }
  >;
  refresh: { last_refresh_at: string | null; items_added: number; files_removed: number };
  ml: { next_training_at: number; active_run: string | null; model_run: string | null } | null;
}

interface MlStatus {
  status: string;
  waiting_for: string | null;
  labeled: number;
  next_training_at: number | null;
  backbone: string | null;
  backbone_unavailable: string | null;
  runs: {
    id: string;
    purpose: string;
    status: string;
    labels: number;
    created_at: string;
    steps: { name: string; status: string; error: string | null }[];
  }[];
  classes: {
    label: string;
    threshold: number | null;
    reason: string | null;
    precision: number | null;
    coverage: number | null;
    /** Object detection only: AP at IoU 0.5; then coverage is recall. */
    average_precision?: number;
    held_out: number;
    curve: { threshold: number; precision: number; coverage: number; support: number }[];
  }[];
}

const percent = (part: number, whole: number) => (whole ? Math.round((100 * part) / whole) : 0);

/** A bar's filled part; its width is set through the DOM, which the content security policy
 * allows (it refuses style attributes). */
function fill(share: number): HTMLElement {
  const bar = h("span", { class: "bar-fill" });
  bar.style.width = `${share}%`;
  return bar;
}

/** Horizontal bars: a label, a bar of its share of the largest, the number. */
function bars(title: string, rows: [string, number][], total?: number): HTMLElement {
  const largest = Math.max(1, total ?? 0, ...rows.map(([, n]) => n));
  return h(
    "section",
    { class: "card chart", "aria-label": title },
    h("h2", {}, title),
    h(
      "dl",
      { class: "bars" },
      rows.flatMap(([name, n]) => [
        h("dt", {}, name),
        h(
          "dd",
          {},
          fill(percent(n, largest)),
          h("span", { class: "bar-value" }, `${n.toLocaleString()}${total ? ` (${percent(n, total)}%)` : ""}`),
        ),
      ]),
    ),
  );
}

/** A class's precision (solid) and coverage (dashed; for boxes, recall) against the threshold,
 * as a small SVG. */
function curve(
  points: MlStatus["classes"][number]["curve"],
  threshold: number | null,
  covered: "coverage" | "recall",
): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const chart = document.createElementNS(ns, "svg");
  chart.setAttribute("viewBox", "0 0 200 100");
  chart.setAttribute("class", "curve");
  chart.setAttribute("role", "img");
  chart.setAttribute(
    "aria-label",
    `precision and ${covered} against the threshold${threshold === null ? "" : `; chosen ${threshold.toFixed(2)}`}`,
  );
  const line = (key: "precision" | "coverage", dashed: boolean) => {
    const path = document.createElementNS(ns, "polyline");
    path.setAttribute(
      "points",
      points.map((p) => `${(p.threshold * 200).toFixed(1)},${(100 - p[key] * 100).toFixed(1)}`).join(" "),
    );
    path.setAttribute("class", dashed ? "coverage" : "precision");
    chart.append(path);
  };
  line("precision", false);
  line("coverage", true);
  if (threshold !== null) {
    const mark = document.createElementNS(ns, "line");
    const x = String(threshold * 200);
    mark.setAttribute("x1", x);
    mark.setAttribute("x2", x);
    mark.setAttribute("y1", "0");
    mark.setAttribute("y2", "100");
    mark.setAttribute("class", "chosen");
    chart.append(mark);
  }
  return chart;
}

function mlSection(ml: MlStatus, dashboard: Dashboard): HTMLElement {
  const acceptance = Object.entries(dashboard.prelabel_acceptance).filter(
    ([, a]) => a.accepted + a.edited + a.replaced > 0,
  );
  const boxes = Object.entries(dashboard.box_acceptance ?? {});
  return h(
    "section",
    { class: "card", "aria-label": "ML assist" },
    h("h2", {}, "ML assist"),
    h(
      "p",
      {},
      ml.backbone_unavailable
        ? `Unavailable: ${ml.backbone_unavailable}`
        : `${ml.status}${ml.waiting_for ? `: ${ml.waiting_for}` : ""}. ` +
            (ml.next_training_at ? `Next training at ${ml.next_training_at.toLocaleString()} labels (now ${ml.labeled.toLocaleString()}).` : ""),
    ),
    ml.runs.length
      ? h(
          "table",
          { class: "runs" },
          h("caption", {}, "Runs, newest first"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Started"), h("th", { scope: "col" }, "Purpose"), h("th", { scope: "col" }, "Labels"), h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Steps"))),
          h(
            "tbody",
            {},
            ml.runs.slice(0, 5).map((run) =>
              h(
                "tr",
                {},
                h("td", {}, new Date(run.created_at).toLocaleString()),
                h("td", {}, run.purpose),
                h("td", {}, String(run.labels)),
                h("td", {}, run.status),
                h("td", {}, run.steps.map((step) => `${step.name} ${step.status}${step.error ? ` (${step.error})` : ""}`).join(", ")),
              ),
            ),
          ),
        )
      : null,
    ml.classes.length
      ? h(
          "div",
          { class: "classes-ml" },
          ml.classes.map((c) =>
            h(
              "figure",
              { class: "class-ml" },
              curve(c.curve, c.threshold, c.average_precision === undefined ? "coverage" : "recall"),
              h(
                "figcaption",
                {},
                h("strong", {}, c.label),
                c.average_precision === undefined ? "" : ` AP ${c.average_precision.toFixed(2)};`,
                c.threshold === null
                  ? ` not prelabeled: ${c.reason ?? ""}`
                  : ` threshold ${c.threshold.toFixed(2)}, precision ${(c.precision ?? 0).toFixed(2)}, ${
                      c.average_precision === undefined ? "coverage" : "recall"
                    } ${(c.coverage ?? 0).toFixed(2)} (${c.held_out} ${c.average_precision === undefined ? "held out" : "held-out boxes"})`,
              ),
            ),
          ),
        )
      : null,
    acceptance.length
      ? bars(
          "Prelabels accepted unchanged, per class (%)",
          acceptance.map(([name, a]) => [name, Math.round(100 * (a.acceptance_rate ?? 0))]),
          100,
        )
      : null,
    boxes.length
      ? h(
          "section",
          { class: "card", "aria-label": "Prelabeled boxes" },
          h("h2", {}, "Prelabeled boxes, per class"),
          h(
            "table",
            {},
            h(
              "tr",
              {},
              ["class", "accepted", "edited", "deleted", "added", "accepted unchanged"].map((name) =>
                h("th", {}, name),
              ),
            ),
            boxes.map(([name, b]) =>
              h(
                "tr",
                {},
                h("td", {}, name),
                h("td", {}, String(b.accepted)),
                h("td", {}, String(b.edited)),
                h("td", {}, String(b.deleted)),
                h("td", {}, String(b.added)),
                h("td", {}, b.acceptance_rate === null ? "-" : `${Math.round(100 * b.acceptance_rate)}%`),
              ),
            ),
          ),
        )
      : null,
  );
}

export async function dashboardPage(projectId: string): Promise<() => void> {
  const base = `/projects/${encodeURIComponent(projectId)}`;
  let timer = 0;
  let stopped = false;
  const body = h("div", { class: "dashboard" });
  const project = await call<Project>("GET", base);
  if (!project) throw new Error("no such project");
  show(
    header(
      project.name,
      h("a", { href: `#/projects/${encodeURIComponent(projectId)}/label` }, "Label"),
      h("a", { href: `#/projects/${encodeURIComponent(projectId)}/data` }, "Data"),
      h("a", { href: `#/projects/${encodeURIComponent(projectId)}/details` }, "Details"),
      h("a", { href: "#/" }, "Projects"),
    ),
    body,
  );

  async function update(): Promise<void> {
    try {
      const dashboard = await call<Dashboard>("GET", `${base}/dashboard`);
      // The runs page reads every run of the project: only with ML assist, every 3 s.
      const ml = dashboard?.ml ? await call<MlStatus>("GET", `${base}/ml`).catch(() => null) : null;
      if (!dashboard || stopped) return;
      const total = dashboard.total_items;
      body.replaceChildren(
        h(
          "p",
          { class: "summary" },
          h("span", { class: `status ${dashboard.status}` }, dashboard.status),
          ` ${dashboard.labeled.toLocaleString()} of ${total.toLocaleString()} items labeled (${percent(dashboard.labeled, total)}%)`,
          dashboard.round ? `, round ${dashboard.round}` : "",
          dashboard.refresh.last_refresh_at
            ? `; last refresh ${new Date(dashboard.refresh.last_refresh_at).toLocaleString()} (+${dashboard.refresh.items_added})`
            : "",
        ),
        h(
          "div",
          { class: "charts" },
          bars(
            "Progress",
            [
              ["labeled", dashboard.labeled],
              ["skipped", dashboard.skipped],
              ["in tasks", dashboard.pending.in_task],
              ["queued", dashboard.pending.queued],
              ["not yet in a task", dashboard.pending.not_in_task],
              ["missing", dashboard.missing],
            ],
            total,
          ),
          bars("Queues", Object.entries(dashboard.queues)),
          bars("Labels", Object.entries(dashboard.label_distribution)),
        ),
        ml ? mlSection(ml, dashboard) : "",
      );
    } catch (error) {
      body.replaceChildren(notice(messageOf(error), "error"));
    } finally {
      if (!stopped) timer = window.setTimeout(() => void update(), EVERY_MS);
    }
  }
  await update();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
