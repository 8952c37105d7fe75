// Who is signed in, for this tab only (sessionStorage): a local user's token, or Cognito's
// tokens. With Cognito the app talks to the user pool straight from the browser
// (InitiateAuth with USER_PASSWORD_AUTH, the new-password challenge of a user an admin made,
// REFRESH_TOKEN_AUTH before the ID token expires, RevokeToken on sign-out), and sends the ID
// token to the API, as API Gateway's JWT authorizer expects.

const SESSION_KEY = "labeling.session";
/** Renew this long before the ID token expires (and at the latest on the next call). */
const RENEW_BEFORE_MS = 5 * 60 * 1000;

export type SignInConfig =
  | { sign_in: "token" }
  | { sign_in: "cognito"; endpoint: string; client_id: string };

interface Session {
  /** What goes in `Authorization: Bearer`. */
  token: string;
  /** Cognito's refresh token and when the ID token expires (this browser's clock, ms). */
  refresh?: string;
  expires_at?: number;
}

/** A refusal from Cognito: its exception name (`NotAuthorizedException`) and message. */
export class SignInError extends Error {
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(message);
  }
}

let config: Promise<SignInConfig> | null = null;

/** How this deployment signs users in (`/app/config.json`, asked once a page load). */
export function signInConfig(): Promise<SignInConfig> {
  config ??= fetch("/app/config.json", { headers: { accept: "application/json" } })
    .then((response) => (response.ok ? response.json() : { sign_in: "token" }))
    .catch(() => ({ sign_in: "token" }) as SignInConfig);
  return config;
}

type CognitoConfig = Extract<SignInConfig, { sign_in: "cognito" }>;

/** The Cognito settings, or a refusal on a server that signs in with tokens. */
async function cognitoConfig(): Promise<CognitoConfig> {
  const found = await signInConfig();
  if (found.sign_in !== "cognito") throw new SignInError("config", "This server signs in with tokens.");
  return found;
}

function load(): Session | null {
  try {
    const stored = JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? "null");
    return stored && typeof stored.token === "string" ? (stored as Session) : null;
  } catch {
    return null;
  }
}

function save(session: Session): void {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function token(): string | null {
  return load()?.token ?? null;
}

/** Signs in with a local user's token. */
export function signInWithToken(value: string): void {
  save({ token: value.trim() });
}

/** Forgets this tab's tokens; Cognito's refresh token is revoked in the background. */
export function signOut(): void {
  const session = load();
  sessionStorage.removeItem(SESSION_KEY);
  if (session?.refresh) {
    void signInConfig().then((found) => {
      if (found.sign_in !== "cognito") return;
      cognito(found, "RevokeToken", { ClientId: found.client_id, Token: session.refresh }).catch(
        () => undefined,
      );
    });
  }
}

async function cognito(
  found: CognitoConfig,
  action: string,
  body: unknown,
): Promise<any> {
  let response: Response;
  try {
    response = await fetch(found.endpoint, {
      method: "POST",
      headers: {
        "content-type": "application/x-amz-json-1.1",
        "x-amz-target": `AWSCognitoIdentityProviderService.${action}`,
      },
      body: JSON.stringify(body),
    });
  } catch {
    throw new SignInError("network", "The sign-in service cannot be reached; check the connection.");
  }
  const parsed = await response.json().catch(() => null);
  if (!response.ok) {
    const kind = String(parsed?.__type ?? response.status).split("#").pop() ?? "";
    throw new SignInError(kind, explain(kind, parsed?.message));
  }
  return parsed;
}

/** Cognito's refusals in the words a labeler needs. */
function explain(kind: string, message: unknown): string {
  switch (kind) {
    case "NotAuthorizedException":
      return "Wrong user name or password.";
    case "PasswordResetRequiredException":
      return "Your password was reset: ask an admin for a new temporary one.";
    case "UserNotConfirmedException":
      return "Your account is not confirmed yet: ask an admin.";
    case "TooManyRequestsException":
    case "LimitExceededException":
      return "Too many attempts: wait a minute and try again.";
    case "InvalidPasswordException":
      return typeof message === "string" ? message : "That password does not meet the policy.";
    default:
      return typeof message === "string" ? message : `Sign-in failed (${kind}).`;
  }
}

function keep(result: any, refresh?: string): void {
  const lifetime = Number(result?.ExpiresIn ?? 3600) * 1000;
  save({
    token: result.IdToken,
    refresh: result.RefreshToken ?? refresh,
    expires_at: Date.now() + lifetime,
  });
}

/** The outcome of a password: signed in, or a new password is required first. */
export type PasswordOutcome = { done: true } | { done: false; session: string };

export async function signInWithPassword(user: string, password: string): Promise<PasswordOutcome> {
  const found = await cognitoConfig();
  const answer = await cognito(found, "InitiateAuth", {
    AuthFlow: "USER_PASSWORD_AUTH",
    ClientId: found.client_id,
    AuthParameters: { USERNAME: user, PASSWORD: password },
  });
  return finish(answer);
}

/** Answers the new-password challenge of a user an admin created with a temporary password. */
export async function chooseNewPassword(
  user: string,
  challenge: string,
  password: string,
): Promise<PasswordOutcome> {
  const found = await cognitoConfig();
  const answer = await cognito(found, "RespondToAuthChallenge", {
    ChallengeName: "NEW_PASSWORD_REQUIRED",
    ClientId: found.client_id,
    Session: challenge,
    ChallengeResponses: { USERNAME: user, NEW_PASSWORD: password },
  });
  return finish(answer);
}

function finish(answer: any): PasswordOutcome {
  if (answer?.AuthenticationResult?.IdToken) {
    keep(answer.AuthenticationResult);
    return { done: true };
  }
  if (answer?.ChallengeName === "NEW_PASSWORD_REQUIRED" && answer.Session) {
    return { done: false, session: answer.Session };
  }
  throw new SignInError(
    String(answer?.ChallengeName ?? "unknown"),
    `This account needs a sign-in step the app does not offer (${answer?.ChallengeName ?? "unknown"}).`,
  );
}

let renewing: Promise<void> | null = null;

/**
 * Renews Cognito's tokens when they expire within five minutes (one request however many
 * calls wait for it). When the refresh token is refused, the tab is signed out and the caller
 * gets a 401 from the API, which sends the user to the sign-in page.
 */
export async function renewIfDue(): Promise<void> {
  const session = load();
  if (!session?.refresh || session.expires_at === undefined) return;
  if (session.expires_at - Date.now() > RENEW_BEFORE_MS) return;
  renewing ??= (async () => {
    try {
      const found = await signInConfig();
      if (found.sign_in !== "cognito") return;
      const answer = await cognito(found, "InitiateAuth", {
        AuthFlow: "REFRESH_TOKEN_AUTH",
        ClientId: found.client_id,
        AuthParameters: { REFRESH_TOKEN: session.refresh },
      });
      if (!answer?.AuthenticationResult?.IdToken) throw new SignInError("refresh", "no tokens");
      keep(answer.AuthenticationResult, session.refresh);
    } catch (error) {
      // A network failure keeps the session: the ID token may still be good for minutes.
      if (!(error instanceof SignInError) || error.kind !== "network") {
        sessionStorage.removeItem(SESSION_KEY);
      }
    } finally {
      renewing = null;
    }
  })();
  return renewing;
}

// An idle tab (a dashboard left open) keeps its session too.
setInterval(() => void renewIfDue(), 60 * 1000);
