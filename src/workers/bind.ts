/**
 * The supervisor binds each listener once (`--workers N`) and passes the sockets to every
 * worker, which adopts them (workers/activation.ts). So a worker that dies loses nothing
 * queued: the accept queue belongs to the one socket, and the other workers (and the worker's
 * replacement, which gets the same socket) accept from it. A unix listener works with workers
 * too (N processes cannot each bind one path).
 *
 * Bun binds, then the descriptor is duplicated and Bun's listener stopped: the supervisor
 * keeps a socket it never accepts on. Bun removes a unix socket's path when its listener
 * stops, so a unix socket is bound at a temporary path and renamed into place first (as
 * HAProxy binds its unix sockets): the path then never lacks a socket, even on a restart.
 */
import { existsSync, renameSync } from "node:fs";
import type { Config } from "../config/types.ts";
import { ListenError } from "../proxy/listener.ts";
import type { InheritedListener } from "../proxy/handover-record.ts";
import { formatAddress } from "../util/address.ts";
import { listenErrorText } from "../util/errors.ts";
import { closeFd, dup } from "../util/fds.ts";
import { removeStaleSocket } from "../util/unix-socket.ts";

const NO_HANDLERS = { data() {}, open() {} };

/**
 * Binds every listener of `config`, or takes the socket `given` has for its address (an older
 * supervisor's in an upgrade, systemd's); the descriptors are this process's. Throws
 * ListenError after closing what it bound.
 */
export function holdListeners(config: Config, given: readonly InheritedListener[] = []): InheritedListener[] {
  const held: InheritedListener[] = [];
  try {
    for (const listener of config.listeners) {
      // A UDP listener is bound by each worker with SO_REUSEPORT (proxy/udp): no datagram waits in an accept queue.
      if (listener.protocol === "udp") continue;
      const address = listener.listen;
      const name = formatAddress(address);
      const known = given.find((g) => g.address === name);
      if (known !== undefined) {
        held.push(known);
        continue;
      }
      if (address.kind === "unix") {
        bind(name, () => removeStaleSocket(address.path)); // a socket file a dead process left behind
        if (existsSync(address.path)) throw new ListenError(`cannot listen on ${name}: address already in use`);
        const temporary = `${address.path}.${process.pid}.tmp`;
        const server = bind(name, () => Bun.listen({ unix: temporary, socket: NO_HANDLERS }));
        const fd = dup((server as unknown as { fd: number }).fd);
        renameSync(temporary, address.path);
        server.stop(true);
        held.push({ address: name, fd, port: 0 });
      } else {
        const server = bind(name, () => Bun.listen({ hostname: address.host, port: address.port, socket: NO_HANDLERS }));
        const fd = dup((server as unknown as { fd: number }).fd);
        const port = server.port;
        server.stop(true);
        held.push({ address: name, fd, port });
      }
    }
  } catch (error) {
    for (const listener of held) closeFd(listener.fd);
    throw error;
  }
  return held;
}

function bind<T>(name: string, listen: () => T): T {
  try {
    return listen();
  } catch (error) {
    throw new ListenError(`cannot listen on ${name}: ${listenErrorText(error)}`);
  }
}
