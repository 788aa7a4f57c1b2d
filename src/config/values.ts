/**
 * The value schemas (valibot) the config sections are made of: durations, addresses, names,
 * CIDR lists, server names, file paths, and `table` (unknown keys are errors, with a guess).
 * Each explains a bad value in one line: `expected a duration such as "10s", got 10 (add a unit)`.
 */
import * as v from "valibot";
import { AddressError, parseAddress, parseDnsServer, parseListenAddress } from "../util/address.ts";
import { formatCidr, parseCidr } from "../util/cidr.ts";
import { closest, describe, isRecord } from "./messages.ts";
import { DEFAULTS } from "./defaults.ts";
import { formatDuration, parseDuration } from "../util/duration.ts";
import { parseServerNamePattern } from "../protocol/sni.ts";
import { createSecureContext } from "node:tls";
import { isIP } from "node:net";
import { parseSize } from "../util/size.ts";
import { type SessionControls, type TcpKeepalive, TLS_VERSIONS } from "./socket-types.ts";

type Message = (issue: v.BaseIssue<unknown>) => string;

export const expected =
  (what: string): Message =>
  (issue) =>
    `expected ${what}, got ${describe(issue.input)}`;

/** setTimeout fires at once for delays of 2^31 ms or more. */
const LONGEST = 2 ** 31 - 1;

export function count(min: 0 | 1) {
  const message = expected(`a whole number ≥ ${min}`);
  return v.pipe(v.number(message), v.safeInteger(message), v.minValue(min, message));
}

/** A duration string in ms; `positive` rejects 0 / "off". */
export function duration(positive = false) {
  return v.pipe(
    v.string(
      (issue) =>
        `expected a duration such as "10s"${positive ? "" : ' or "off"'}, got ${describe(issue.input)}${typeof issue.input === "number" ? " (add a unit)" : ""}`,
    ),
    parsedBy((text) => {
      const ms = parseDuration(text);
      if (positive && ms === 0) throw new Error(`expected a duration longer than 0, got "${text}"`);
      if (ms > LONGEST) throw new Error(`"${text}" is too long (at most ${formatDuration(Math.floor(LONGEST / 3_600_000) * 3_600_000)})`);
      return ms;
    }),
  );
}

export function address(allowPortZero: boolean) {
  return v.pipe(
    v.string(expected('an address such as "127.0.0.1:6379"')),
    parsedBy((text) => parseAddress(text, allowPortZero)),
  );
}

/** Listener and backend names appear in logs and metrics: no spaces or control characters. */
export const name = v.pipe(v.string(expected("a name")), v.regex(/^[^\s\p{C}]+$/u, expected("a name without spaces")));

/** Strings are sent and compared as their UTF-8 bytes. */
export const bytes = v.pipe(
  v.string(expected("a string")),
  v.minLength(1, expected("a non-empty string")),
  v.transform((text) => new TextEncoder().encode(text)),
);

export const boolean = v.boolean(expected("true or false"));

/** Runs a parser that throws errors whose message is the whole explanation. */
function parsedBy<T>(parse: (text: string) => T) {
  return v.rawTransform<string, T>(({ dataset, addIssue, NEVER }) => {
    try {
      return parse(dataset.value);
    } catch (error) {
      addIssue({ message: (error as Error).message });
      return NEVER;
    }
  });
}

/** A table with these keys. Unknown keys are errors; `required` explains each required key. */
export function table<const E extends v.ObjectEntries>(entries: E, required: { [K in keyof E]?: string } = {}, what = "a table") {
  const known = Object.keys(entries);
  const schema = v.pipe(
    // looseObject (and record) alone would take an array or a TOML date for a table.
    v.custom<Record<string, unknown>>(isRecord, expected(what)),
    v.looseObject(entries, (issue) => `missing (${required[String(issue.path?.[0]?.key)] ?? "required"})`),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!isRecord(dataset.value)) return;
      for (const key of Object.keys(dataset.value)) {
        if (known.includes(key)) continue;
        const guess = closest(key, known);
        const message = `unknown key (${guess === null ? `expected one of: ${known.join(", ")}` : `did you mean "${guess}"?`})`;
        addIssue({ message, path: [{ type: "object", origin: "key", input: dataset.value, key, value: dataset.value[key] }] });
      }
    }),
  );
  TABLES.set(schema, { entries, what });
  return schema;
}

/** Every `table()` schema and its keys, for the JSON Schema of the config (json-schema.ts). */
export const TABLES = new WeakMap<object, { entries: v.ObjectEntries; what: string }>();

