/**
 * Routes: what a listener does with a connection once its preface is read. A route matches
 * what the preface learned (`RouteInfo`) and names a backend, or none.
 *
 * Two kinds today: `DefaultRoute` (a plain listener: every session to its backend) and
 * `ServerNameRoutes` (SNI mode: by the ClientHello's server name and ALPN, else the default).
 * A new kind of route (by source address, by a QUIC Initial's name) is a new class here
 * implementing `Route`; the listener and the session only call `match`.
 */
import type { Backend } from "../backend/backend.ts";
import { normalizeServerName, parseServerNamePattern, ServerNameError } from "../protocol/sni.ts";

/** What the preface steps learned of a client before it is routed. */
export interface RouteInfo {
  /** The TLS server name (SNI mode); null when none was sent or none was read. */
  serverName: string | null;
  /** The ALPN protocols the client offered (SNI mode); empty otherwise. */
  alpn: readonly string[];
  /**
   * A terminating listener that verifies clients: the client's verified certificate (set by
   * `Session.handshakeDone`); null or absent = none (not asked for, or none sent).
   */
  clientCertificate?: ClientCertificate | null;
}

/** A verified client certificate: its subject (`O=ops,CN=admin`, in the certificate's order), CN, and SHA-256 fingerprint (`AB:CD:…`). */
export interface ClientCertificate {
  subject: string;
  cn: string;
  fingerprint: string;
}

export interface Route {
  /** The preface must read a TLS ClientHello before `match` (SNI mode). */
  readonly readsClientHello: boolean;
  /** The backend for a client, or null: nothing matched and there is no default. */
  match(info: RouteInfo): Backend | null;
  /** Bytes to send a client nothing matched before it is closed (a TLS alert), or null. */
  readonly refusal: Uint8Array | null;
  /** The backend when nothing more specific matches: a plain listener's, an SNI listener's default (null: none). */
  readonly fallback: Backend | null;
}

/** A plain listener's route: every session goes to one backend. */
export class DefaultRoute implements Route {
  readonly readsClientHello = false;
  readonly refusal = null;
  constructor(readonly fallback: Backend | null) {}
  match(): Backend | null {
    return this.fallback;
  }
}

/** An SNI listener's route: the table's match, else the listener's default backend. */
export class ServerNameRoute implements Route {
  readonly readsClientHello = true;
  constructor(
    readonly table: ServerNameRoutes<ServerNameRule & { backend: Backend }>,
    readonly fallback: Backend | null,
    readonly refusal: Uint8Array,
  ) {}
  match(info: RouteInfo): Backend | null {
    return this.table.match(info.serverName, info.alpn)?.backend ?? this.fallback;
  }

  /** An SNI listener's route (TCP or QUIC) from its configured routes, each naming a backend of `backends`. */
  static of(
    routes: readonly { serverNames: string[]; alpn: string[]; backend: string }[],
    backends: ReadonlyMap<string, Backend>,
    fallback: Backend | null,
    refusal: Uint8Array,
  ): ServerNameRoute {
    const rules = routes.map((route) => ({
      ...(route.serverNames.length > 0 ? { serverNames: route.serverNames } : {}),
      ...(route.alpn.length > 0 ? { alpn: route.alpn } : {}),
      backend: backends.get(route.backend)!,
    }));
    return new ServerNameRoute(new ServerNameRoutes(rules), fallback, refusal);
  }
}

/**
 * What the matcher reads of a route; a listener's rule adds its backend.
 *
 * - `serverNames`: exact names (`db.example.com`) and wildcards (`*.example.com`), compared
 *   case-insensitively with a trailing dot ignored. A wildcard stands for exactly one label,
 *   as in TLS certificates: `*.example.com` matches `a.example.com`, not `example.com` and
 *   not `a.b.example.com`.
 * - `alpn`: protocols (`["h2"]`, exact bytes); the route matches a client that offers any of
 *   them. With `serverNames` as well, both must match.
 * - `default`: the route for sessions no other route matched, including clients that sent no
 *   server name. At most one, with no `serverNames` or `alpn`.
 *
 * Precedence: an exact name beats a wildcard, a wildcard beats an ALPN-only route, and that
 * beats the default; among routes of one kind the first listed wins (so, for one name, list a
 * route with `alpn` before the route without). A client without SNI reaches ALPN-only routes
 * and the default.
 */
export interface ServerNameRule {
  serverNames?: readonly string[];
  alpn?: readonly string[];
  default?: boolean;
}

/**
 * Routes indexed for one lookup per session: a map probe for the exact name, one for the
 * wildcard of its parent, then the ALPN routes in order. Build it once per listener.
 * Throws ServerNameError for a bad pattern or route.
 */
export class ServerNameRoutes<R extends ServerNameRule> {
  #exact = new Map<string, R[]>();
  /** By the part after "*.": `example.com` for `*.example.com`. */
  #wildcard = new Map<string, R[]>();
  #alpnOnly: R[] = [];
  #default: R | null = null;

  constructor(routes: readonly R[]) {
    routes.forEach((route, index) => {
      const names = route.serverNames ?? [];
      const where = `route ${index + 1}`;
      if (route.alpn !== undefined && route.alpn.length === 0) throw new ServerNameError(`${where}: alpn is empty`);
      if (route.default) {
        if (names.length > 0 || route.alpn !== undefined) throw new ServerNameError(`${where}: a default route cannot also match serverNames or alpn`);
        if (this.#default !== null) throw new ServerNameError(`${where}: more than one default route`);
        this.#default = route;
      } else if (names.length > 0) {
        for (const name of names) {
          const pattern = parseServerNamePattern(name);
          const [map, key] = pattern.startsWith("*.") ? [this.#wildcard, pattern.slice(2)] : [this.#exact, pattern];
          const list = map.get(key);
          if (list === undefined) map.set(key, [route]);
          else if (!list.includes(route)) list.push(route);
        }
      } else if (route.alpn !== undefined) {
        this.#alpnOnly.push(route);
      } else {
        throw new ServerNameError(`${where}: matches nothing (give serverNames, alpn or default)`);
      }
    });
  }

  /** The route for a ClientHello's server name (null = none sent) and ALPN list, or null. */
  match(serverName: string | null, alpn: readonly string[]): R | null {
    if (serverName !== null) {
      const name = normalizeServerName(serverName);
      const exact = firstOffering(this.#exact.get(name), alpn);
      if (exact !== null) return exact;
      const dot = name.indexOf(".");
      if (dot > 0) {
        const wildcard = firstOffering(this.#wildcard.get(name.slice(dot + 1)), alpn);
        if (wildcard !== null) return wildcard;
      }
    }
    return firstOffering(this.#alpnOnly, alpn) ?? this.#default;
  }
}

/** One-off lookup; for a lookup per session, build a `ServerNameRoutes` once and pass it. */
export function matchServerName<R extends ServerNameRule>(
  routes: ServerNameRoutes<R> | readonly R[],
  serverName: string | null,
  alpn: readonly string[],
): R | null {
  return (routes instanceof ServerNameRoutes ? routes : new ServerNameRoutes(routes)).match(serverName, alpn);
}

/** The first route whose `alpn` (if any) shares a protocol with the client's list. */
function firstOffering<R extends ServerNameRule>(routes: readonly R[] | undefined, offered: readonly string[]): R | null {
  if (routes === undefined) return null;
  for (const route of routes) {
    if (route.alpn === undefined || route.alpn.some((protocol) => offered.includes(protocol))) return route;
  }
  return null;
}
