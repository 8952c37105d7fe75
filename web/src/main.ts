// The app's entry: a hash router over the pages (sign in, projects, label).

import { ApiError, messageOf, signOut, token } from "./api";
import "./style.css";
import { notice, show } from "./dom";
import { projectsPage } from "./pages/projects";
import { signInPage } from "./pages/signin";
import { labelPage } from "./pages/label";
import { dashboardPage } from "./pages/dashboard";
import { createPage } from "./pages/create";
import { dataPage } from "./pages/data";
import { detailsPage } from "./pages/details";

let leave: (() => void) | null = null;
/** Why the sign-in page shows: a session the API stopped accepting. */
let signInReason: string | undefined;

async function route(): Promise<void> {
  leave?.();
  leave = null;
  const path = location.hash.replace(/^#/, "") || "/";
  if (!token() && path !== "/signin") {
    location.hash = "#/signin";
    return;
  }
  try {
    const label = path.match(/^\/projects\/([^/]+)\/label$/);
    const dashboard = path.match(/^\/projects\/([^/]+)$/);
    const details = path.match(/^\/projects\/([^/]+)\/details$/);
    const data = path.match(/^\/projects\/([^/]+)\/data(?:\/([a-z_]+))?$/);
    if (path === "/signin") {
      await signInPage(signInReason);
      signInReason = undefined;
    } else if (path === "/new") {
      createPage();
    } else if (label) {
      leave = await labelPage(decodeURIComponent(label[1]));
    } else if (details) {
      leave = await detailsPage(decodeURIComponent(details[1]));
    } else if (data) {
      leave = await dataPage(decodeURIComponent(data[1]), data[2] ?? "labeled");
    } else if (dashboard) {
      leave = await dashboardPage(decodeURIComponent(dashboard[1]));
    } else {
      await projectsPage();
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      if (token()) signInReason = "Your session ended: sign in again.";
      signOut();
      location.hash = "#/signin";
      return;
    }
    show(notice(messageOf(error), "error"));
  }
}

window.addEventListener("hashchange", () => void route());
void route();
