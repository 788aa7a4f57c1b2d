/**
 * The one-route form: `forward({ listen, to })` listens on one address and forwards every
 * connection to one target, through the same router, listener and session code as a config.
 */
import { formatAddress, parseAddress, type Address } from "../util/address.ts";
import type { Config, ListenerConfig } from "../config/types.ts";
import { parseDuration } from "../util/duration.ts";
import type { Logger } from "../util/log.ts";
import { DEFAULTS } from "../config/defaults.ts";
import { createRouter, OptionsError } from "./create-router.ts";
import type { RouterHandle } from "./handle.ts";

export interface ForwardOptions {
  /** Address to listen on: `host:port`, `[v6]:port`, `name:port` or `unix:/path`. Port 0 picks a free port. Default `127.0.0.1:11000`. */
  listen?: string;
  /** Target address, same forms as `listen`. Required. */
  to: string;
  /** Give up on an upstream connect after this long (ms, or `"10s"`). Default 10s; 0 = off. */
  connectTimeout?: number | string;
  /** Close a session that moved no bytes either way for this long. Default 0 = off. */
  idleTimeout?: number | string;
  /** Close a session whose queued bytes were not taken by their reader for this long. Default 2m; 0 = off. */
  writeTimeout?: number | string;
  /** Close a half-closed session that moved no bytes for this long. Default 10m; 0 = off. */
  halfClosedTimeout?: number | string;
  /** Close every session this long after it was accepted. Default 0 = off. */
  maxSessionDuration?: number | string;
  /** Sessions open at once; connections beyond are closed at once and counted. Default 0 = no limit. */
  maxConnections?: number;
  /** On `stop()`, how long open sessions may take to finish before they are closed. Default 10s. */
  drainTimeout?: number | string;
  /** Bytes queued in one direction before its reading side is paused. Default 1 MiB. */
  highWaterMark?: number;
  /** A paused reading side resumes when the queue is at or below this. Default 256 KiB. */
  lowWaterMark?: number;
  /** Where log lines go. Default: warnings and errors to stderr. */
  logger?: Logger;
}

export interface ForwardHandle extends RouterHandle {
  /** The bound address (`127.0.0.1:43211`, `unix:/tmp/x.sock`). */
  readonly address: string;
  /** The bound port (0 for unix sockets). */
  readonly port: number;
}

/** A listener with none of the TLS-routing and source features. */
const PLAIN_LISTENER: Pick<
  ListenerConfig,
  "mode" | "routes" | "helloTimeout" | "acceptProxy" | "trusted" | "allow" | "deny" | "maxConnectionsPerIp" | "connectionRatePerIp" | "tls"
> = {
  mode: "tcp",
  routes: [],
  helloTimeout: DEFAULTS.helloTimeout,
  acceptProxy: false,
  trusted: [],
  allow: [],
  deny: [],
  maxConnectionsPerIp: DEFAULTS.maxConnectionsPerIp,
  connectionRatePerIp: DEFAULTS.connectionRatePerIp,
  tls: null,
};

/** The config of one listener forwarding to one target. Throws OptionsError naming the option. */
export function forwardConfig(options: ForwardOptions): Config {
  const duration = (name: string, value: number | string | undefined, fallback: number) => {
    try {
      return value === undefined ? fallback : parseDuration(value);
    } catch (error) {
      throw new OptionsError(`${name}: ${(error as Error).message}`);
    }
  };
  const address = (name: string, value: string | undefined, listen: boolean): Address => {
    if (value === undefined || value === "") throw new OptionsError(`${name}: an address is required`);
    try {
      return parseAddress(value, listen);
    } catch (error) {
      throw new OptionsError(`${name}: ${(error as Error).message}`);
    }
  };
  const maxConnections = options.maxConnections ?? DEFAULTS.maxConnections;
  if (!Number.isInteger(maxConnections) || maxConnections < 0) throw new OptionsError(`maxConnections: "${maxConnections}" is not a whole number ≥ 0`);
  const listen = address("listen", options.listen ?? DEFAULTS.listen, true);
  const to = address("to", options.to, false);
  const connectTimeout = duration("connectTimeout", options.connectTimeout, DEFAULTS.connectTimeout);
  const idleTimeout = duration("idleTimeout", options.idleTimeout, DEFAULTS.idleTimeout);
  const writeTimeout = duration("writeTimeout", options.writeTimeout, DEFAULTS.writeTimeout);
  const halfClosedTimeout = duration("halfClosedTimeout", options.halfClosedTimeout, DEFAULTS.halfClosedTimeout);
  const maxSessionDuration = duration("maxSessionDuration", options.maxSessionDuration, DEFAULTS.maxSessionDuration);
  const timers = { idleTimeout, writeTimeout, halfClosedTimeout, maxSessionDuration };
  return {
    defaults: {
      connectTimeout,
      ...timers,
      helloTimeout: DEFAULTS.helloTimeout,
      drainTimeout: duration("drainTimeout", options.drainTimeout, DEFAULTS.drainTimeout),
      queueTimeout: 0,
    },
    listeners: [
      {
        ...PLAIN_LISTENER,
        name: formatAddress(listen),
        listen,
        backend: "default",
        maxConnections,
        connectTimeout,
        ...timers,
      },
    ],
    backends: new Map([
      [
        "default",
        {
          name: "default",
          balance: "round-robin",
          retries: 0,
          targets: [{ address: to, weight: 1, maxConnections: 0, backup: false }],
          health: null,
          sendProxy: null,
          tls: null,
        },
      ],
    ]),
  };
}

/**
 * Listens on `listen` and forwards every connection to `to`.
 * Rejects with OptionsError or ListenError (one-line messages) before anything is left open.
 */
export async function forward(options: ForwardOptions): Promise<ForwardHandle> {
  const config = forwardConfig(options);
  const handle = await createRouter(config, options);
  const bound = handle.listeners[0]!;
  return { ...handle, address: bound.address, port: bound.port };
}
