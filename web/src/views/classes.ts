// The class bar: the first nine classes with their keys, more through a search box (`/`).

import { h } from "../dom";
import type { View } from "./view";

export interface ClassBar {
  element: HTMLElement;
  search: HTMLInputElement;
  /** Handles keys typed in the search box; true when it took the key. */
  ownsKey(event: KeyboardEvent): boolean;
  refresh(): void;
}

export function classBar(classes: string[], view: View): ClassBar {
  const search = h("input", {
    type: "search",
    placeholder: "Find a class (/)",
    "aria-label": "Find a class",
    class: "search",
  });
  const buttons = h("div", { class: "classes", role: "toolbar", "aria-label": "Classes" });
  const element = h("div", { class: "class-bar" }, buttons, search);

  function refresh(): void {
    const filter = search.value.trim().toLowerCase();
    const active = view.activeClass?.() ?? null;
    const shown = classes
      .map((name, index) => ({ name, index }))
      .filter(({ name }) => !filter || name.toLowerCase().includes(filter))
      .slice(0, 30);
    buttons.replaceChildren(
      ...shown.map(({ name, index }) =>
        h(
          "button",
          {
            type: "button",
            class: name === active ? "class active" : "class",
            "aria-pressed": active === null ? undefined : String(name === active),
            title: index < 9 ? `Key ${index + 1}` : undefined,
            onclick: () => {
              view.applyClass(name);
              refresh();
            },
          },
          index < 9 ? h("kbd", {}, String(index + 1)) : null,
          name,
        ),
      ),
    );
  }

  search.addEventListener("input", refresh);
  refresh();
  return {
    element,
    search,
    refresh,
    ownsKey(event) {
      if (event.target !== search) return false;
      if (event.key === "Enter") {
        (buttons.querySelector("button") as HTMLButtonElement | null)?.click();
        search.value = "";
        refresh();
        event.preventDefault();
        view.focus();
      } else if (event.key === "Escape") {
        search.value = "";
        refresh();
        view.focus();
      }
      return true;
    },
  };
}