/** At least 1s: no name is looked up more often than that, whatever its TTL. */
export const resolveInterval = v.pipe(
  duration(true),
  v.minValue(
    DEFAULTS.discovery.minInterval,
    (issue) => `expected at least ${formatDuration(DEFAULTS.discovery.minInterval)}, got "${formatDuration(Number(issue.input))}"`,
  ),
);

/** IP addresses with an optional port: `"10.0.0.2"`, `"127.0.0.1:5353"`, `"[::1]:53"`. */
export const dnsServers = v.pipe(
  v.array(
    v.pipe(v.string(expected('a DNS server address such as "127.0.0.1:53"')), parsedBy(parseDnsServer)),
    expected('a list of DNS servers such as ["127.0.0.1:53"]'),
  ),
  v.minLength(1, "expected at least one server (leave dns_servers out to use the system resolver)"),
);

/** CIDR ranges (a bare address is a /32 or /128), kept in canonical form: `"10.0.0.0/8"`. */
export function cidrList(min: 0 | 1, emptyMessage = "") {
  const list = v.array(
    v.pipe(
      v.string(expected('a CIDR range such as "10.0.0.0/8"')),
      parsedBy((text) => formatCidr(parseCidr(text))),
    ),
    expected('a list of CIDR ranges such as ["10.0.0.0/8", "::1/128"]'),
  );
  return min === 0 ? list : v.pipe(list, v.minLength(1, emptyMessage));
}

/** `db.example.com` or `*.example.com`, normalized (lower case, no trailing dot). */
export function serverNames(emptyMessage: string) {
  return v.pipe(
    v.array(
      v.pipe(v.string(expected('a server name such as "db.example.com" or "*.example.com"')), parsedBy(parseServerNamePattern)),
      expected('a list of server names such as ["db.example.com", "*.example.com"]'),
    ),
    v.minLength(1, emptyMessage),
  );
}

/** RFC 7301 protocol ids as bytes on the wire: printable ASCII, 1-255 of them. */
export const alpnList = v.pipe(
  v.array(
    v.pipe(
      v.string(expected('an ALPN protocol id such as "h2"')),
      v.regex(/^[\x21-\x7e]{1,255}$/, expected('an ALPN protocol id such as "h2" or "http/1.1" (1-255 printable ASCII characters)')),
    ),
    expected('a list of ALPN protocol ids such as ["h2", "http/1.1"]'),
  ),
  v.minLength(1, "expected at least one protocol (leave alpn out to match by server name alone)"),
);

/** A file path; whether it can be read is checked after the schema, in `checkFiles`. */
export const filePath = v.pipe(v.string(expected("a file path")), v.minLength(1, expected("a file path")));

/** The name sent as SNI to a TLS target: a DNS name, no wildcard. */
export const sendServerName = v.pipe(
  v.string(expected('a server name such as "db.example.com"')),
  parsedBy((text) => {
    const name = parseServerNamePattern(text);
    if (name.startsWith("*.")) throw new Error(`"${text}": a wildcard cannot be sent as a server name`);
    return name;
  }),
);

export const sendProxy = v.picklist(["v1", "v2", "off"], (issue) =>
  typeof issue.input === "string"
    ? `unknown PROXY protocol version ${describe(issue.input)} (use "v1", "v2" or "off")`
    : expected('"v1", "v2" or "off"')(issue),
);

export const mode = v.picklist(["tcp", "sni"], (issue) =>
  typeof issue.input === "string" ? `unknown mode ${describe(issue.input)} (use "tcp" or "sni")` : expected('"tcp" or "sni"')(issue),
);

/** `"TLSv1.2"` or `"TLSv1.3"` (TLS 1.0 and 1.1 are not offered by Bun at all). */
export const tlsVersion = v.picklist(TLS_VERSIONS, (issue) =>
  typeof issue.input === "string" ? `unknown TLS version ${describe(issue.input)} (use "TLSv1.2" or "TLSv1.3")` : expected('"TLSv1.2" or "TLSv1.3"')(issue),
);

/** An OpenSSL cipher list for TLS 1.2, checked by building a TLS context with it. */
export const cipherList = v.pipe(
  v.string(expected('an OpenSSL cipher list such as "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"')),
  parsedBy((text) => {
    const names = text.split(":").filter((name) => name !== "");
    if (names.length > 0 && names.every((name) => name.startsWith("TLS_")))
      throw new Error(`"${text}" names only TLS 1.3 suites, which cannot be chosen on this Bun (ciphers is the TLS 1.2 list)`);
    try {
      createSecureContext({ ciphers: text });
    } catch {
      throw new Error(`"${text}" matches no cipher this TLS library knows (e.g. "ECDHE-ECDSA-AES128-GCM-SHA256")`);
    }
    return text;
  }),
);

