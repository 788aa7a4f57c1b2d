/**
 * The admin endpoints with `--workers` > 1. Each worker serves its own admin (admin.ts) on an
 * internal unix socket, `${tmpdir}/tcprouter-${supervisorPid}-worker-${n}.sock`, named to it by
 * the supervisor in TCPROUTER_WORKER_ADMIN and removed when it exits. The supervisor serves the
 * public admin address and, per request, asks every live worker over its socket (1 s timeout; a
 * worker that does not answer is skipped and counted in `tcprouter_workers_unreachable`):
 *
 *   GET /metrics   every worker's samples with a `worker="n"` label, each family's HELP/TYPE
 *                  once with all workers' samples under it; plus the supervisor's own gauges
 *   GET /healthz   200 while the supervisor runs
 *   GET /readyz    200 when every worker answers ready; 503 while stopping or otherwise
 *   GET /status    the workers' statuses summed (what the status page reads), and each of them
 *                  under `workers`
 *   GET /          the status page, against the summed /status
 *   /api/…         the control API (observe/control.ts), checked for the token here and then sent
 *                  to every worker (with the client's address, for their audit lines): a change
 *                  answers one result per worker, `{ workers: [{ worker: 1, ok: true, … }] }`;
 *                  GET /api/backends sums the workers' views. Changes are remembered and applied
 *                  again to a worker restarted later, so every worker keeps the same states.
 */
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { formatAddress, type Address } from "../util/address.ts";
import {
  CLIENT_HEADER,
  clientOf,
  serveAdmin,
  type AdminHttpServer,
  type BackendStatus,
  type HistorySample,
  type ListenerStatus,
  type Status,
  type TargetStatus,
} from "../observe/admin.ts";
import { authorize, failure, OPEN_READS, readText, type AdminAuth, type BackendView, type TargetView } from "../observe/control.ts";
import { DEFAULTS } from "../config/defaults.ts";
import { parseDuration } from "../util/duration.ts";
import type { Logger } from "../util/log.ts";
import { CONTENT_TYPE } from "../observe/metrics.ts";
import type { Stats } from "../proxy/router.ts";
import { STATUS_PAGE } from "../observe/status-page.ts";

export const WORKER_ADMIN_ENV = "TCPROUTER_WORKER_ADMIN";

/** How long the supervisor waits for a worker's answer. */
const WORKER_TIMEOUT_MS = 1000;

/** The internal admin socket of worker `index` of the supervisor `supervisorPid`. */
export function workerAdminPath(supervisorPid: number, index: number): string {
  return join(tmpdir(), `tcprouter-${supervisorPid}-worker-${index}.sock`);
}

/** In a worker: the admin socket its supervisor named, or null. Removes the socket on exit. */
export function workerAdminAddress(): Address | null {
  const path = process.env[WORKER_ADMIN_ENV];
  if (path === undefined || path === "") return null;
  rmSync(path, { force: true });
  process.on("exit", () => rmSync(path, { force: true }));
  return { kind: "unix", path };
}

export interface LiveWorker {
  index: number;
  pid: number;
  socket: string;
}

export interface SupervisorAdminOptions {
  listen: Address;
  /** Workers asked for. */
  count: number;
  /** The workers running now. */
  workers: () => LiveWorker[];
  restarts: () => number;
  stopping: () => boolean;
  logger: Logger;
  /** Default: no token (changes answer 403), open reads. */
  auth?: AdminAuth;
}

export interface SupervisorAdmin {
  readonly url: string;
  /** Applies the changes made so far to worker `index` (it was restarted and starts from the file). */
  replay(index: number): Promise<void>;
  stop(): Promise<void>;
}

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

/** What the supervisor's /status returns: the status page's fields summed, and each worker's own. */
export interface MergedStatus extends Status {
  workersRunning: number;
  workersUnreachable: number;
  workers: { worker: number; pid: number; status: Status }[];
}

const NO_STORE = { "cache-control": "no-store" };
const TEXT = { "content-type": "text/plain; charset=utf-8", ...NO_STORE };
const STARTED_AT = new Date(performance.timeOrigin);

