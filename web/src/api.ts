// The HTTP API as the app uses it: the bearer token of this tab's session (session.ts), JSON
// in and out, and errors as the API sends them (problem+json: a type slug, a detail, field
// pointers).

import { renewIfDue, token } from "./session";

export { signOut, token } from "./session";

export interface FieldProblem {
  pointer: string;
  detail: string;
}

/** A refused or failed request: `kind` is the problem type's slug (`lease-taken-over`, ...). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly kind: string,
    detail: string,
    readonly errors: FieldProblem[] = [],
  ) {
    super(detail);
  }
}

/** What to tell the user about a failed call or any other error. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Task types as the app names them, with the page sizes each allows. */
export const TASK_TYPES: [string, string, number[]][] = [
  ["image_classification_multiclass", "Classification: one class an image", [1, 4, 6, 9]],
  ["image_classification_multilabel", "Classification: any classes an image", [1, 4, 6, 9]],
  ["object_detection", "Bounding boxes", [1]],
  ["instance_segmentation", "Polygons", [1]],
];

export async function call<T>(method: string, path: string, body?: unknown): Promise<T | null> {
  await renewIfDue();
  const headers: Record<string, string> = { accept: "application/json" };
  const bearer = token();
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "the service cannot be reached; check the connection");
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let parsed: any = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const type: string = parsed?.type ?? "";
    throw new ApiError(
      response.status,
      type.split("/").pop() || String(response.status),
      parsed?.detail ?? response.statusText,
      parsed?.errors ?? [],
    );
  }
  return parsed as T;
}

/** A request that ends a page in the background even when the tab is closing. */
export function callOnExit(path: string): void {
  const bearer = token();
  if (!bearer) return;
  fetch(path, {
    method: "POST",
    keepalive: true,
    headers: { authorization: `Bearer ${bearer}` },
  }).catch(() => undefined);
}

export interface Me {
  user: string;
  role: "admin" | "labeler";
}

export interface Label {
  id: number;
  name: string;
}

export interface Project {
  id: string;
  name: string;
  task_type: string;
  status: string;
  page_size: number;
  lease_seconds: number;
  labels: Label[];
  instructions: { text: string | null; url: string | null };
}

export interface Prelabel {
  label: string;
  confidence?: number | null;
  bbox?: number[];
  polygon?: [number, number][];
}

export interface TaskItem {
  item_id: number;
  key: string;
  image_url: string;
  width: number | null;
  height: number | null;
  prelabels: Prelabel[];
}

export interface Task {
  task_id: string;
  kind: string;
  lease_expires_at: string;
  items: TaskItem[];
}
