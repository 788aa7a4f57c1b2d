/**
 * HTTP health checks (`type = "http"`), for agents that answer for a node: Patroni's
 * `GET /primary` on 8008 is 200 on the leader and 503 elsewhere. One request per probe, no
 * keep-alive, no redirects followed; the probe passes when the status is one of `status` and,
 * with `body`, the body contains it. The probe's deadline aborts a request still running.
 */
import { formatHostPort, type Address } from "../../util/address.ts";
import type { HttpCheck } from "../../config/types.ts";
import type { CheckTls, Probe } from "./checker.ts";
import { errorCode, errorText, firstLine } from "../../util/errors.ts";

type Finish = (probe: Probe, passed: boolean, reason: string) => void;

/** Starts the request of one probe; `finish` gets its result once. Never throws or rejects. */
export function httpProbe(probe: Probe, address: Address, http: HttpCheck, tls: CheckTls | null, finish: Finish): void {
  const abort = new AbortController();
  probe.abort = abort;
  const scheme = tls === null ? "http" : "https";
  const authority = address.kind === "unix" ? "localhost" : formatHostPort(address.host, address.port);
  const init: RequestInit & { unix?: string; tls?: Record<string, unknown> } = {
    method: http.method,
    signal: abort.signal,
    keepalive: false,
    redirect: "manual",
    headers: { host: http.host ?? authority, connection: "close", "user-agent": "tcprouter-health" },
  };
  if (address.kind === "unix") init.unix = address.path;
  if (tls !== null)
    init.tls = { rejectUnauthorized: tls.rejectUnauthorized, ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.serverName ? { serverName: tls.serverName } : {}) };
  fetch(`${scheme}://${authority}${http.path}`, init).then(
    (response) => judge(probe, response, http, finish),
    (error: unknown) => finish(probe, false, requestFailure(error)),
  );
}

async function judge(probe: Probe, response: Response, http: HttpCheck, finish: Finish): Promise<void> {
  try {
    if (!http.status.includes(response.status)) {
      void response.body?.cancel().catch(() => {});
      return finish(probe, false, `HTTP status ${response.status} (expected ${http.status.join(" or ")})`);
    }
    if (http.body === null) {
      void response.body?.cancel().catch(() => {});
      return finish(probe, true, "");
    }
    const body = await response.text();
    if (body.includes(http.body)) finish(probe, true, "");
    else finish(probe, false, `HTTP body does not contain ${JSON.stringify(http.body)}`);
  } catch (error) {
    finish(probe, false, requestFailure(error));
  }
}

function requestFailure(error: unknown): string {
  const name = (error as { name?: string } | null)?.name;
  if (name === "AbortError") return "timeout";
  const code = errorCode(error);
  if (code === "ConnectionRefused" || code === "ECONNREFUSED") return errorText(error);
  return `HTTP request failed (${code ?? firstLine(error)})`;
}
