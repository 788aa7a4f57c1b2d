/**
 * The admin endpoints, once: `/metrics`, `/healthz`, `/readyz`, `/status`, the status page `/`
 * and the control API under `/api/`. A single process (admin.ts) and the supervisor of
 * `--workers` (workers/admin.ts, which merges its workers' answers) serve the same table and
 * differ only in where the answers come from (`EndpointSource`): the paths, methods, the token
 * rules and every error body are here.
 */
import { CONTENT_TYPE } from "./prometheus.ts";
import { STATUS_PAGE } from "./status-page.ts";
import { authorize, failure, type AdminAuth } from "./control.ts";

const NO_STORE = { "cache-control": "no-store" };
const TEXT = { "content-type": "text/plain; charset=utf-8", ...NO_STORE };

/** Where the answers come from. */
export interface EndpointSource {
  /** The Prometheus exposition. */
  metrics(): string | Promise<string>;
  /** Ready to take sessions, and the reason when not (`draining`, `no listeners`, `1/2 workers ready`). */
  readiness(): { ready: boolean; reason: string } | Promise<{ ready: boolean; reason: string }>;
  /** The /status object; with `history`, the last minutes' samples too. */
  status(history: boolean): unknown | Promise<unknown>;
  /** The control API under /api/ (its own methods, token rules and errors). */
  api(request: Request, path: string): Response | Promise<Response>;
}

type Endpoint = (source: EndpointSource, url: URL) => Response | Promise<Response>;

/** The read endpoints; /healthz and /readyz never need the token (probes have none). */
const ENDPOINTS: Readonly<Record<string, { open: boolean; answer: Endpoint }>> = {
  "/metrics": { open: false, answer: async (source) => new Response(await source.metrics(), { headers: { "content-type": CONTENT_TYPE, ...NO_STORE } }) },
  "/healthz": { open: true, answer: () => new Response("ok\n", { headers: TEXT }) },
  "/readyz": {
    open: true,
    answer: async (source) => {
      const { ready, reason } = await source.readiness();
      return new Response(ready ? "ready\n" : `${reason}\n`, { status: ready ? 200 : 503, headers: TEXT });
    },
  },
  "/status": { open: false, answer: async (source, url) => Response.json(await source.status(url.searchParams.has("history")), { headers: NO_STORE }) },
  "/": { open: false, answer: () => new Response(STATUS_PAGE, { headers: { "content-type": "text/html; charset=utf-8", ...NO_STORE } }) },
};

/**
 * Answers one admin request. Paths are matched as sent (not decoded, slashes not merged), so
 * `//api/…` and `/%61pi/…` are not /api/: they get the JSON 404 like any unknown path.
 */
export async function answer(request: Request, source: EndpointSource, auth: AdminAuth): Promise<Response> {
  const url = new URL(request.url);
  if (url.pathname.startsWith("/api/")) return source.api(request, url.pathname + url.search);
  if (request.method !== "GET" && request.method !== "HEAD") return failure(405, `${request.method} not allowed here (GET, HEAD)`, { allow: "GET, HEAD" });
  const endpoint = ENDPOINTS[url.pathname];
  if (endpoint?.open !== true) {
    const denied = authorize(request, auth, false);
    if (denied !== null) return denied;
  }
  if (endpoint === undefined) return failure(404, "not found: try /metrics, /healthz, /readyz, /status, /api/backends or /");
  return endpoint.answer(source, url);
}
