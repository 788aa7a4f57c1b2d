/**
 * The resolved config: what `parseConfig` returns and `createRouter` runs. Defaults are applied
 * (their values live in defaults.ts), durations are in ms, addresses are parsed. The types only:
 * every layer above config/ may import them, none below.
 *
 * This file has the whole (`Config`) and `[defaults]`, and re-exports every section's types, so
 * an importer needs only this one: listener-types.ts (listeners, routes, listener TLS, UDP),
 * backend-types.ts (targets, balance, SRV, Sentinel, TLS out), health-types.ts, admin-types.ts,
 * socket-types.ts (what listeners and backends share: TLS versions, session controls).
 */
import type { AdminConfig } from "./admin-types.ts";
import type { BackendConfig } from "./backend-types.ts";
import type { ListenerConfig } from "./listener-types.ts";

export * from "./admin-types.ts";
export * from "./backend-types.ts";
export * from "./health-types.ts";
export * from "./listener-types.ts";
export * from "./socket-types.ts";

export interface Config {
  defaults: DefaultsConfig;
  listeners: ListenerConfig[];
  /** By name, in file order. A backend no listener names is kept (see `configWarnings`). */
  backends: Map<string, BackendConfig>;
  /** The admin listener (metrics, health, status page); absent = off. */
  admin?: AdminConfig;
  /** `"stdout"` or a file path: one line per session; absent = off. */
  accessLog?: string;
  /** DNS servers (`ip:port`) that hostname targets are looked up with; absent = the system resolver. */
  dnsServers?: string[];
}

/** Durations in ms, 0 = off. */
export interface DefaultsConfig {
  connectTimeout: number;
  idleTimeout: number;
  /** ms a session's queued bytes may wait for their reader to take any; 0 = off. */
  writeTimeout: number;
  /** ms a half-closed session may stay idle; 0 = off. */
  halfClosedTimeout: number;
  /** ms after accept at which a session is closed; 0 = off. */
  maxSessionDuration: number;
  /** ms for a TLS handshake, PROXY header or ClientHello; never 0. */
  helloTimeout: number;
  drainTimeout: number;
  /** How long a new session waits for a target when every target is full; 0 = it is closed at once. */
  queueTimeout: number;
}

export type ConfigFormat = "toml" | "json";