/** Serves the public admin address in the supervisor. Throws ListenError when it cannot be bound. */
export function startSupervisorAdmin(options: SupervisorAdminOptions): SupervisorAdmin {
  const address = options.listen;
  const log = options.logger;

  const auth = options.auth ?? OPEN_READS;
  /** With protect_reads the workers want the token for /metrics and /status too. */
  const readHeaders: Record<string, string> = auth.protectReads && auth.token !== null ? { authorization: `Bearer ${auth.token}` } : {};

  /** Asks every live worker for `path`; the answers of those that gave one, in worker order. */
  const ask = async <T>(path: string, read: (response: Response) => Promise<T>) => {
    const live = [...options.workers()].sort((a, b) => a.index - b.index);
    const answers = await Promise.all(
      live.map(async (worker) => {
        try {
          const response = await fetch(`http://localhost${path}`, {
            unix: worker.socket,
            headers: readHeaders,
            signal: AbortSignal.timeout(WORKER_TIMEOUT_MS),
          });
          return { worker, value: await read(response) };
        } catch {
          return null;
        }
      }),
    );
    const answered = answers.filter((answer) => answer !== null);
    return { live: live.length, answered, unreachable: live.length - answered.length };
  };

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

  const controlHandler = async (request: Request, who: string, path: string): Promise<Response> => {
    const write = request.method !== "GET" && request.method !== "HEAD";
    const denied = authorize(request, auth, write);
    if (denied !== null) return denied;
    let body: string | null = null;
    let timeout = WORKER_TIMEOUT_MS;
    if (write) {
      const text = await readText(request);
      if (text instanceof Response) return text;
      body = text;
      timeout += waitOf(body);
    }
    const headers: Record<string, string> = { [CLIENT_HEADER]: who, "content-type": "application/json" };
    const authorization = request.headers.get("authorization");
    if (authorization !== null) headers.authorization = authorization;
    const results = await relay(path, write ? request.method : "GET", body, headers, timeout);
    if (results.length === 0) return failure(503, "no worker is running");
    const statuses = new Set(results.map((result) => result.status));
    const status = statuses.size === 1 && !statuses.has(0) ? results[0]!.status : 502;
    const failed = results.find((result) => !result.ok);
    if (write && results.some((result) => result.ok)) applied.set(path, replayBody(body!));
    if (write) {
      for (const result of results) if (!result.ok) log.warn(`admin: ${request.method} ${path}: worker ${result.worker}: ${result.error}`);
      const error = failed === undefined ? {} : { error: status === 502 ? `worker ${failed.worker}: ${failed.error}` : failed.error };
      return Response.json({ ...error, workers: results }, { status, headers: NO_STORE });
    }
    if (failed !== undefined)
      return Response.json(
        { error: `worker ${failed.worker}: ${failed.error}`, workers: results },
        { status: status === 200 ? 502 : status, headers: NO_STORE },
      );
    const merged = mergeBackends(results);
    const one = !/^\/api\/backends\/?(\?|$)/.test(path); // /api/backends/{name}: that backend's object, as a worker answers
    return Response.json(one ? { ...merged.backends[0], workers: merged.workers } : merged, { headers: NO_STORE });
  };

  const replay = async (index: number) => {
    if (applied.size === 0) return;
    const headers: Record<string, string> = { [CLIENT_HEADER]: "supervisor (replayed to a restarted worker)", "content-type": "application/json" };
    if (auth.token !== null) headers.authorization = `Bearer ${auth.token}`;
    for (const [path, body] of applied) {
      const [result] = await relay(path, "POST", body, headers, WORKER_TIMEOUT_MS, index);
      if (result !== undefined && !result.ok) log.warn(`admin: replaying ${path} to worker ${index}: ${result.error}`);
    }
  };

  const fetchHandler = async (request: Request, server: AdminHttpServer): Promise<Response> => {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/api/")) return controlHandler(request, clientOf(server, request), url.pathname + url.search);
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    if (url.pathname !== "/healthz" && url.pathname !== "/readyz") {
      const denied = authorize(request, auth, false);
      if (denied !== null) return denied;
    }
    switch (url.pathname) {
      case "/metrics": {
        const { live, answered, unreachable } = await ask("/metrics", async (response) => {
          if (!response.ok) throw new Error(`status ${response.status}`);
          return await response.text();
        });
        const text = mergeMetrics(answered.map(({ worker, value }) => ({ worker: worker.index, text: value })));
        const own = [
          "# HELP tcprouter_workers Worker processes by state.",
          "# TYPE tcprouter_workers gauge",
          `tcprouter_workers{state="running"} ${live}`,
          "# HELP tcprouter_worker_restarts_total Workers restarted after they died.",
          "# TYPE tcprouter_worker_restarts_total counter",
          `tcprouter_worker_restarts_total ${options.restarts()}`,
          "# HELP tcprouter_workers_unreachable Running workers that did not answer this scrape.",
          "# TYPE tcprouter_workers_unreachable gauge",
          `tcprouter_workers_unreachable ${unreachable}`,
        ].join("\n");
        return new Response(`${text}${own}\n`, { headers: { "content-type": CONTENT_TYPE, ...NO_STORE } });
      }
      case "/healthz":
        return new Response("ok\n", { headers: TEXT });
      case "/readyz": {
        if (options.stopping()) return new Response("draining\n", { status: 503, headers: TEXT });
        const { answered } = await ask("/readyz", async (response) => response.status === 200);
        const ready = answered.filter((answer) => answer.value).length;
        const ok = ready === options.count;
        return new Response(ok ? "ready\n" : `${ready}/${options.count} workers ready\n`, { status: ok ? 200 : 503, headers: TEXT });
      }
      case "/status": {
        const history = url.searchParams.has("history");
        const { live, answered, unreachable } = await ask(history ? "/status?history" : "/status", async (response) => {
          if (!response.ok) throw new Error(`status ${response.status}`);
          return (await response.json()) as Status;
        });
        const merged = mergeStatus(
          answered.map(({ worker, value }) => ({ worker: worker.index, pid: worker.pid, status: value })),
          { count: options.count, stopping: options.stopping(), history },
        );
        merged.workersRunning = live;
        merged.workersUnreachable = unreachable;
        return Response.json(merged, { headers: NO_STORE });
      }
      case "/":
        return new Response(STATUS_PAGE, { headers: { "content-type": "text/html; charset=utf-8", ...NO_STORE } });
      default:
        return new Response("not found: try /metrics, /healthz, /readyz, /status or /\n", { status: 404 });
    }
  };
  const { server, bound } = serveAdmin(address, fetchHandler, log);
  return {
    url: bound.kind === "tcp" ? `http://${formatAddress(bound)}/` : `unix://${bound.path}`,
    replay,
    async stop() {
      await server.stop(true);
    },
  };
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

/**
 * One exposition from the workers' scrapes: `worker="n"` added to every sample, and each
 * family's HELP/TYPE once, followed by every worker's samples of it (a family must be contiguous).
 */
export function mergeMetrics(scrapes: { worker: number; text: string }[]): string {
  const families = new Map<string, { owner: number; head: string[]; samples: string[] }>();
  for (const { worker, text } of scrapes) {
    let current: { owner: number; head: string[]; samples: string[] } | undefined;
    for (const line of text.split("\n")) {
      if (line === "") continue;
      const comment = /^# (?:HELP|TYPE) (\S+)/.exec(line);
      if (comment !== null) {
        const name = comment[1]!;
        current = families.get(name);
        if (current === undefined) families.set(name, (current = { owner: worker, head: [], samples: [] }));
        if (current.owner === worker) current.head.push(line); // the first worker's HELP/TYPE only
        continue;
      }
      if (line.startsWith("#")) continue;
      if (current === undefined) {
        current = families.get("") ?? { owner: worker, head: [], samples: [] };
        families.set("", current);
      }
      current.samples.push(withWorker(line, worker));
    }
  }
  let out = "";
  for (const { head, samples } of families.values()) {
    for (const line of head) out += `${line}\n`;
    for (const line of samples) out += `${line}\n`;
  }
  return out;
}

function withWorker(line: string, worker: number): string {
  const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0] ?? "";
  const rest = line.slice(name.length);
  const label = `worker="${worker}"`;
  if (rest.startsWith("{}")) return `${name}{${label}}${rest.slice(2)}`;
  if (rest.startsWith("{")) return `${name}{${label},${rest.slice(1)}`;
  return `${name}{${label}}${rest}`;
}

