// The projects the user may label (an admin sees them all; a labeler, those it is a member of).

import { Me, Project, call, signOut, TASK_TYPES } from "../api";
import { h, header, show } from "../dom";


export async function projectsPage(): Promise<void> {
  const [me, list] = await Promise.all([
    call<Me>("GET", "/me"),
    call<{ projects: Project[] }>("GET", "/projects"),
  ]);
  const projects = list?.projects ?? [];
  const signOutButton = h(
    "button",
    {
      class: "link",
      onclick: () => {
        signOut();
        location.hash = "#/signin";
      },
    },
    "Sign out",
  );
  const rows = projects.map((project) =>
    h(
      "li",
      { class: "project" },
      h(
        "a",
        { href: `#/projects/${encodeURIComponent(project.id)}/label` },
        h("strong", {}, project.name),
      ),
      me?.role === "admin"
        ? h("a", { href: `#/projects/${encodeURIComponent(project.id)}`, "aria-label": `Dashboard of ${project.name}` }, "Dashboard")
        : null,
      h("span", { class: "muted" }, TASK_TYPES.find(([value]) => value === project.task_type)?.[1] ?? project.task_type),
      h("span", { class: `status ${project.status}` }, project.status),
    ),
  );
  show(
    header(
      `Projects`,
      me?.role === "admin" ? h("a", { href: "#/new", class: "button primary" }, "New project") : null,
      h("span", { class: "muted" }, `${me?.user} (${me?.role})`),
      signOutButton,
    ),
    h(
      "section",
      { class: "card" },
      rows.length
        ? h("ul", { class: "projects" }, rows)
        : h("p", {}, "No projects yet: an admin creates one and adds you as a member."),
    ),
  );
}