/** Key exchange groups, `X25519:P-256`, checked by building a TLS context with them. */
export const curveList = v.pipe(
  v.string(expected('a list of groups such as "X25519:P-256"')),
  parsedBy((text) => {
    try {
      createSecureContext({ ecdhCurve: text });
    } catch {
      throw new Error(`"${text}": a group this TLS library does not know (known: X25519, P-256, P-384, P-521, X25519MLKEM768)`);
    }
    return text;
  }),
);

export const verifyClient = v.picklist(["required", "optional", "off"], (issue) =>
  typeof issue.input === "string"
    ? `unknown verify_client ${describe(issue.input)} (use "required", "optional" or "off")`
    : expected('"required", "optional" or "off"')(issue),
);

/**
 * `ciphersuites` (TLS 1.3): refused. Bun 1.4 terminates TLS with BoringSSL, which always
 * enables its three TLS 1.3 suites and has no way to choose among them.
 */
export const ciphersuitesRefused = v.custom<never>(
  () => false,
  "TLS 1.3 cipher suites cannot be chosen on this Bun (BoringSSL always offers TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 and TLS_CHACHA20_POLY1305_SHA256); leave ciphersuites out",
);

/** A key only the listener's tls_policy can take (an SNI context of Bun 1.4 does not apply it). */
export function listenerOnly(key: string) {
  return v.custom<never>(
    () => false,
    `not per certificate on this Bun (a certificate chosen by SNI keeps the listener's ${key}); set it in the listener's tls_policy`,
  );
}

/**
 * A certificate subject as `KEY=value` attributes, `CN=admin,O=ops` (a comma inside a value as
 * `\\,`): the attributes with upper-case keys, in order; null when a part is not `KEY=value`.
 */
export function splitSubject(text: string): [string, string][] | null {
  const parts: [string, string][] = [];
  for (const part of text.split(/(?<!\\),/)) {
    const eq = part.indexOf("=");
    const key = part.slice(0, eq).trim().toUpperCase();
    if (eq <= 0 || !/^[A-Z][A-Z0-9.]*$/.test(key)) return null;
    parts.push([
      key,
      part
        .slice(eq + 1)
        .trim()
        .replaceAll("\\,", ","),
    ]);
  }
  return parts;
}

/** A listener's `listen`: an address (port 0 allowed) or a port range `host:7000-7010` (config/ranges.ts). */
export const listenAddress = v.pipe(v.string(expected('an address such as "127.0.0.1:6379"')), parsedBy(parseListenAddress));

/**
 * A target's address; `host:$port` takes the port the client dialled (config/ranges.ts), and
 * is kept as port 0 with `dialledPort` until then.
 */
export const targetAddress = v.pipe(
  v.string(expected('an address such as "127.0.0.1:6379"')),
  parsedBy((text) => {
    const dialled = /^(.+):\$port$/.exec(text.trim());
    if (dialled === null || text.trim().startsWith("unix:")) return { address: parseAddress(text, false), dialledPort: false };
    try {
      return { address: { ...(parseAddress(`${dialled[1]}:1`) as { kind: "tcp"; host: string }), port: 0 }, dialledPort: true };
    } catch (error) {
      throw new AddressError((error as Error).message.replace(`"${dialled[1]}:1"`, `"${text}"`));
    }
  }),
);

/** An SRV name, `_service._proto.domain` (RFC 2782), kept in lower case without a trailing dot. */
export const srvName = v.pipe(
  v.string(expected('an SRV name such as "_redis._tcp.example.internal"')),
  parsedBy((text) => {
    const name = text.trim().toLowerCase().replace(/\.$/, "");
    const labels = name.split(".");
    const valid = name.length <= 253 && labels.every((label) => /^[a-z0-9_]([a-z0-9_-]{0,62})$/.test(label));
    if (!valid || labels.length < 3 || !labels[0]!.startsWith("_") || !labels[1]!.startsWith("_"))
      throw new Error(`"${text}" is not an SRV name (expected _service._proto.domain, such as "_redis._tcp.example.internal")`);
    return name;
  }),
);

/** A target key an SRV target takes from its records (weight, backup, address): refused next to `srv`, saying why. */
export function fromSrvRecords(why: string) {
  return v.custom<never>(() => false, `not with srv (${why})`);
}

