/**
 * `tcprouter ctl`: the admin listener's control API (observe/control.ts) from the command line.
 *
 *   tcprouter ctl targets [BACKEND]
 *   tcprouter ctl drain BACKEND TARGET [--wait 30s]
 *   tcprouter ctl maint BACKEND TARGET [--close]
 *   tcprouter ctl ready BACKEND TARGET
 *   tcprouter ctl weight BACKEND TARGET N
 *   tcprouter ctl upgrade
 *
 * It prints a table (or the admin's JSON answer with --json) and exits 0; any failure is one
 * line on stderr and exit 1: the admin cannot be reached, it refused the token, the backend or
 * target is unknown, or a drain with --wait ran out with sessions still open.
 */
import { readFileSync } from "node:fs";
import { defineCommand, type ArgsDef } from "citty";
import { readToken } from "../config/files.ts";
import { DEFAULTS } from "../config/defaults.ts";
import { AddressError, formatAddress, parseAddress, type Address } from "../util/address.ts";
import { parseDuration } from "../util/duration.ts";
import type { BackendView, StateResult, WeightResult } from "../observe/control.ts";
import type { MergedBackends, WorkerResult } from "../workers/control.ts";
import { UsageError } from "./args.ts";
import { errorText } from "../util/errors.ts";

const ACTIONS = ["targets", "drain", "maint", "ready", "weight", "upgrade"] as const;
type Action = (typeof ACTIONS)[number];

export const ctlArgs = {
  action: { type: "positional", required: true, description: `What to do: ${ACTIONS.join(", ")}` },
  backend: { type: "positional", required: false, description: "The backend's name (targets: optional, all backends without it)" },
  target: { type: "positional", required: false, description: "The target's address (127.0.0.1:6380, unix:/path) or its configured name" },
  weight: { type: "positional", required: false, description: "weight: the new weight, 0 to 256 (0 = no new sessions)" },
  admin: {
    type: "string",
    default: DEFAULTS.admin.ctlAddress,
    description: "The admin listener: host:port, https://host:port (an admin with [admin] tls) or unix:/path",
  },
  ca: { type: "string", description: "https: the CA bundle (PEM) the admin's certificate is verified against (else the system's)" },
  cert: { type: "string", description: "https: a client certificate (PEM) for an admin that asks for one (mTLS); with --key" },
  key: { type: "string", description: "https: the client certificate's key (PEM)" },
  "token-file": { type: "string", description: `File with the admin token (else $${DEFAULTS.admin.tokenEnv})` },
  wait: { type: "string", description: 'drain: answer once the target has no session left, or after this long ("30s"; exit 1 if some are left)' },
  close: { type: "boolean", default: false, description: "maint: also close the target's open sessions" },
  json: { type: "boolean", default: false, description: "Print the admin's JSON answer instead of a table" },
} as const satisfies ArgsDef;

export default defineCommand({
  meta: { name: "ctl", description: "Drain, disable (maint), enable and weight targets, or upgrade in place, through the admin listener" },
  args: ctlArgs,
  async run({ args }) {
    const action = args.action as Action;
    if (!ACTIONS.includes(action)) throw new UsageError(`unknown action "${args.action}" (use ${ACTIONS.join(", ")})`);
    const admin = adminAddress(args.admin, args);
    const token = tokenOf(args["token-file"]);
    if (action === "upgrade") {
      const answer = await call(admin, "/api/upgrade", {}, token, 0);
      if (args.json) process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
      else process.stdout.write(`upgrade started by pid ${answer.pid}: the new process takes over (see its log)\n`);
      return;
    }
    if (action !== "targets" && (!args.backend || !args.target)) {
      throw new UsageError(`${action} needs a backend and a target, e.g. tcprouter ctl ${action} redis 127.0.0.1:6380${action === "weight" ? " 3" : ""}`);
    }
    if (args.wait !== undefined && action !== "drain") throw new UsageError("--wait: only with drain");
    if (args.close && action !== "maint") throw new UsageError("--close: only with maint");
    let body: Record<string, unknown> | null = null;
    let wait = 0;
    if (action === "drain" || action === "maint" || action === "ready") {
      body = { state: action };
      if (args.wait !== undefined) {
        try {
          wait = parseDuration(args.wait);
        } catch (error) {
          throw new UsageError(`--wait: ${(error as Error).message}`);
        }
        body.wait = args.wait;
      }
      if (args.close) body.close = true;
    } else if (action === "weight") {
      if (args.weight === undefined || !/^\d+$/.test(args.weight))
        throw new UsageError(`weight: expected a whole number from 0 to 256, got ${args.weight ?? "nothing"}`);
      body = { weight: Number(args.weight) };
    }
    const path =
      action === "targets"
        ? `/api/backends${args.backend ? `/${encodeURIComponent(args.backend)}` : ""}`
        : `/api/backends/${encodeURIComponent(args.backend!)}/targets/${encodeURIComponent(args.target!)}/${action === "weight" ? "weight" : "state"}`;
    const answer = await call(admin, path, body, token, wait);
    if (args.json) {
      process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
    } else if (action === "targets") {
      const backends =
        "backends" in answer ? (answer as { backends: BackendView[] | MergedBackends["backends"] }).backends : [answer as unknown as BackendView];
      process.stdout.write(targetsTable(backends));
    }
    const problems = results(answer, action, args.json ? null : (line) => process.stdout.write(`${line}\n`));
    if (problems.length > 0) throw new Error(problems.join("; "));
  },
});

