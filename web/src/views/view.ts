// What the labeling session asks of a task type's view.

import type { FieldProblem, Task } from "../api";

export interface View {
  /** The main area: the grid or the drawing stage. */
  element: HTMLElement;
  /** Controls beside the class bar, and beside the submit button. */
  tools: HTMLElement[];
  actions: HTMLElement[];
  show(task: Task): void;
  /** Shown instead of a task. */
  clear(text: string): void;
  focus(): void;
  /** The submit's items, or what is still missing. */
  answers(): { items: unknown[] } | { missing: string };
  /** The API's field errors (`/items/N/...`), shown where they point. */
  showErrors(problems: FieldProblem[]): void;
  /** The class picked by key or click: applied to the selection, or the next shape's. */
  applyClass(name: string): void;
  /** The class the bar shows as active, if the view has one. */
  activeClass?(): string | null;
  /** Keys the view handles itself (true: handled). */
  key(event: KeyboardEvent): boolean;
  dispose?(): void;
}
