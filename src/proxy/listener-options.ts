/**
 * What a listener takes from its (validated) config: its runtime options, route included, and
 * on a reload the certificates of the TLS listeners that stay. The router builds listeners with
 * these (router.ts); a new route kind is wired in `listenerOptions()`.
 */
import { formatAddress } from "../util/address.ts";
import type { Backend } from "../backend/backend.ts";
import { ALERT_UNRECOGNIZED_NAME, tlsAlert } from "../protocol/sni.ts";
import { CidrSet } from "../util/cidr.ts";
import { loadCertificates, type LoadedCertificates } from "./certificates.ts";
import type { Config, ListenerConfig } from "../config/types.ts";
import { type Listener, ListenError } from "./listener.ts";
import type { ListenerOptions } from "./context.ts";
import { DefaultRoute, ServerNameRoute } from "./route.ts";
import { ClientCertRoute } from "./client-cert-route.ts";
import { rateLimits } from "./rate.ts";
import { hasTcpOptions } from "./tcp-options.ts";

/**
 * The certificates of the TLS listeners a reload keeps, read before anything changes. Throws
 * ListenError for a file that cannot be read, or a kept listener that would turn TLS on or off
 * (the socket handlers are fixed when the address is bound).
 */
export function keptCertificates(config: Config, current: Map<string, Listener>): Map<Listener, LoadedCertificates> {
  const loaded = new Map<Listener, LoadedCertificates>();
  for (const options of config.listeners) {
    const address = formatAddress(options.listen);
    const listener = current.get(address);
    if (listener === undefined) continue;
    if ((options.tls === null) !== !listener.options.tls) {
      throw new ListenError(
        `${address}: tls cannot be ${options.tls === null ? "removed from" : "added to"} a listener that stays open; use a new address, or restart`,
      );
    }
    if (options.tls === null) continue;
    let certificates: LoadedCertificates;
    try {
      certificates = loadCertificates(options.tls);
    } catch (error) {
      throw new ListenError(`${address}: ${(error as Error).message}`);
    }
    const refusal = listener.cannotTake(certificates);
    if (refusal !== null) throw new ListenError(`${address}: ${refusal}`);
    loaded.set(listener, certificates);
  }
  return loaded;
}

/** A listener's runtime options from its (validated) config. */
export function listenerOptions(config: ListenerConfig, backends: Map<string, Backend>): ListenerOptions {
  const backend = config.backend === null ? null : (backends.get(config.backend) ?? null);
  const sets = (list: string[]) => (list.length > 0 ? new CidrSet(list) : null);
  const route =
    config.mode === "sni"
      ? ServerNameRoute.of(config.routes, backends, backend, UNRECOGNIZED_NAME)
      : config.routes.length > 0
        ? new ClientCertRoute(
            config.routes.map((route) => ({ ...route.client!, backend: backends.get(route.backend)! })),
            backend,
          )
        : new DefaultRoute(backend);
  return {
    name: config.name,
    address: config.listen,
    route,
    maxConnections: config.maxConnections,
    connectTimeout: config.connectTimeout,
    idleTimeout: config.idleTimeout,
    writeTimeout: config.writeTimeout,
    halfClosedTimeout: config.halfClosedTimeout,
    maxSessionDuration: config.maxSessionDuration,
    helloTimeout: config.helloTimeout,
    acceptProxy: config.acceptProxy ? new CidrSet(config.trusted) : null,
    allow: sets(config.allow),
    deny: sets(config.deny),
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    connectionRatePerIp: config.connectionRatePerIp,
    tls: config.tls,
    rates: rateLimits(config.controls),
    tcp: hasTcpOptions(config.controls) ? config.controls! : null,
  };
}

/** The alert an SNI listener sends a client whose server name has no route. */
const UNRECOGNIZED_NAME = tlsAlert(ALERT_UNRECOGNIZED_NAME);