/** Where the admin is, and the TLS options of fetch for an `https://` one (its files read now). */
interface Admin {
  address: Address;
  tls: { ca?: string; cert?: string; key?: string } | null;
}

function adminAddress(text: string, flags: { ca?: string; cert?: string; key?: string }): Admin {
  const https = /^https:\/\//i.test(text);
  let address: Address;
  try {
    address = parseAddress(text.replace(/^https?:\/\//i, "").replace(/\/$/, ""));
  } catch (error) {
    if (error instanceof AddressError) throw new UsageError(`--admin: ${error.message}`);
    throw error;
  }
  const given = (["ca", "cert", "key"] as const).filter((flag) => flags[flag] !== undefined);
  if (!https) {
    if (given.length > 0) throw new UsageError(`--${given[0]}: only with an https:// admin (--admin https://host:port)`);
    return { address, tls: null };
  }
  if (address.kind === "unix") throw new UsageError("--admin: https:// is for a host:port admin; a unix socket admin is plain HTTP");
  if ((flags.cert === undefined) !== (flags.key === undefined)) throw new UsageError("--cert and --key go together (a client certificate and its key)");
  const tls: NonNullable<Admin["tls"]> = {};
  for (const flag of given) {
    try {
      tls[flag] = readFileSync(flags[flag]!, "utf8");
    } catch (error) {
      throw new UsageError(`--${flag}: cannot read ${flags[flag]}: ${errorText(error, { ENOENT: "no such file" }, "message")}`);
    }
  }
  return { address, tls };
}

/** The token from --token-file, else the environment; null = send none. */
function tokenOf(file: string | undefined): string | null {
  if (file !== undefined) {
    try {
      return readToken(file);
    } catch (error) {
      throw new UsageError(`--token-file: ${(error as Error).message}`);
    }
  }
  const value = process.env[DEFAULTS.admin.tokenEnv]?.trim() ?? "";
  return value === "" ? null : value;
}

/** One request to the admin; its JSON answer, or an Error with a one-line message. */
async function call(to: Admin, path: string, body: Record<string, unknown> | null, token: string | null, wait: number): Promise<Record<string, unknown>> {
  const admin = to.address;
  const where = `${to.tls === null ? "" : "https://"}${formatAddress(admin)}`;
  const headers: Record<string, string> = body === null ? {} : { "content-type": "application/json" };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch(admin.kind === "unix" ? `http://localhost${path}` : `${to.tls === null ? "http://" : ""}${where}${path}`, {
      method: body === null ? "GET" : "POST",
      headers,
      ...(body === null ? {} : { body: JSON.stringify(body) }),
      ...(admin.kind === "unix" ? { unix: admin.path } : {}),
      ...(to.tls === null ? {} : { tls: to.tls }),
      signal: AbortSignal.timeout(10_000 + wait),
    });
  } catch (error) {
    throw new Error(`cannot reach the admin at ${where}: ${reachError(error as Error & { code?: string })}`);
  }
  const text = await response.text();
  let answer: Record<string, unknown>;
  try {
    answer = JSON.parse(text);
  } catch {
    throw new Error(
      `the admin at ${where} answered ${response.status} ${text.trim().slice(0, 80) ? `"${text.trim().split("\n")[0]!.slice(0, 80)}"` : "with nothing"}, not JSON: is it tcprouter's admin listener, and one that has the control API?`,
    );
  }
  if (response.status === 401) {
    const how = `--token-file or $${DEFAULTS.admin.tokenEnv}`;
    throw new Error(
      token === null
        ? `the admin at ${where} needs a token (401): give it with ${how}`
        : `the admin at ${where} refused the token (401: ${answer.error}); check ${how}`,
    );
  }
  if (response.status === 403) throw new Error(`the admin at ${where} refused (403): ${answer.error}`);
  // With workers a change answers per worker; a status shared by all of them (404, 400) has one error.
  // With workers a change answers per worker: 502 when they differ (each result is printed); a
  // status they all gave (404 unknown target, 400) comes with their one error.
  if (!response.ok && (response.status !== 502 || !Array.isArray(answer.workers))) throw new Error(String(answer.error ?? `status ${response.status}`));
  return answer;
}

function reachError(error: Error & { code?: string }): string {
  if (error.name === "TimeoutError") return "no answer in time";
  switch (error.code) {
    case "ConnectionRefused":
    case "ECONNREFUSED":
      return errorText(error);
    case "ENOENT":
      return "no such socket";
    case "FailedToOpenSocket":
      return "cannot open the socket";
    case "ECONNRESET":
      return "the connection was closed without an answer (is it an HTTP admin listener?)";
    default:
      return error.message.replace(/ For more information, pass .*$/, "");
  }
}

/**
 * Prints one line per target changed (per worker with --workers) and returns the problems:
 * workers that failed, targets a drain --wait left with sessions.
 */
function results(answer: Record<string, unknown>, action: Action, print: ((line: string) => void) | null): string[] {
  if (action === "targets") return [];
  const problems: string[] = [];
  const workers = Array.isArray(answer.workers) ? (answer.workers as WorkerResult[]) : null;
  const each = workers ?? [{ worker: 0, ok: true, status: 200, result: answer }];
  for (const one of each) {
    const prefix = workers === null ? "" : `worker ${one.worker}: `;
    if (!one.ok) {
      problems.push(`${prefix}${one.error}`);
      print?.(`${prefix}failed: ${one.error}`);
      continue;
    }
    if (action === "weight") {
      const result = one.result as WeightResult;
      for (const t of result.targets) print?.(`${prefix}${result.backend}/${t.target}: weight ${t.was} → ${t.weight}`);
      continue;
    }
    const result = one.result as StateResult;
    for (const t of result.targets) {
      let line = `${prefix}${result.backend}/${t.target}: ${t.was} → ${t.state}`;
      if (t.closed !== undefined) line += `, closed ${t.closed} session${t.closed === 1 ? "" : "s"}`;
      if (t.drained === true) line += `, no session left after ${waited(result.waitedMs ?? 0)}`;
      else if (t.drained === false) {
        line += `, ${t.active} session${t.active === 1 ? "" : "s"} still open after ${waited(result.waitedMs ?? 0)}`;
        problems.push(`${prefix}${result.backend}/${t.target}: ${t.active} session${t.active === 1 ? "" : "s"} still open after the wait`);
      } else if (t.active > 0 && t.state !== "ready") line += ` (${t.active} open)`;
      print?.(line);
    }
  }
  return problems;
}

function waited(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** The targets of every backend as an aligned table. */
export function targetsTable(
  backends: { name: string; targets: { target: string; name: string; state: string; health: string; weight: number; active: number; sessions: number }[] }[],
): string {
  const rows = [["BACKEND", "TARGET", "STATE", "HEALTH", "WEIGHT", "ACTIVE", "SESSIONS"]];
  const named = backends.some((backend) => backend.targets.some((target) => target.name !== target.target));
  if (named) rows[0]!.splice(2, 0, "NAME");
  for (const backend of backends) {
    for (const t of backend.targets) {
      const row = [backend.name, t.target, t.state, t.health, String(t.weight), String(t.active), String(t.sessions)];
      if (named) row.splice(2, 0, t.name);
      rows.push(row);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")).join("\n") + "\n";
}