// ── Session controls: bandwidth limits, TCP options, source address ─────────────────────────

/** A bandwidth limit in bytes per second (util/size.ts's words): `"4MB"` (10^6), `"64MiB"` (2^20), a whole number of bytes, or `"off"` (0). */
export const rate = v.pipe(
  v.union([v.string(), v.number()], (issue) => `expected a rate such as "4MB" or "64MiB" (bytes per second) or "off", got ${describe(issue.input)}`),
  v.rawTransform<string | number, number>(({ dataset, addIssue, NEVER }) => {
    if (dataset.value === "off") return 0;
    try {
      return parseSize(dataset.value);
    } catch (error) {
      addIssue({ message: `${(error as Error).message}; or "off"` });
      return NEVER;
    }
  }),
);

/** A keepalive time in ms: whole seconds from 1 s to 32767 s (what TCP_KEEPIDLE and TCP_KEEPINTVL take). */
const keepaliveSeconds = v.pipe(
  duration(true),
  v.check(
    (ms) => ms % 1000 === 0 && ms <= 32_767_000,
    (issue) => `expected whole seconds between 1s and 32767s, got "${formatDuration(Number(issue.input))}"`,
  ),
);

/** `tcp_keepalive = { idle = "60s", interval = "10s", count = 5 }` (keys left out: DEFAULTS.tcpKeepalive) or `"off"`. */
export const tcpKeepalive = v.lazy((input) =>
  typeof input === "string"
    ? v.pipe(
        v.literal("off", (issue) => `expected "off" or a table such as { idle = "60s", interval = "10s", count = 5 }, got ${describe(issue.input)}`),
        v.transform(() => null),
      )
    : v.pipe(
        table(
          {
            idle: v.optional(keepaliveSeconds),
            interval: v.optional(keepaliveSeconds),
            count: v.optional(v.pipe(count(1), v.maxValue(127, expected("a whole number from 1 to 127")))),
          },
          {},
          'a table such as { idle = "60s", interval = "10s", count = 5 }, or "off"',
        ),
        v.transform(
          (k): TcpKeepalive => ({
            idle: k.idle ?? DEFAULTS.tcpKeepalive.idle,
            interval: k.interval ?? DEFAULTS.tcpKeepalive.interval,
            count: k.count ?? DEFAULTS.tcpKeepalive.count,
          }),
        ),
      ),
);

/** The local address of upstream connections: an IP address of this machine (a name would be looked up on every connect). */
export const sourceAddress = v.pipe(
  v.string(expected('an IP address such as "127.0.0.2"')),
  v.check(
    (text) => isIP(text) !== 0,
    (issue) => `expected an IP address such as "127.0.0.2" or "::1", got ${describe(issue.input)}`,
  ),
);

/** The session-control keys of a listener and a backend (their table entries). */
export const SESSION_CONTROL_KEYS = {
  upload_rate: v.optional(rate),
  download_rate: v.optional(rate),
  upload_rate_per_ip: v.optional(rate),
  download_rate_per_ip: v.optional(rate),
  tcp_keepalive: v.optional(tcpKeepalive),
  tcp_user_timeout: v.optional(duration()),
};

/** `{ controls }` when any session-control key is given, else `{}` (a config without them is unchanged). */
export function sessionControls(keys: {
  upload_rate?: number;
  download_rate?: number;
  upload_rate_per_ip?: number;
  download_rate_per_ip?: number;
  tcp_keepalive?: TcpKeepalive | null;
  tcp_user_timeout?: number;
}): { controls?: SessionControls } {
  const { upload_rate, download_rate, upload_rate_per_ip, download_rate_per_ip, tcp_keepalive, tcp_user_timeout } = keys;
  const given = [upload_rate, download_rate, upload_rate_per_ip, download_rate_per_ip, tcp_keepalive, tcp_user_timeout];
  if (given.every((value) => value === undefined)) return {};
  return {
    controls: {
      uploadRate: upload_rate ?? DEFAULTS.rate,
      downloadRate: download_rate ?? DEFAULTS.rate,
      uploadRatePerIp: upload_rate_per_ip ?? DEFAULTS.rate,
      downloadRatePerIp: download_rate_per_ip ?? DEFAULTS.rate,
      tcpKeepalive: tcp_keepalive ?? null,
      tcpUserTimeout: tcp_user_timeout ?? DEFAULTS.tcpUserTimeout,
    },
  };
}
