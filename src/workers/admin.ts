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
 *   /api/…         the control API, relayed to every worker (workers/control.ts)
 */
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { formatAddress, type Address } from "../util/address.ts";
import {
  clientOf,
  serveAdmin,
  type AdminHttpServer,
  type BackendStatus,
  type HistorySample,
  type ListenerStatus,
  type Status,
  type TargetStatus,
} from "../observe/admin.ts";
import { OPEN_READS, type AdminAuth } from "../observe/control.ts";
import { answer } from "../observe/endpoints.ts";
import { controlRelay } from "./control.ts";
import type { Logger } from "../util/log.ts";
import type { Stats } from "../proxy/handle.ts";
import { mergeSources, type SourceEntries } from "../backend/sources/all.ts";

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

/** What the supervisor's /status returns: the status page's fields summed, and each worker's own. */
export interface MergedStatus extends Status {
  workersRunning: number;
  workersUnreachable: number;
  workers: { worker: number; pid: number; status: Status }[];
}

const STARTED_AT = new Date(performance.timeOrigin);

/** Serves the public admin address in the supervisor. Throws ListenError when it cannot be bound. */
export function startSupervisorAdmin(options: SupervisorAdminOptions): SupervisorAdmin {
  const address = options.listen;
  const log = options.logger;

  const auth = options.auth ?? OPEN_READS;
  const relay = controlRelay({ workers: options.workers, auth, logger: log, timeout: WORKER_TIMEOUT_MS });
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

  /** The workers' /metrics, merged, with the supervisor's own worker series. */
  const metrics = async (): Promise<string> => {
    const { live, answered, unreachable } = await ask("/metrics", async (response) => {
      if (!response.ok) throw new Error(`status ${response.status}`);
      return await response.text();
    });
    const text = mergeMetrics(answered.map(({ worker, value }) => ({ worker: worker.index, text: value })));
    return `${text}${supervisorSeries(live, options.restarts(), unreachable)}\n`;
  };

  /** Ready when every worker is. */
  const readiness = async () => {
    if (options.stopping()) return { ready: false, reason: "draining" };
    const { answered } = await ask("/readyz", async (response) => response.status === 200);
    const ready = answered.filter((answer) => answer.value).length;
    return { ready: ready === options.count, reason: `${ready}/${options.count} workers ready` };
  };

  /** The workers' /status, merged. */
  const status = async (history: boolean) => {
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
    return merged;
  };

  const fetchHandler = (request: Request, server: AdminHttpServer): Promise<Response> =>
    answer(
      request,
      {
        metrics,
        readiness,
        status,
        api: (apiRequest, path) => relay.handle(apiRequest, clientOf(server, apiRequest), path, () => server.timeout(apiRequest, 0)),
      },
      auth,
    );
  const { server, bound } = serveAdmin(address, fetchHandler, log);
  return {
    url: bound.kind === "tcp" ? `http://${formatAddress(bound)}/` : `unix://${bound.path}`,
    replay: relay.replay,
    async stop() {
      await server.stop(true);
    },
  };
}

/** The supervisor's own series: workers running, restarted, and not answering this scrape. */
function supervisorSeries(live: number, restarts: number, unreachable: number): string {
  return [
    "# HELP tcprouter_workers Worker processes by state.",
    "# TYPE tcprouter_workers gauge",
    `tcprouter_workers{state="running"} ${live}`,
    "# HELP tcprouter_worker_restarts_total Workers restarted after they died.",
    "# TYPE tcprouter_worker_restarts_total counter",
    `tcprouter_worker_restarts_total ${restarts}`,
    "# HELP tcprouter_workers_unreachable Running workers that did not answer this scrape.",
    "# TYPE tcprouter_workers_unreachable gauge",
    `tcprouter_workers_unreachable ${unreachable}`,
  ].join("\n");
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
  const statuses = answers.map(({ status }) => status);
  const totals = {} as Stats;
  for (const status of statuses) sumInto(totals as unknown as Record<string, unknown>, status.totals as unknown as Record<string, unknown>);
  const cpu = process.cpuUsage();
  const rssBytes = statuses.reduce((sum, status) => sum + status.process.rssBytes, process.memoryUsage.rss());
  const cpuSeconds = statuses.reduce((sum, status) => sum + status.process.cpuSeconds, (cpu.user + cpu.system) / 1e6);
  const ready = !context.stopping && answers.length === context.count && answers.every(({ status }) => status.ready);
  const merged: MergedStatus = {
    version: pkg.version,
    time: new Date(now).toISOString(),
    startedAt: STARTED_AT.toISOString(),
    uptimeSeconds: Math.round((now - STARTED_AT.getTime()) / 100) / 10,
    ready,
    draining: context.stopping || answers.some(({ status }) => status.draining),
    totals,
    listeners: mergeListeners(statuses),
    backends: mergeBackendStatus(statuses),
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
/** Listeners by name, their counters summed over the workers. */
function mergeListeners(statuses: readonly Status[]): ListenerStatus[] {
  const listeners = new Map<string, ListenerStatus>();
  for (const listener of statuses.flatMap((status) => status.listeners)) {
    const known = listeners.get(listener.name);
    if (known === undefined) listeners.set(listener.name, { ...listener });
    else sumInto(known as unknown as Record<string, unknown>, listener as unknown as Record<string, unknown>);
  }
  return [...listeners.values()];
}

/**
 * Backends by name: each target's counts summed, down as soon as one worker's checks say so,
 * its admin state "mixed" when the workers disagree; each target source merges its own fields.
 */
function mergeBackendStatus(statuses: readonly Status[]): BackendStatus[] {
  const backends = new Map<string, { name: string; targets: Map<string, TargetStatus>; sources: SourceEntries }>();
  for (const backend of statuses.flatMap((status) => status.backends)) {
    let known = backends.get(backend.name);
    if (known === undefined) backends.set(backend.name, (known = { name: backend.name, targets: new Map(), sources: {} }));
    mergeSources(known.sources, backend);
    for (const target of backend.targets) {
      const seen = known.targets.get(target.target);
      if (seen === undefined) known.targets.set(target.target, { ...target });
      else {
        seen.active += target.active;
        seen.sessions += target.sessions;
        seen.connectFailures += target.connectFailures;
        seen.healthy &&= target.healthy;
        if (seen.state !== target.state) seen.state = "mixed";
      }
    }
  }
  return [...backends.values()].map(({ name, targets, sources }): BackendStatus => ({ name, targets: [...targets.values()], ...sources }));
}

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
