// Sign in: locally with a user's token (the server printed the admin's; `POST /users` makes
// more). The token is kept for this tab's session only.

import { ApiError, Me, call, signIn, signOut } from "../api";
import { h, notice, show } from "../dom";

export function signInPage(): void {
  const input = h("input", {
    id: "token",
    type: "password",
    autocomplete: "current-password",
    required: true,
    spellcheck: "false",
  });
  const message = h("div", { class: "message" });
  const form = h(
    "form",
    { class: "card narrow" },
    h("h1", {}, "Sign in"),
    h("label", { for: "token" }, "Your token"),
    input,
    h(
      "p",
      { class: "hint" },
      "The server printed the admin's token on its first start; an admin creates labelers' tokens with POST /users.",
    ),
    message,
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    signIn(input.value);
    try {
      await call<Me>("GET", "/me");
      location.hash = "#/";
    } catch (error) {
      signOut();
      const text =
        error instanceof ApiError && error.status === 401
          ? "That token is not valid."
          : error instanceof Error
            ? error.message
            : String(error);
      message.replaceChildren(notice(text, "error"));
    }
  });
  show(h("div", { class: "center" }, form));
  input.focus();
}
