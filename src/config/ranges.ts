/**
 * Port ranges and `$port`. A listener on `127.0.0.1:7000-7010` is one listener per port, and a
 * backend whose targets use `$port` (the port the client dialled) is one backend per port of
 * the listeners that use it: `app` → `app:7000` with `10.0.0.5:7000`, `app:7001` with
 * `10.0.0.5:7001`, …. Both are expanded here, at load, so everything after config/ (the
 * router, health checks, metrics, admin, reload, workers) sees plain listeners, backends and
 * targets, and nothing has to fill a port in per session.
 */
import type * as v from "valibot";
import { formatAddress, formatPortRange, type Address, type PortRange } from "../util/address.ts";
import { identity, type Key } from "./checks.ts";
import { isAddress, isRecord, pathText } from "./messages.ts";
import type { BackendConfig, Config, ListenerConfig } from "./types.ts";

export function isPortRange(value: unknown): value is PortRange {
  return isRecord(value) && value.kind === "range";
}

/** One listener of a `listen` value: its address, its name, and the range it is one port of. */
export interface ListenPort {
  listen: Address;
  name: string;
  range?: NonNullable<ListenerConfig["range"]>;
}

/**
 * The listeners a `listen` value gives: itself for an address; one per port for a range, named
 * `NAME:PORT` when the file names the listener, else after its address (`127.0.0.1:7000`).
 */
export function listenPorts(listen: Address | PortRange, name: string | undefined): ListenPort[] {
  if (listen.kind !== "range") return [{ listen, name: name ?? formatAddress(listen) }];
  const range = { listen: formatPortRange(listen), ports: listen.last - listen.first + 1, name: name ?? null };
  const out: ListenPort[] = [];
  for (let port = listen.first; port <= listen.last; port++) {
    const address: Address = { kind: "tcp", host: listen.host, port };
    out.push({ listen: address, name: name === undefined ? formatAddress(address) : `${name}:${port}`, range });
  }
  return out;
}

/** A backend with a target written `host:$port`. */
function usesDialledPort(backend: BackendConfig): boolean {
  return backend.targets.some((target) => target.dialledPort === true);
}

/**
 * The config with each backend that has `$port` targets replaced, in its place, by one backend
 * per port of the listeners that use it (`app:7000`, …, in port order), and those listeners
 * (their `backend` and routes) pointing at their port's backend. `checkPorts` has made sure
 * every such listener has a port.
 */
export function expandPorts(config: Config): Config {
  const templates = new Set([...config.backends.values()].filter(usesDialledPort).map((backend) => backend.name));
  if (templates.size === 0) return config;
  const made = new Map<string, Map<number, BackendConfig>>();
  const forPort = (name: string, listen: Address): string => {
    if (!templates.has(name) || listen.kind !== "tcp") return name;
    const port = listen.port;
    const ports = made.get(name) ?? new Map<number, BackendConfig>();
    made.set(name, ports);
    const template = config.backends.get(name)!;
    if (!ports.has(port)) {
      const targets = template.targets.map((target) => (target.dialledPort === true ? { ...target, address: { ...target.address, port } as Address } : target));
      ports.set(port, { ...template, name: `${name}:${port}`, targets, portOf: { backend: name, port } });
    }
    return `${name}:${port}`;
  };
  const listeners = config.listeners.map(
    (listener): ListenerConfig => ({
      ...listener,
      backend: listener.backend === null ? null : forPort(listener.backend, listener.listen),
      routes: listener.routes.map((route) => ({ ...route, backend: forPort(route.backend, listener.listen) })),
    }),
  );
  const backends = new Map<string, BackendConfig>();
  for (const [name, backend] of config.backends) {
    if (!templates.has(name)) backends.set(name, backend);
    else for (const [, one] of [...(made.get(name) ?? [])].sort(([a], [b]) => a - b)) backends.set(one.name, one);
  }
  return { ...config, listeners, backends };
}

/**
 * The errors of ranges and `$port`, on the partly validated file (a value with an error of its
 * own is skipped):
 * - a range port already used by another listener (or the admin listener), a range's names
 *   (`NAME:PORT`) already used; collisions between single addresses are checkReferences';
 * - a listener (or route) naming a `$port` backend without a port to give it (unix, port 0);
 * - a `$port` backend that no listener uses (there is no port to fill in);
 * - a per-port backend name (`app:7000`) that the file already uses for another backend.
 */
