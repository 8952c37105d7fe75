// A tiny element builder: h("button", { class: "x", onclick }, "text", child).

type Attrs = Record<string, unknown>;
type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value as EventListener);
    } else if (name === "dataset" && typeof value === "object") {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

/** Replaces the app's content with `nodes`. */
export function show(...nodes: Node[]): void {
  const root = document.getElementById("app");
  if (root) root.replaceChildren(...nodes);
}

export function header(title: string, ...actions: (Node | null)[]): HTMLElement {
  return h(
    "header",
    { class: "bar" },
    h("a", { href: "#/", class: "brand" }, "Labeling"),
    h("h1", {}, title),
    h("nav", {}, ...actions.filter((action): action is Node => action !== null)),
  );
}

export function notice(text: string, kind: "info" | "error" = "info"): HTMLElement {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}
