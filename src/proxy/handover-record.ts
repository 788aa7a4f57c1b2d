/**
 * What an older process tells the new one in an upgrade (handover.ts), as plain values sent as
 * JSON over the IPC channel, and the handover's interface on the router handle. The descriptors
 * are the old process's: the new one takes copies with pidfd_getfd and puts its own in
 * `clientFd` / `upstreamFd` before adopting.
 */
import type { SavedTarget } from "../backend/handover.ts";

/** A listening socket bound by someone else (an older process, the supervisor, systemd), adopted by descriptor. */
export interface InheritedListener {
  /** The listen address as configured, formatted (`127.0.0.1:11000`, `unix:/run/x.sock`): what the listener is matched by. */
  address: string;
  fd: number;
  /** The bound port (a config that asked for port 0 gets the old one); 0 for unix sockets. */
  port: number;
}

/** Backend name → target key → what the old process knew of it. */
export type SavedTargets = Record<string, Record<string, SavedTarget>>;

/** Hands a router to a new process, or takes one over (implemented in handover.ts). */
export interface HandoverApi {
  /** The listening sockets, for the new process to adopt. */
  listeners(): InheritedListener[];
  /** Stops accepting on every listener (the new process accepts on the same sockets); sessions go on. */
  stopAccepting(): void;
  /** Every target's admin state, weight, health and counters. */
  targets(): SavedTargets;
  /** In the new process: the old process's target states, onto the targets this config keeps. */
  restore(saved: SavedTargets): void;
  /** Pauses every movable session and returns its record; the others go on (and drain). */
  freeze(): SessionRecord[];
  /** The new process took the records at these indexes: close this process's copies silently; resume the rest. Returns how many moved. */
  handedOff(taken: ReadonlySet<number>): number;
  /** In the new process: takes over sessions whose descriptors were copied into `clientFd` / `upstreamFd`. */
  adopt(records: readonly SessionRecord[]): void;
}

export interface SessionRecord {
  listener: string;
  backend: string;
  target: string;
  /** The old process's descriptors. */
  client: number;
  upstream: number;
  /** The new process's copies (set there). */
  clientFd?: number;
  upstreamFd?: number;
  clientHost: string;
  clientPort: number;
  sni: string;
  openedAt: number;
  bytesUp: number;
  bytesDown: number;
  /** Bytes read and not yet written, each direction, base64. */
  up: string;
  down: string;
}
