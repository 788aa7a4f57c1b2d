/**
 * The control API of the admin listener (docs/admin-api.md): JSON endpoints that list the
 * backends and change a target's admin state and weight at runtime, without a reload.
 *
 *   GET  /api/backends                                    backends → targets with their state
 *   GET  /api/backends/{backend}                          one backend
 *   POST /api/backends/{backend}/targets/{target}/state   {"state":"ready"}
 *                                                         {"state":"drain","wait":"30s"}
 *                                                         {"state":"maint","close":true}
 *   POST /api/backends/{backend}/targets/{target}/weight  {"weight":3}   (0..256)
 *
 * `{target}` is a target's address (`127.0.0.1:6380`, percent-encoded for `unix:/path`) or its
 * configured name (`redis.svc:6379`: every address it resolved to). Every error is JSON
 * `{"error":"…"}` with a 4xx status; nothing a client sends can throw out of here.
 *
 * Writes need the bearer token (403 while none is configured, 401 for a wrong one); reads too
 * with `protect_reads`. Each change is one info line, tagged `admin`: who, what, and the state before.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { DEFAULTS } from "../config/defaults.ts";
import { readToken } from "../config/files.ts";
import { ADMIN_STATES, MAX_WEIGHT, type AdminState, type Backend, type TargetState } from "../backend/backend.ts";
import { formatDuration, parseDuration } from "../util/duration.ts";
import { event, type Logger } from "../util/log.ts";
import type { RouterView } from "../proxy/handle.ts";

/** Who may do what on the admin listener. */
export interface AdminAuth {
  /** The bearer token; null = none configured: writes answer 403. */
  token: string | null;
  /** Reads (all but /healthz and /readyz) need the token too. */
  protectReads: boolean;
}

/** No token, open reads: what an admin listener without a token has. */
export const OPEN_READS: AdminAuth = { token: null, protectReads: false };

/**
 * The admin auth of serve: the token from `tokenFile` when given, else from the
 * DEFAULTS.admin.tokenEnv environment variable. Throws a one-line message naming the source.
 */
export function loadAdminAuth(options: { tokenFile: string | null; protectReads: boolean; source: string }, env = process.env): AdminAuth {
  let token: string | null = null;
  if (options.tokenFile !== null) {
    try {
      token = readToken(options.tokenFile);
    } catch (error) {
      throw new Error(`${options.source}: ${(error as Error).message}`);
    }
  } else {
    const value = env[DEFAULTS.admin.tokenEnv]?.trim() ?? "";
    if (/\s/.test(value)) throw new Error(`${DEFAULTS.admin.tokenEnv}: holds more than one word (expected the admin token alone)`);
    if (value !== "") token = value;
  }
  if (options.protectReads && token === null) {
    throw new Error(`admin.protect_reads: needs a token (admin.token_file or the ${DEFAULTS.admin.tokenEnv} environment variable)`);
  }
  return { token, protectReads: options.protectReads };
}

const digest = (text: string) => createHash("sha256").update(text).digest();

/**
 * null when the request may go on, else the 401 or 403 answer. The token is compared in
 * constant time (as SHA-256 digests, so the lengths match whatever was sent).
 */
export function authorize(request: Request, auth: AdminAuth, write: boolean): Response | null {
  if (!write && !auth.protectReads) return null;
  if (auth.token === null) {
    return failure(403, `changes are off: no admin token is configured ([admin] token_file, --admin-token-file or ${DEFAULTS.admin.tokenEnv})`);
  }
  const header = request.headers.get("authorization") ?? "";
  const sent = /^Bearer +(\S+) *$/i.exec(header)?.[1];
  if (sent === undefined) return failure(401, "missing bearer token (Authorization: Bearer …)", { "www-authenticate": 'Bearer realm="tcprouter"' });
  if (!timingSafeEqual(digest(sent), digest(auth.token)))
    return failure(401, "wrong token", { "www-authenticate": 'Bearer realm="tcprouter", error="invalid_token"' });
  return null;
}

