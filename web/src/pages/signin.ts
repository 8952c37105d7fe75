// Sign in: locally with a user's token (the server printed the admin's; `POST /users` makes
// more); on AWS (or a local server given a Cognito user pool) with a user name and password,
// including the new password a user an admin created must choose at the first sign-in.
// Whatever signs in is kept for this tab's session only.

import { ApiError, Me, call, messageOf } from "../api";
import { h, notice, show } from "../dom";
import {
  SignInError,
  chooseNewPassword,
  signInConfig,
  signInWithPassword,
  signInWithToken,
  signOut,
} from "../session";

export async function signInPage(reason?: string): Promise<void> {
  const config = await signInConfig();
  if (config.sign_in === "cognito") {
    passwordForm(reason);
  } else {
    tokenForm(reason);
  }
}

/**
 * Asks the API who this is, then opens the projects; a refusal signs out again, saying
 * `refused` for a 401.
 */
async function enter(message: HTMLElement, refused: string): Promise<void> {
  try {
    await call<Me>("GET", "/me");
    location.hash = "#/";
  } catch (error) {
    signOut();
    const text = error instanceof ApiError && error.status === 401 ? refused : messageOf(error);
    message.replaceChildren(notice(text, "error"));
  }
}

/** After Cognito accepted the password, a 401 means the account is in neither group. */
const IN_NO_GROUP =
  "Your password is right, but your account is in no group of this service: ask an admin to add it to labelers or labeling-admins.";

function tokenForm(reason?: string): void {
  const input = h("input", {
    id: "token",
    type: "password",
    autocomplete: "current-password",
    required: true,
    spellcheck: "false",
  });
  const message = h("div", { class: "message" }, reason ? notice(reason) : null);
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
    signInWithToken(input.value);
    await enter(message, "That token is not valid.");
  });
  show(h("div", { class: "center" }, form));
  input.focus();
}

function passwordForm(reason?: string): void {
  const user = h("input", {
    id: "user",
    type: "text",
    autocomplete: "username",
    required: true,
    spellcheck: "false",
    autocapitalize: "none",
  });
  const password = h("input", {
    id: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const message = h("div", { class: "message" }, reason ? notice(reason) : null);
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "card narrow" },
    h("h1", {}, "Sign in"),
    h("label", { for: "user" }, "User name"),
    user,
    h("label", { for: "password" }, "Password"),
    password,
    message,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    message.replaceChildren();
    try {
      const outcome = await signInWithPassword(user.value.trim(), password.value);
      if (outcome.done) {
        await enter(message, IN_NO_GROUP);
      } else {
        newPasswordForm(user.value.trim(), outcome.session);
      }
    } catch (error) {
      message.replaceChildren(notice(messageOf(error), "error"));
    } finally {
      submit.disabled = false;
    }
  });
  show(h("div", { class: "center" }, form));
  user.focus();
}

/** The first sign-in of a user an admin created: the temporary password must be replaced. */
function newPasswordForm(user: string, challenge: string): void {
  const first = h("input", {
    id: "new-password",
    type: "password",
    autocomplete: "new-password",
    required: true,
    minlength: 12,
  });
  const again = h("input", {
    id: "new-password-again",
    type: "password",
    autocomplete: "new-password",
    required: true,
    minlength: 12,
  });
  const message = h("div", { class: "message" });
  const submit = h("button", { type: "submit" }, "Set password and sign in");
  const form = h(
    "form",
    { class: "card narrow" },
    h("h1", {}, "Choose your password"),
    h(
      "p",
      { class: "hint" },
      `${user}, your password was temporary: choose your own (at least 12 characters, with upper and lower case letters and a digit).`,
    ),
    h("label", { for: "new-password" }, "New password"),
    first,
    h("label", { for: "new-password-again" }, "New password again"),
    again,
    message,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (first.value !== again.value) {
      message.replaceChildren(notice("The two passwords differ.", "error"));
      return;
    }
    submit.disabled = true;
    try {
      const outcome = await chooseNewPassword(user, challenge, first.value);
      if (outcome.done) {
        await enter(message, IN_NO_GROUP);
      } else {
        message.replaceChildren(notice("Cognito asked for a new password again.", "error"));
      }
    } catch (error) {
      // The challenge's session lasts minutes: an expired one starts the sign-in over.
      if (error instanceof SignInError && error.kind === "NotAuthorizedException") {
        void signInPage("That took too long: sign in with the temporary password again.");
        return;
      }
      message.replaceChildren(notice(messageOf(error), "error"));
    } finally {
      submit.disabled = false;
    }
  });
  show(h("div", { class: "center" }, form));
  first.focus();
}
