/**
 * Handing a running router to a new process (an upgrade in place, workers/upgrade.ts): what
 * the old process gives (its listening sockets, its targets' states, its movable sessions,
 * frozen) and what the new one does with them (adopts the sockets, restores the states, takes
 * over the sessions). Descriptors cross as numbers of the old process: the new one copies
 * them with pidfd_getfd before calling `adopt`.
 *
 * A session moves when both its sockets are plain TCP and open (Session.movable): the bytes
 * queued in each direction go along in its record. A TLS-terminated session, or one dialled
 * over TLS, cannot (its TLS state lives in this process) and drains here as on a stop.
 */
import { NO_BACKEND, type Backend } from "../backend/backend.ts";
import { adoptSession, restoreTarget, saveTarget } from "../backend/handover.ts";
import { formatAddress } from "../util/address.ts";
import type { HandoverApi, InheritedListener, SavedTargets, SessionRecord } from "./handover-record.ts";
import type { Listener } from "./listener.ts";
import type { Session } from "./session.ts";

export type { SessionRecord };

/** What handover needs of the router. */
interface RouterParts {
  readonly listeners: readonly Listener[];
  readonly backends: ReadonlyMap<string, Backend>;
  readonly sessions: Iterable<Session>;
  readonly udp: { stop(): void };
}

export class Handover implements HandoverApi {
  /** The sessions frozen by `freeze`, in record order. */
  private frozen: Session[] = [];

  constructor(private readonly router: RouterParts) {}

  /** The listening sockets, for the new process to adopt (their descriptors stay open here until this process exits). */
  listeners(): InheritedListener[] {
    return this.router.listeners
      .filter((listener) => listener.fd >= 0)
      .map((listener) => {
        const bound = listener.address;
        return { address: formatAddress(listener.options.address), fd: listener.fd, port: bound.kind === "tcp" ? bound.port : 0 };
      });
  }

  stopAccepting(): void {
    for (const listener of this.router.listeners) listener.close();
    // UDP flows do not move: the new process has bound the same ports (SO_REUSEPORT), and a
    // client's next datagram opens a flow there once these sockets are closed.
    this.router.udp.stop();
  }

  /** Every target's admin state, weight, health and counters. */
  targets(): SavedTargets {
    const saved: SavedTargets = {};
    for (const [name, backend] of this.router.backends) saved[name] = Object.fromEntries(backend.targets.map((t) => [t.key, saveTarget(t)]));
    return saved;
  }

  /** In the new process: the old process's target states, onto the targets this config keeps. */
  restore(saved: SavedTargets): void {
    for (const [name, targets] of Object.entries(saved)) {
      const backend = this.router.backends.get(name);
      if (backend !== undefined) for (const [key, target] of Object.entries(targets)) restoreTarget(backend, key, target);
    }
  }

  /** Pauses every movable session and returns its record; the others go on (and drain). */
  freeze(): SessionRecord[] {
    this.frozen = [...this.router.sessions].filter((session) => session.movable);
    return this.frozen.map((session) => session.freeze());
  }

  /**
   * The new process took the sessions at these indexes of `freeze`'s records: close this
   * process's copies (silently); the others read on here. Returns how many moved.
   */
  handedOff(taken: ReadonlySet<number>): number {
    this.frozen.forEach((session, index) => {
      if (taken.has(index)) session.handOff();
      else session.thaw();
    });
    this.frozen = [];
    return taken.size;
  }

  /** In the new process: takes over sessions whose descriptors were copied into `clientFd` / `upstreamFd`. */
  adopt(records: readonly SessionRecord[]): void {
    const listeners = this.router.listeners;
    for (const record of records) {
      // The config may have renamed or dropped the listener: the session still goes on, on the first one.
      const listener = listeners.find((l) => l.name === record.listener) ?? listeners[0];
      if (listener === undefined) continue;
      const backend = this.router.backends.get(record.backend) ?? NO_BACKEND;
      listener.adopt(record, backend, adoptSession(backend, record.target));
    }
  }
}