const NO_STORE = { "cache-control": "no-store" };

/** `{"error": message}` with `status`. */
export function failure(status: number, message: string, headers: Record<string, string> = {}): Response {
  return Response.json({ error: message }, { status, headers: { ...NO_STORE, ...headers } });
}

/** A target as the control API shows it. */
export interface TargetView {
  /** The address: what identifies the target (`127.0.0.1:6380`). */
  target: string;
  /** The configured name (the hostname form for a resolved target, else the address). */
  name: string;
  state: AdminState;
  /** From health checks and failed connects, apart from the admin state. */
  health: "up" | "down";
  /** The weight in use (a runtime one, or the file's). */
  weight: number;
  /** The file's weight. */
  configuredWeight: number;
  /** Sessions on it now (connecting ones included). */
  active: number;
  /** Sessions connected to it since start. */
  sessions: number;
  backup: boolean;
  maxConnections: number;
}

export interface BackendView {
  name: string;
  targets: TargetView[];
}

export function targetView(target: TargetState): TargetView {
  return {
    target: target.key,
    name: target.name,
    state: target.state,
    health: target.healthy ? "up" : "down",
    weight: target.weight,
    configuredWeight: target.configuredWeight,
    active: target.active,
    sessions: target.sessions,
    backup: target.backup,
    maxConnections: target.maxConnections,
  };
}

function backendView(backend: Backend): BackendView {
  return { name: backend.name, targets: backend.targets.map(targetView) };
}

/** What a state change answers: one entry per target it changed. */
export interface StateResult {
  backend: string;
  targets: {
    target: string;
    state: AdminState;
    was: AdminState;
    /** Sessions still on the target when the answer was made. */
    active: number;
    /** maint with close: sessions closed. */
    closed?: number;
    /** drain with wait: the target had no session left before the wait ran out. */
    drained?: boolean;
  }[];
  /** drain with wait: how long the answer waited. */
  waitedMs?: number;
}

export interface WeightResult {
  backend: string;
  targets: { target: string; weight: number; was: number }[];
}

export interface ControlContext {
  router: RouterView;
  auth: AdminAuth;
  /** The `admin`-tagged logger of the audit lines. */
  log: Logger;
  /** Who sent the request, for the audit line (`127.0.0.1:5123`, `unix`). */
  who: string;
  /** Lifts the server's idle timeout for this request (a drain that waits). */
  holdOpen: () => void;
  /** Starts an upgrade in place (workers/upgrade.ts); absent where none can run (a worker, the library). */
  upgrade?: () => void;
}

/** Answers a request under /api/. Never throws. */
export async function control(request: Request, context: ControlContext): Promise<Response> {
  try {
    return await route(request, context);
  } catch (error) {
    context.log.warn(`${request.method} ${new URL(request.url).pathname}: ${(error as Error).message}`);
    return failure(500, `internal error: ${(error as Error).message}`);
  }
}

const WRITE_ALLOW = { allow: "POST" };
const READ_ALLOW = { allow: "GET, HEAD" };

