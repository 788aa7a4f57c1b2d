/**
 * The control API (observe/control.ts) with `--workers`: the supervisor checks the token, then
 * sends each request to every worker's internal admin socket with the client's address (for the
 * workers' audit lines), and answers one result per worker:
 *
 *   { "workers": [{ "worker": 1, "ok": true, "status": 200, "result": { … } }, …] }
 *
 * with the workers' status when they all gave the same one, else 502 (503: no worker runs).
 * GET /api/backends answers the workers' views summed, and each of them. The changes that
 * reached a worker are remembered (the last of each path) and replayed, in the order they were
 * made, to a worker that starts later, so a restarted worker does not come back with the file's
 * states.
 */
import { CLIENT_HEADER } from "../observe/admin.ts";
import { authorize, failure, readText, type AdminAuth, type BackendView, type TargetView } from "../observe/control.ts";
import { DEFAULTS } from "../config/defaults.ts";
import { parseDuration } from "../util/duration.ts";
import type { Logger } from "../util/log.ts";
import type { LiveWorker } from "./admin.ts";

/** One worker's answer to a relayed control request. */
export interface WorkerResult {
  worker: number;
  ok: boolean;
  /** The worker's HTTP status; 0 when it did not answer. */
  status: number;
  /** Its answer (a change's result), when ok. */
  result?: unknown;
  /** Its error message, or why it did not answer. */
  error?: string;
}

/** What GET /api/backends answers on the supervisor: the workers' views summed, and each of them. */
export interface MergedBackends {
  backends: { name: string; targets: (Omit<TargetView, "state"> & { state: TargetView["state"] | "mixed" })[] }[];
  workers: { worker: number; backends: BackendView[] }[];
}

export interface ControlRelayOptions {
  /** The workers running now. */
  workers: () => LiveWorker[];
  auth: AdminAuth;
  logger: Logger;
  /** How long a worker may take to answer, in ms (a drain's `wait` is added). */
  timeout: number;
}

export interface ControlRelay {
  /**
   * Answers a request under /api/ from `who` (the client's address); `path` with its query.
   * `holdOpen` lifts the server's idle timeout for a drain that waits.
   */
  handle(request: Request, who: string, path: string, holdOpen: () => void): Promise<Response>;
  /** Applies the changes made so far to worker `index` (it has just started). */
  replay(index: number): Promise<void>;
}

const NO_STORE = { "cache-control": "no-store" };

/** The workers' one status when they agree, else 502. */
function commonStatus(results: readonly WorkerResult[]): number {
  const statuses = new Set(results.map((result) => result.status));
  return statuses.size === 1 && !statuses.has(0) ? results[0]!.status : 502;
}

/** A change: every worker's result, and the first failure as the error. */
function writeAnswer(results: WorkerResult[]): Response {
  const status = commonStatus(results);
  const failed = results.find((result) => !result.ok);
  const error = failed === undefined ? {} : { error: status === 502 ? `worker ${failed.worker}: ${failed.error}` : failed.error };
  return Response.json({ ...error, workers: results }, { status, headers: NO_STORE });
}

/** A read: the workers' backends merged (one backend's object for /api/backends/{name}), or the first failure. */
function readAnswer(path: string, results: WorkerResult[]): Response {
  const failed = results.find((result) => !result.ok);
  if (failed !== undefined) {
    const status = commonStatus(results);
    return Response.json({ error: `worker ${failed.worker}: ${failed.error}`, workers: results }, { status: status === 200 ? 502 : status, headers: NO_STORE });
  }
  const merged = mergeBackends(results);
  const one = !/^\/api\/backends\/?(\?|$)/.test(path); // /api/backends/{name}: that backend's object, as a worker answers
  return Response.json(one ? { ...merged.backends[0], workers: merged.workers } : merged, { headers: NO_STORE });
}

