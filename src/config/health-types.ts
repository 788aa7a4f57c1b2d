/**
 * The resolved `[backends.NAME.health]` table (health-schema.ts): timing, the steps of a TCP
 * check, a Redis AUTH, an HTTP check.
 */
import type { Address } from "../util/address.ts";
import type { Secret } from "../util/secret.ts";

export interface HealthConfig {
  /** ms between two checks of one target. Must be > 0: a backend with checks off creates no checker. */
  interval: number;
  /** ms one check may take, connect and reply included. Must be > 0. */
  timeout: number;
  /** Consecutive passed checks that mark a down target up. At least 1. */
  rise: number;
  /** Consecutive failed checks (active or reported) that mark a healthy target down. At least 1. */
  fall: number;
  /** Bytes written once connected; null (or empty) = write nothing. */
  send: Uint8Array | null;
  /** Bytes the reply must start with; null (or empty) = connecting (and sending) is enough. */
  expect: Uint8Array | null;
  /**
   * What a check does once connected, in order, after `auth` and after the `send`/`expect`
   * shorthand (a config gives one or the other). Absent or empty = nothing more.
   */
  steps?: HealthStep[];
  /** A Redis `AUTH` sent first, whose reply must be `+OK`; absent or null = none. */
  auth?: HealthAuth | null;
  /** Check this port of the target's host instead of the target's port; absent or null = the target's. */
  port?: number | null;
  /** Check this address instead of the target's (HAProxy's `addr`); absent or null = the target's. */
  address?: Address | null;
  /** What a target's health is before its first checks: `up` (default, as HAProxy) or `down` (it carries nothing until `rise` checks passed). */
  init?: "up" | "down";
  /** `close-sessions`: when a target is marked down, its open sessions are closed (reason `target_down`). Default `none`. */
  onDown?: "none" | "close-sessions";
  /** `close-backup-sessions`: when a primary target is marked up, sessions on backup targets are closed (reason `target_down`). Default `none`. */
  onUp?: "none" | "close-backup-sessions";
  /** `type = "http"`: an HTTP request instead of the TCP steps; absent or null = TCP. */
  http?: HttpCheck | null;
  /** Checks over TLS (default: as the backend dials its targets). */
  tls?: boolean;
  /** Checks over UDP (a backend of UDP listeners): each send step is one datagram, each expect step reads one (backend/health/udp-check.ts). */
  udp?: boolean;
}

/**
 * One step of a TCP health check. `send` writes bytes; `expect` waits for the reply (the bytes
 * after what the previous expect matched) to match: `prefix` (bytes; `hex` in the config is a
 * prefix given in hex), `contains` (a substring anywhere in the bytes so far), `regex` (a
 * JavaScript regular expression tested on the reply so far, read as latin1). `text` is how the
 * config spelled it, for `check` and logs.
 */
export type HealthStep =
  | { send: Uint8Array; text: string }
  | { expect: "prefix" | "contains"; bytes: Uint8Array; text: string }
  | { expect: "regex"; regex: RegExp; text: string };

/** A Redis AUTH (`AUTH password` or `AUTH username password`); the password never appears in logs or `check` output. */
export interface HealthAuth {
  username: string | null;
  password: Secret;
}

/** An HTTP check (Patroni's `GET /primary` on 8008): the status must be one of `status`, and the body contain `body` when set. */
export interface HttpCheck {
  method: string;
  /** Starts with `/`. */
  path: string;
  /** Accepted statuses; default [200]. */
  status: number[];
  /** A substring the body must contain; null = any body. */
  body: string | null;
  /** The Host header; null = the checked address. */
  host: string | null;
}