async function route(request: Request, context: ControlContext): Promise<Response> {
  const parts = new URL(request.url).pathname.split("/").slice(1); // "", api, backends, …
  if (parts.at(-1) === "") parts.pop(); // a trailing slash
  let names: string[];
  try {
    names = parts.map((part) => decodeURIComponent(part));
  } catch {
    return failure(400, "the path is not valid percent-encoding");
  }
  const [api, backends, backendName, targets, targetId, action, ...rest] = names;
  if (api === "api" && backends === "upgrade" && names.length === 2) return startUpgrade(request, context);
  if (api !== "api" || backends !== "backends" || rest.length > 0 || (targets !== undefined && targets !== "targets")) {
    return failure(404, "not found: try GET /api/backends, POST /api/backends/{backend}/targets/{target}/state or …/weight");
  }
  const read = request.method === "GET" || request.method === "HEAD";
  if (action === undefined) {
    if (targets !== undefined) return failure(404, "not found: name the target and an action (…/targets/{target}/state or …/weight)");
    if (!read) return failure(405, `${request.method} not allowed here (GET)`, READ_ALLOW);
    const denied = authorize(request, context.auth, false);
    if (denied !== null) return denied;
    if (backendName === undefined) return Response.json({ backends: [...context.router.backends.values()].map(backendView) }, { headers: NO_STORE });
    const backend = findBackend(context.router, backendName);
    return backend instanceof Response ? backend : Response.json(backendView(backend), { headers: NO_STORE });
  }
  if (action !== "state" && action !== "weight") return failure(404, `unknown action "${action}" (state or weight)`);
  if (request.method !== "POST") return failure(405, `${request.method} not allowed here (POST)`, WRITE_ALLOW);
  const denied = authorize(request, context.auth, true);
  if (denied !== null) return denied;
  const body = await readBody(request);
  if (body instanceof Response) return body;
  const backend = findBackend(context.router, backendName!);
  if (backend instanceof Response) return backend;
  const found = backend.find(targetId!);
  if (found.length === 0) {
    const known = backend.targets.map((target) => target.key).join(", ");
    return failure(404, `unknown target "${targetId}" in backend "${backend.name}" (targets: ${known || "none"})`);
  }
  if (action === "weight") return setWeight(backend, found, body, context);
  return await setState(backend, found, body, context, request.signal);
}

/**
 * POST /api/upgrade: starts an upgrade in place and answers 202 at once. The outcome is in the
 * log: this admin listener closes during the handover, and the new process's opens.
 */
function startUpgrade(request: Request, context: ControlContext): Response {
  if (request.method !== "POST") return failure(405, `${request.method} not allowed here (POST)`, WRITE_ALLOW);
  const denied = authorize(request, context.auth, true);
  if (denied !== null) return denied;
  if (context.upgrade === undefined) return failure(409, "this process cannot upgrade itself (a worker: signal its supervisor)");
  context.log.info(`upgrade requested by ${context.who}`);
  context.upgrade();
  return Response.json({ upgrade: "started", pid: process.pid }, { status: 202, headers: NO_STORE });
}

function findBackend(router: RouterView, name: string): Backend | Response {
  const backend = router.backends.get(name);
  if (backend !== undefined) return backend;
  return failure(404, `unknown backend "${name}" (backends: ${[...router.backends.keys()].join(", ") || "none"})`);
}