export function controlRelay(options: ControlRelayOptions): ControlRelay {
  const { auth, logger: log } = options;
  /** The changes made, by path (the last one of each target's state and weight), to replay on a restarted worker. */
  const applied = new Map<string, string>();

  /** Sends one control request to every live worker (or only `only`); their results in worker order. */
  const relay = async (path: string, method: string, body: string | null, headers: Record<string, string>, timeout: number, only?: number) => {
    const live = [...options.workers()].filter((worker) => only === undefined || worker.index === only).sort((a, b) => a.index - b.index);
    return await Promise.all(
      live.map(async (worker): Promise<WorkerResult> => {
        try {
          const response = await fetch(`http://localhost${path}`, {
            method,
            headers,
            ...(body !== null ? { body } : {}),
            unix: worker.socket,
            signal: AbortSignal.timeout(timeout),
          });
          const answer = (await response.json()) as Record<string, unknown>;
          return response.ok
            ? { worker: worker.index, ok: true, status: response.status, result: answer }
            : { worker: worker.index, ok: false, status: response.status, error: String(answer.error ?? `status ${response.status}`) };
        } catch (error) {
          const why = (error as Error).name === "TimeoutError" ? `no answer within ${timeout} ms` : (error as Error).message;
          return { worker: worker.index, ok: false, status: 0, error: why };
        }
      }),
    );
  };

  const controlHandler = async (request: Request, who: string, path: string, holdOpen: () => void): Promise<Response> => {
    const write = request.method !== "GET" && request.method !== "HEAD";
    const denied = authorize(request, auth, write);
    if (denied !== null) return denied;
    let body: string | null = null;
    let timeout = options.timeout;
    if (write) {
      const text = await readText(request);
      if (text instanceof Response) return text;
      body = text;
      const wait = waitOf(body);
      if (wait > 0) holdOpen();
      timeout += wait;
    }
    // connection: close: a restarted worker has the same socket path, and a pooled connection to the old one would reset.
    const headers: Record<string, string> = { [CLIENT_HEADER]: who, "content-type": "application/json", connection: "close" };
    const authorization = request.headers.get("authorization");
    if (authorization !== null) headers.authorization = authorization;
    const results = await relay(path, write ? request.method : "GET", body, headers, timeout);
    if (results.length === 0) return failure(503, "no worker is running");
    if (!write) return readAnswer(path, results);
    if (results.some((result) => result.ok)) {
      applied.delete(path); // re-inserted last: the replay keeps the order the changes were made in
      applied.set(path, replayBody(body!));
    }
    for (const result of results) if (!result.ok) log.warn(`admin: ${request.method} ${path}: worker ${result.worker}: ${result.error}`);
    return writeAnswer(results);
  };

  const replay = async (index: number) => {
    if (applied.size === 0) return;
    const headers: Record<string, string> = {
      [CLIENT_HEADER]: "supervisor (replayed to a restarted worker)",
      "content-type": "application/json",
      connection: "close",
    };
    if (auth.token !== null) headers.authorization = `Bearer ${auth.token}`;
    for (const [path, body] of applied) {
      const [result] = await relay(path, "POST", body, headers, options.timeout, index);
      if (result !== undefined && !result.ok) log.warn(`admin: replaying ${path} to worker ${index}: ${result.error}`);
    }
  };

  return { handle: controlHandler, replay };
}

/** The `wait` of a drain request body, in ms (0 when there is none or it is not valid: the worker says so). */
function waitOf(body: string): number {
  try {
    const wait = (JSON.parse(body) as { wait?: unknown }).wait;
    return typeof wait === "string" ? Math.min(parseDuration(wait), DEFAULTS.admin.maxWait) : 0;
  } catch {
    return 0;
  }
}

/** A change as a restarted worker gets it: the state or weight only (it has no sessions to wait for or close). */
function replayBody(body: string): string {
  try {
    const { wait: _, close: __, ...rest } = JSON.parse(body) as Record<string, unknown>;
    return JSON.stringify(rest);
  } catch {
    return body;
  }
}

/** The workers' backend views summed: sessions added, health down when one says so, state "mixed" when they disagree. */
function mergeBackends(results: WorkerResult[]): MergedBackends {
  const merged = new Map<string, MergedBackends["backends"][number]>();
  const workers: MergedBackends["workers"] = [];
  for (const result of results) {
    const answer = result.result as { backends: BackendView[] } | BackendView;
    const backends = "backends" in answer ? answer.backends : [answer]; // GET /api/backends/{name}: one
    workers.push({ worker: result.worker, backends });
    for (const backend of backends) {
      let known = merged.get(backend.name);
      if (known === undefined) merged.set(backend.name, (known = { name: backend.name, targets: [] }));
      for (const target of backend.targets) {
        const seen = known.targets.find((t) => t.target === target.target);
        if (seen === undefined) {
          known.targets.push({ ...target });
          continue;
        }
        seen.active += target.active;
        seen.sessions += target.sessions;
        if (target.health === "down") seen.health = "down";
        if (seen.state !== target.state) seen.state = "mixed";
      }
    }
  }
  return { backends: [...merged.values()], workers };
}
