/**
 * `sentinel = { master = "mymaster", sentinels = ["127.0.0.1:26379", …] }` on a backend: its
 * target is the primary those sentinels name (backend/sources/sentinel.ts).
 */
import * as v from "valibot";
import { DEFAULTS } from "./defaults.ts";
import { Auth } from "./health-schema.ts";
import type { SentinelConfig } from "./backend-types.ts";
import { address, duration, expected, name, table } from "./values.ts";

export const Sentinel = v.pipe(
  table(
    {
      master: name,
      sentinels: v.pipe(
        v.array(address(false), expected('a list of sentinel addresses such as ["127.0.0.1:26379"]')),
        v.minLength(1, 'expected at least one sentinel, such as ["127.0.0.1:26379"]'),
      ),
      poll_interval: v.optional(duration(true)),
      timeout: v.optional(duration(true)),
      auth: v.optional(Auth),
    },
    { master: 'the master name the sentinels monitor, e.g. "mymaster"', sentinels: 'the sentinels\' addresses, e.g. ["127.0.0.1:26379"]' },
    'a table such as { master = "mymaster", sentinels = ["127.0.0.1:26379"] }',
  ),
  v.transform(
    (s): SentinelConfig => ({
      master: s.master,
      sentinels: s.sentinels,
      pollInterval: s.poll_interval ?? DEFAULTS.sentinel.pollInterval,
      timeout: s.timeout ?? DEFAULTS.sentinel.timeout,
      auth: s.auth ?? null,
    }),
  ),
);