/** A request body as text, at most DEFAULTS.admin.maxBody bytes (read no further); else the 413 answer. */
export async function readText(request: Request): Promise<string | Response> {
  const limit = DEFAULTS.admin.maxBody;
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limit) return failure(413, `the body is over ${limit} bytes`);
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body !== null) {
    for await (const chunk of request.body) {
      size += chunk.length;
      if (size > limit) return failure(413, `the body is over ${limit} bytes`);
      chunks.push(chunk);
    }
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** The JSON object of a request body (see readText); else the 4xx answer. */
async function readBody(request: Request): Promise<Record<string, unknown> | Response> {
  const text = await readText(request);
  if (text instanceof Response) return text;
  if (text.trim() === "") return failure(400, 'expected a JSON object as the body, e.g. {"state":"drain"}');
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    return failure(400, `the body is not JSON: ${(error as Error).message}`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) return failure(400, 'expected a JSON object as the body, e.g. {"state":"drain"}');
  return data as Record<string, unknown>;
}

function unknownKeys(body: Record<string, unknown>, known: string[]): Response | null {
  const extra = Object.keys(body).find((key) => !known.includes(key));
  return extra === undefined ? null : failure(400, `unknown field "${extra}" (expected ${known.join(", ")})`);
}

const show = (value: unknown) => (value === undefined ? "nothing" : JSON.stringify(value));

async function setState(
  backend: Backend,
  found: TargetState[],
  body: Record<string, unknown>,
  context: ControlContext,
  signal: AbortSignal,
): Promise<Response> {
  const bad = unknownKeys(body, ["state", "wait", "close"]);
  if (bad !== null) return bad;
  const state = body.state as AdminState;
  if (!ADMIN_STATES.includes(state)) return failure(400, `state: expected "ready", "drain" or "maint", got ${show(body.state)}`);
  let wait = 0;
  if (body.wait !== undefined) {
    if (state !== "drain") return failure(400, 'wait: only with "state": "drain"');
    if (typeof body.wait !== "string") return failure(400, `wait: expected a duration such as "30s", got ${show(body.wait)}`);
    try {
      wait = parseDuration(body.wait);
    } catch (error) {
      return failure(400, `wait: ${(error as Error).message}`);
    }
    if (wait > DEFAULTS.admin.maxWait) return failure(400, `wait: at most ${formatDuration(DEFAULTS.admin.maxWait)}`);
  }
  if (body.close !== undefined) {
    if (state !== "maint") return failure(400, 'close: only with "state": "maint"');
    if (typeof body.close !== "boolean") return failure(400, `close: expected true or false, got ${show(body.close)}`);
  }
  const result: StateResult = { backend: backend.name, targets: [] };
  for (const target of found) {
    const was = backend.setState(target, state);
    const entry: StateResult["targets"][number] = { target: target.key, state, was, active: target.active };
    if (state === "maint" && body.close === true) entry.closed = closeSessions(context.router, target);
    entry.active = target.active;
    result.targets.push(entry);
    const extra = entry.closed !== undefined ? `, closed ${entry.closed} session${entry.closed === 1 ? "" : "s"}` : "";
    const message = `${context.who} set ${backend.name}/${target.key} ${state} (was ${was})${extra}`;
    context.log.info(event(message, { client: context.who, backend: backend.name, target: target.key, state, was, closed: entry.closed ?? null }));
  }
  if (wait > 0) {
    context.holdOpen();
    const started = Date.now();
    await drained(found, started + wait, signal);
    result.waitedMs = Date.now() - started;
    for (const [i, target] of found.entries()) {
      result.targets[i]!.active = target.active;
      result.targets[i]!.drained = target.active === 0;
    }
  }
  return Response.json(result, { headers: NO_STORE });
}

/** Resolves once every target has no session, its state is no longer drain, the deadline passes, or the client leaves. */
async function drained(targets: TargetState[], deadline: number, signal: AbortSignal): Promise<void> {
  while (!signal.aborted && Date.now() < deadline && targets.some((target) => target.active > 0 && target.state === "drain")) {
    await Bun.sleep(Math.min(20, Math.max(1, deadline - Date.now())));
  }
}

/** Closes the sessions counted on `target` (reason target_maint); returns how many. */
function closeSessions(router: RouterView, target: TargetState): number {
  return router.closeSessions(target, "target_maint", `${target.key} set to maint`);
}

function setWeight(backend: Backend, found: TargetState[], body: Record<string, unknown>, context: ControlContext): Response {
  const bad = unknownKeys(body, ["weight"]);
  if (bad !== null) return bad;
  const weight = body.weight;
  if (typeof weight !== "number" || !Number.isInteger(weight) || weight < 0 || weight > MAX_WEIGHT) {
    return failure(400, `weight: expected a whole number from 0 to ${MAX_WEIGHT}, got ${show(weight)}`);
  }
  const result: WeightResult = { backend: backend.name, targets: [] };
  for (const target of found) {
    const was = backend.setWeight(target, weight);
    result.targets.push({ target: target.key, weight, was });
    const message = `${context.who} set ${backend.name}/${target.key} weight ${weight} (was ${was})`;
    context.log.info(event(message, { client: context.who, backend: backend.name, target: target.key, weight, was }));
  }
  return Response.json(result, { headers: NO_STORE });
}