export function checkPorts(file: unknown, issues: readonly v.BaseIssue<unknown>[]): { path: Key[]; message: string }[] {
  const errors: { path: Key[]; message: string }[] = [];
  if (!isRecord(file)) return errors;
  const invalid = issues.map((issue) => pathText(issue.path));
  const valid = (...path: Key[]) => {
    const prefix = pathText(path.map((key) => ({ key })));
    return !invalid.some((bad) => bad === prefix || bad.startsWith(prefix + ".") || bad.startsWith(prefix + "["));
  };
  const listeners = Array.isArray(file.listeners) ? (file.listeners as unknown[]) : [];
  const backends = isRecord(file.backends) ? file.backends : {};

  // Addresses and names, port by port, in file order.
  const addresses = new Map<string, { index: number; range: boolean }>();
  const names = new Map<string, { index: number; range: boolean }>();
  listeners.forEach((listener, i) => {
    if (!isRecord(listener) || !valid("listeners", i, "listen")) return;
    const listen = listener.listen;
    if (!isAddress(listen) && !isPortRange(listen)) return;
    const named = typeof listener.name === "string" && valid("listeners", i, "name") ? listener.name : undefined;
    const range = isPortRange(listen);
    let reported = false;
    for (const one of listenPorts(listen, named)) {
      const key = identity(one.listen);
      const first = addresses.get(key);
      if (first !== undefined && (range || first.range) && !reported) {
        const where = range ? ` (in ${formatPortRange(listen)})` : "";
        errors.push({ path: ["listeners", i, "listen"], message: `${formatAddress(one.listen)}${where} is already used by listeners[${first.index}]` });
        reported = true;
      } else if (first === undefined && !(one.listen.kind === "tcp" && one.listen.port === 0)) addresses.set(key, { index: i, range });
      const taken = names.get(one.name);
      if (taken !== undefined && (range || taken.range) && !reported) {
        errors.push({
          path: ["listeners", i, named === undefined ? "listen" : "name"],
          message: `the name "${one.name}" is already used by listeners[${taken.index}]`,
        });
        reported = true;
      } else if (taken === undefined) names.set(one.name, { index: i, range });
    }
  });
  if (isRecord(file.admin) && valid("admin", "listen") && isAddress(file.admin.listen)) {
    const first = addresses.get(identity(file.admin.listen));
    if (first?.range === true)
      errors.push({
        path: ["admin", "listen"],
        message: `${formatAddress(file.admin.listen)} is already used by listeners[${first.index}] (a port of its range)`,
      });
  }

  // `$port` backends and the listeners that use them.
  const dialled = new Map<string, number>(); // backend name → index of its first $port target
  for (const [name, backend] of Object.entries(backends)) {
    if (!isRecord(backend) || !Array.isArray(backend.targets)) continue;
    const j = backend.targets.findIndex((target: unknown) => isRecord(target) && target.dialledPort === true);
    if (j >= 0 && valid("backends", name, "targets", j)) dialled.set(name, j);
  }
  if (dialled.size === 0) return errors;
  const used = new Set<string>();
  listeners.forEach((listener, i) => {
    if (!isRecord(listener)) return;
    const refs: [Key[], unknown][] = [[["backend"], listener.backend]];
    if (Array.isArray(listener.routes))
      listener.routes.forEach((route: unknown, k) => {
        if (isRecord(route)) refs.push([["routes", k, "backend"], route.backend]);
      });
    for (const [path, name] of refs) {
      if (typeof name !== "string" || !dialled.has(name)) continue;
      used.add(name);
      if (!valid("listeners", i, "listen")) continue;
      const listen = listener.listen;
      const why = !isAddress(listen) && !isPortRange(listen) ? null : noPort(listen);
      if (why !== null)
        errors.push({
          path: ["listeners", i, ...path],
          message: `backend "${name}" has $port targets (targets[${dialled.get(name)}]), and ${why}`,
        });
      for (const one of isAddress(listen) || isPortRange(listen) ? listenPorts(listen, undefined) : []) {
        const full = one.listen.kind === "tcp" ? `${name}:${one.listen.port}` : null;
        if (full !== null && Object.hasOwn(backends, full)) {
          errors.push({
            path: ["listeners", i, ...path],
            message: `backend "${name}" for port ${(one.listen as { port: number }).port} is "${full}", which is another backend's name`,
          });
          break;
        }
      }
    }
  });
  for (const [name, j] of dialled) {
    if (!used.has(name))
      errors.push({ path: ["backends", name, "targets", j], message: "$port: no listener uses this backend, so no port is dialled to fill in" });
  }
  return errors;
}

/** Why a listen address has no port to fill `$port` with; null when it has one. */
function noPort(listen: Address | PortRange): string | null {
  if (listen.kind === "unix") return `${formatAddress(listen)} has no port to fill them with`;
  if (listen.kind === "tcp" && listen.port === 0) return "port 0 (any free port) is not known before binding; give the listener a port";
  return null;
}
