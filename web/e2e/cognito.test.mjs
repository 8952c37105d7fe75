// Sign-in with a Cognito user pool, as on AWS: a user pool in moto_server (the AWS-protocol
// emulator; LABELING_MOTO_ENDPOINT), a second `labeling` server (LABELING_BINARY) started with
// that pool, and the app in headless Chromium with its content security policy enforced.
// An admin's first sign-in with a temporary password, the new password it must choose, tokens
// renewed before they expire, a user in no group, and sign-out.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import { ARTIFACTS, launchOptions, look } from "./support.mjs";

const MOTO = process.env.LABELING_MOTO_ENDPOINT;
const BINARY = process.env.LABELING_BINARY;

/** One Cognito action on moto, as the AWS SDK would send it (moto does not check signatures). */
async function cognito(action, body) {
  const response = await fetch(`${MOTO}/`, {
    method: "POST",
    headers: {
      "content-type": "application/x-amz-json-1.1",
      "x-amz-target": `AWSCognitoIdentityProviderService.${action}`,
      authorization:
        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/cognito-idp/aws4_request, SignedHeaders=host, Signature=0",
    },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${action}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : {};
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

let browser;
let server;
let url;
let data;
let pool;
const TEMPORARY = "Temporary-pass-1";
const CHOSEN = "Chosen-password-2";

before(async () => {
  assert.ok(MOTO, "LABELING_MOTO_ENDPOINT is not set: run web/e2e/run.sh, which starts moto_server");
  assert.ok(BINARY, "LABELING_BINARY is not set: run web/e2e/run.sh PATH/TO/labeling");
  mkdirSync(ARTIFACTS, { recursive: true });
  pool = (await cognito("CreateUserPool", { PoolName: `e2e-${Date.now()}` })).UserPool.Id;
  const client = (
    await cognito("CreateUserPoolClient", {
      UserPoolId: pool,
      ClientName: "web",
      ExplicitAuthFlows: ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    })
  ).UserPoolClient.ClientId;
  for (const group of ["labeling-admins", "labelers"]) {
    await cognito("CreateGroup", { UserPoolId: pool, GroupName: group });
  }
  // ada: an admin made by an admin, with a temporary password; nobody: in no group.
  await cognito("AdminCreateUser", { UserPoolId: pool, Username: "ada", TemporaryPassword: TEMPORARY });
  await cognito("AdminAddUserToGroup", { UserPoolId: pool, Username: "ada", GroupName: "labeling-admins" });
  await cognito("AdminCreateUser", { UserPoolId: pool, Username: "nobody", TemporaryPassword: TEMPORARY });
  await cognito("AdminSetUserPassword", { UserPoolId: pool, Username: "nobody", Password: CHOSEN, Permanent: true });

  data = mkdtempSync(join(tmpdir(), "e2e-cognito-"));
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  const env = { ...process.env };
  delete env.LABELING_ORT_DYLIB;
  delete env.LABELING_BACKBONE;
  delete env.LABELING_DETECTION_BACKBONE;
  delete env.LABELING_ADMIN_TOKEN;
  server = spawn(
    BINARY,
    [
      "serve", "--data-dir", join(data, "labeling"), "--addr", `127.0.0.1:${port}`, "--no-demo", "--no-ml",
      "--cognito-user-pool-id", pool, "--cognito-client-id", client, "--cognito-endpoint", MOTO,
    ],
    { env, stdio: ["ignore", "ignore", "inherit"] },
  );
  for (let waited = 0; ; waited += 100) {
    const up = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (up) break;
    assert.ok(waited < 30_000 && server.exitCode === null, "the Cognito server did not start");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  browser = await chromium.launch(launchOptions());
});

after(async () => {
  await browser?.close();
  server?.kill();
  if (data) rmSync(data, { recursive: true, force: true });
});

/** Fills the user name and password form and submits it. */
async function submitPassword(page, user, password) {
  await page.fill("#user", user);
  await page.fill("#password", password);
  await page.press("#password", "Enter");
}

test("an admin's first sign-in replaces the temporary password; tokens are renewed before they expire; sign-out ends the session", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.clock.install();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  page.on("console", (message) => {
    // A request the content security policy refused shows here, and nowhere else. (Refused
    // sign-ins log their 400 here too, and moto's RevokeToken fails: the app ignores that.)
    if (/Content Security Policy/i.test(message.text())) errors.push(message.text());
  });
  const bearers = [];
  page.on("request", (request) => {
    const header = request.headers().authorization;
    if (request.url().startsWith(url) && header) bearers.push(header.replace(/^Bearer /, ""));
  });

  await page.goto(`${url}/`);
  await page.waitForSelector("#user");
  await look(page, "sign-in-cognito");

  await submitPassword(page, "ada", "not-the-password");
  await page.waitForSelector(".notice.error");
  assert.match(await page.textContent(".notice.error"), /Wrong user name or password/);

  await submitPassword(page, "ada", TEMPORARY);
  await page.waitForSelector("#new-password");
  await look(page, "sign-in-new-password");
  await page.fill("#new-password", CHOSEN);
  await page.fill("#new-password-again", `${CHOSEN}x`);
  await page.press("#new-password-again", "Enter");
  assert.match(await page.textContent(".notice.error"), /differ/);
  await page.fill("#new-password-again", CHOSEN);
  await page.press("#new-password-again", "Enter");
  await page.waitForSelector("button:has-text('Sign out')");
  assert.equal(new URL(page.url()).hash, "#/");
  await look(page, "projects-cognito");

  // The API got Cognito's ID token, and says who it is.
  const first = await page.evaluate(() => JSON.parse(sessionStorage.getItem("labeling.session")));
  assert.equal(first.token.split(".").length, 3);
  assert.ok(first.refresh, "the refresh token is kept for renewal");
  assert.ok(bearers.includes(first.token), "the API calls carry the ID token");
  const me = await fetch(`${url}/me`, { headers: { authorization: `Bearer ${first.token}` } });
  assert.deepEqual(await me.json(), { user: "ada", role: "admin" });

  // 56 minutes later on the browser's clock, within 5 minutes of the hour the token lasts:
  // the tab renews on its own, with no click.
  const renewal = page.waitForRequest(
    (request) =>
      request.url().startsWith(MOTO) && (request.postData() ?? "").includes("REFRESH_TOKEN_AUTH"),
  );
  await context.clock.fastForward("56:00");
  await renewal;
  await page.waitForFunction(
    (before) => JSON.parse(sessionStorage.getItem("labeling.session") ?? "{}").token !== before,
    first.token,
  );
  const renewed = await page.evaluate(() => JSON.parse(sessionStorage.getItem("labeling.session")));
  assert.ok(renewed.expires_at > first.expires_at + 55 * 60 * 1000, "a fresh hour from the renewal");
  assert.equal(renewed.refresh, first.refresh, "Cognito keeps the refresh token");
  // The next API call carries the renewed token.
  const count = bearers.length;
  await page.evaluate(() => {
    location.hash = "#/new";
  });
  await page.waitForSelector("form");
  await page.evaluate(() => {
    location.hash = "#/";
  });
  await page.waitForSelector("button:has-text('Sign out')");
  assert.ok(bearers.slice(count).includes(renewed.token), "later calls use the renewed token");

  await page.click("text=Sign out");
  await page.waitForSelector("#user");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("labeling.session")), null);
  assert.deepEqual(errors, []);
  await context.close();
});

test("a user in no group of the service is told so, and stays signed out", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(`${url}/`);
  await page.waitForSelector("#user");
  await submitPassword(page, "nobody", CHOSEN);
  await page.waitForSelector(".notice.error");
  assert.match(await page.textContent(".notice.error"), /group/);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("labeling.session")), null);
  await context.close();
});
