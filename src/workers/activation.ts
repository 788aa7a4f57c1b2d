/**
 * Listening sockets this process did not bind, matched to the config's listeners:
 *
 * - systemd socket activation (LISTEN_FDS / LISTEN_FDNAMES): a descriptor goes to the listener
 *   whose name is its FileDescriptorName=, else to the listener whose address it is bound to;
 * - the supervisor's (`--workers N`): it binds each listener once and passes the sockets to
 *   every worker at stdio 3, 4, … with their addresses in TCPROUTER_LISTENERS, so a worker that
 *   dies loses nothing from the accept queue and its replacement takes the same socket.
 *
 * A descriptor that matches no listener is closed with a warning.
 */
import type { Config } from "../config/types.ts";
import type { InheritedListener } from "../proxy/handover-record.ts";
import { formatAddress, type Address } from "../util/address.ts";
import { closeFd } from "../util/fds.ts";
import type { Logger } from "../util/log.ts";
import { listenFds, socketInfo } from "../util/systemd.ts";

/** Set in a worker's environment by a supervisor that bound the listeners: JSON InheritedListener[]. */
export const LISTENERS_ENV = "TCPROUTER_LISTENERS";

/** The inherited listening sockets for `config`: the supervisor's, else systemd's; empty when neither passed any. */
export function activatedListeners(config: Config, log: Logger): InheritedListener[] {
  const fromSupervisor = process.env[LISTENERS_ENV];
  if (fromSupervisor !== undefined) return JSON.parse(fromSupervisor) as InheritedListener[];
  const fds = listenFds();
  const found: InheritedListener[] = [];
  for (const { fd, name } of fds) {
    const info = socketInfo(fd);
    const byName = config.listeners.find((listener) => listener.name === name);
    const byAddress = info === null ? undefined : config.listeners.find((listener) => sameAddress(listener.listen, info.address));
    const listener = byName ?? byAddress;
    if (listener === undefined || info === null) {
      log.warn(`socket activation: descriptor ${fd} (${name}${info === null ? "" : `, ${formatAddress(info.address)}`}) matches no listener; closed`);
      closeFd(fd);
      continue;
    }
    found.push({ address: formatAddress(listener.listen), fd, port: info.address.kind === "tcp" ? info.address.port : 0 });
    log.info(`socket activation: listener ${listener.name} takes descriptor ${fd} (${name}, ${formatAddress(info.address)})`);
  }
  return found;
}

function sameAddress(configured: Address, bound: Address): boolean {
  if (configured.kind === "unix" || bound.kind === "unix") return configured.kind === bound.kind && formatAddress(configured) === formatAddress(bound);
  return configured.port === bound.port && (configured.host === bound.host || configured.host === "0.0.0.0" || configured.host === "::");
}