/** The workers' statuses summed: totals, listeners by name, backends and targets by name, history by age. */
export function mergeStatus(
  answers: { worker: number; pid: number; status: Status }[],
  context: { count: number; stopping: boolean; history: boolean },
): MergedStatus {
  const now = Date.now();
  const totals = {} as Stats;
  const listeners = new Map<string, ListenerStatus>();
  const backends = new Map<string, { name: string; targets: Map<string, TargetStatus> }>();
  let rssBytes = process.memoryUsage.rss();
  const cpu = process.cpuUsage();
  let cpuSeconds = (cpu.user + cpu.system) / 1e6;
  for (const { status } of answers) {
    sumInto(totals as unknown as Record<string, unknown>, status.totals as unknown as Record<string, unknown>);
    for (const listener of status.listeners) {
      const known = listeners.get(listener.name);
      if (known === undefined) listeners.set(listener.name, { ...listener });
      else sumInto(known as unknown as Record<string, unknown>, listener as unknown as Record<string, unknown>);
    }
    for (const backend of status.backends) {
      let known = backends.get(backend.name);
      if (known === undefined) backends.set(backend.name, (known = { name: backend.name, targets: new Map() }));
      for (const target of backend.targets) {
        const seen = known.targets.get(target.target);
        if (seen === undefined) known.targets.set(target.target, { ...target });
        else {
          seen.active += target.active;
          seen.sessions += target.sessions;
          seen.connectFailures += target.connectFailures;
          seen.healthy &&= target.healthy; // down as soon as one worker's checks say so
          if (seen.state !== target.state) seen.state = "mixed";
        }
      }
    }
    rssBytes += status.process.rssBytes;
    cpuSeconds += status.process.cpuSeconds;
  }
  const ready = !context.stopping && answers.length === context.count && answers.every(({ status }) => status.ready);
  const merged: MergedStatus = {
    version: pkg.version,
    time: new Date(now).toISOString(),
    startedAt: STARTED_AT.toISOString(),
    uptimeSeconds: Math.round((now - STARTED_AT.getTime()) / 100) / 10,
    ready,
    draining: context.stopping || answers.some(({ status }) => status.draining),
    totals,
    listeners: [...listeners.values()],
    backends: [...backends.values()].map((backend): BackendStatus => ({ name: backend.name, targets: [...backend.targets.values()] })),
    process: { rssBytes, cpuSeconds },
    workersRunning: 0,
    workersUnreachable: 0,
    workers: answers.map(({ worker, pid, status }) => {
      const { history: _, ...own } = status;
      return { worker, pid, status: own };
    }),
  };
  if (context.history) merged.history = mergeHistory(answers.map(({ status }) => status.history ?? []));
  return merged;
}

/** Numbers of `from` added to those of `into` (missing ones start at 0); other fields are left as they are. */
function sumInto(into: Record<string, unknown>, from: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(from)) {
    if (typeof value === "number") into[key] = (typeof into[key] === "number" ? (into[key] as number) : 0) + value;
    else if (!(key in into)) into[key] = value;
  }
}

/** Per-second samples summed by age (the newest of each worker together); `t` from the longest. */
function mergeHistory(histories: HistorySample[][]): HistorySample[] {
  const length = Math.max(0, ...histories.map((history) => history.length));
  const merged: HistorySample[] = [];
  for (let age = length - 1; age >= 0; age--) {
    const sample: HistorySample = { t: 0, activeSessions: 0, totalSessions: 0, bytesUp: 0, bytesDown: 0 };
    for (const history of histories) {
      const own = history[history.length - 1 - age];
      if (own === undefined) continue;
      sample.t = Math.max(sample.t, own.t);
      sample.activeSessions += own.activeSessions;
      sample.totalSessions += own.totalSessions;
      sample.bytesUp += own.bytesUp;
      sample.bytesDown += own.bytesDown;
    }
    merged.push(sample);
  }
  return merged;
}
