import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderPlan } from "../../src/commands/check.ts";
import { DEFAULTS } from "../../src/config/defaults.ts";
import {
  ConfigError,
  configWarnings,
  loadConfig,
  parseConfig,
  type BackendConfig,
  type HealthConfig,
  type Config,
  type ConfigFormat,
  type ListenerConfig,
} from "../../src/config/load.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const FIXTURES = "test/fixtures/config";
const bytes = (text: string) => new TextEncoder().encode(text);

/** The error lines of a config that must fail. */
function errorsOf(text: string, format: ConfigFormat = "toml"): string[] {
  try {
    parseConfig(text, format, `test.${format}`);
  } catch (error) {
    if (error instanceof ConfigError) return error.errors;
    throw error;
  }
  throw new Error("the config was accepted");
}

/** A valid listener and backend, to which a case adds the one thing it breaks. */
const LISTENER = '[[listeners]]\nlisten = "127.0.0.1:11000"\nbackend = "redis"\n';
const BACKEND = '[backends.redis]\ntargets = ["127.0.0.1:6379"]\n';
const VALID = LISTENER + BACKEND;
/** An sni listener with no backend or routes yet. */
const SNI = '[[listeners]]\nlisten = "127.0.0.1:8443"\nmode = "sni"\n';
/** The test certificates (test/fixtures/tls/certs/make.sh), as absolute paths. */
const CERTS = `${ROOT}test/fixtures/tls/certs`;

const BAD: [name: string, text: string, errors: string[]][] = [
  ["an empty file", "", ["listeners: missing (at least one [[listeners]] table)"]],
  ["no listeners", "listeners = []\n" + BACKEND, ["listeners: expected at least one listener"]],
  [
    "[listeners] written as one table",
    '[listeners]\nlisten = "127.0.0.1:11000"\nbackend = "redis"\n' + BACKEND,
    ["listeners: expected an array of tables ([[listeners]]), got a table"],
  ],
  [
    "a misspelt section",
    LISTENER + '[backend.redis]\ntargets = ["127.0.0.1:6379"]\n',
    ['backend: unknown key (did you mean "backends"?)', 'listeners[0].backend: unknown backend "redis"'],
  ],
  [
    "a listener without a backend",
    '[[listeners]]\nlisten = "127.0.0.1:11000"\n' + BACKEND,
    ["listeners[0].backend: missing (the name of the backend to forward to)"],
  ],
  [
    "a listener without an address",
    '[[listeners]]\nbackend = "redis"\n' + BACKEND,
    ['listeners[0].listen: missing (the address to listen on, e.g. "127.0.0.1:11000")'],
  ],
  [
    "a listener naming an unknown backend",
    VALID + '[[listeners]]\nlisten = "127.0.0.1:11001"\nbackend = "cache"\n',
    ['listeners[1].backend: unknown backend "cache"'],
  ],
  ["no backends at all", LISTENER, ['listeners[0].backend: unknown backend "redis"']],
  [
    "two listeners with one name",
    '[[listeners]]\nname = "a"\nlisten = "127.0.0.1:11000"\nbackend = "redis"\n[[listeners]]\nname = "a"\nlisten = "127.0.0.1:11001"\nbackend = "redis"\n' +
      BACKEND,
    ['listeners[1].name: "a" is already used by listeners[0]'],
  ],
  [
    "an unnamed listener named like another",
    '[[listeners]]\nname = "127.0.0.1:11001"\nlisten = "127.0.0.1:11000"\nbackend = "redis"\n[[listeners]]\nlisten = "127.0.0.1:11001"\nbackend = "redis"\n' +
      BACKEND,
    ['listeners[1].name: "127.0.0.1:11001" is already used by listeners[0] (a listener without a name is named after its listen address)'],
  ],
  [
    "two listeners on one address (hostnames compared without case)",
    VALID +
      '[[listeners]]\nname = "b"\nlisten = "127.0.0.1:11000"\nbackend = "redis"\n[[listeners]]\nname = "c"\nlisten = "LOCALHOST:1"\nbackend = "redis"\n[[listeners]]\nname = "d"\nlisten = "localhost:1"\nbackend = "redis"\n',
    ["listeners[1].listen: 127.0.0.1:11000 is already used by listeners[0]", "listeners[3].listen: localhost:1 is already used by listeners[2]"],
  ],
  ["two unnamed listeners on one address: one error, not two", VALID + LISTENER, ["listeners[1].listen: 127.0.0.1:11000 is already used by listeners[0]"]],
  [
    "bad listen addresses",
    '[[listeners]]\nlisten = "127.0.0.1"\nbackend = "redis"\n[[listeners]]\nlisten = 11000\nbackend = "redis"\n[[listeners]]\nlisten = "::1:80"\nbackend = "redis"\n' +
      BACKEND,
    [
      'listeners[0].listen: "127.0.0.1": expected host:port',
      'listeners[1].listen: expected an address such as "127.0.0.1:6379", got 11000',
      'listeners[2].listen: "::1:80": write IPv6 addresses as [addr]:port',
    ],
  ],
  [
    "bad durations",
    '[defaults]\nconnect_timeout = "5x"\nidle_timeout = 5000\ndrain_timeout = "1000h"\nqueue_timeout = true\n' + VALID,
    [
      'defaults.connect_timeout: "5x" is not a duration (use e.g. 500ms, 10s, 2m, or off)',
      'defaults.idle_timeout: expected a duration such as "10s" or "off", got 5000 (add a unit)',
      'defaults.drain_timeout: "1000h" is too long (at most 596h)',
      'defaults.queue_timeout: expected a duration such as "10s" or "off", got true',
    ],
  ],
  [
    "a bad listener override",
    '[[listeners]]\nlisten = "127.0.0.1:11000"\nbackend = "redis"\nidle_timeout = "10 m"\n' + BACKEND,
    ['listeners[0].idle_timeout: "10 m" is not a duration (use e.g. 500ms, 10s, 2m, or off)'],
  ],
  [
    "negative and fractional counts",
    '[[listeners]]\nlisten = "127.0.0.1:11000"\nbackend = "redis"\nmax_connections = -1\n[backends.redis]\nretries = 1.5\ntargets = [{ address = "127.0.0.1:6379", max_connections = "100" }]\n',
    [
      "listeners[0].max_connections: expected a whole number ≥ 0, got -1",
      "backends.redis.retries: expected a whole number ≥ 0, got 1.5",
      'backends.redis.targets[0].max_connections: expected a whole number ≥ 0, got "100"',
    ],
  ],
  [
    "weights below 1 or not whole",
    LISTENER + '[backends.redis]\ntargets = [{ address = "127.0.0.1:6379", weight = 0 }, { address = "127.0.0.1:6380", weight = 1.5 }]\n',
    ["backends.redis.targets[0].weight: expected a whole number ≥ 1, got 0", "backends.redis.targets[1].weight: expected a whole number ≥ 1, got 1.5"],
  ],
  [
    "a backend without targets",
    LISTENER + '[backends.redis]\nbalance = "least-conn"\n',
    ['backends.redis.targets: missing (a list of addresses such as ["127.0.0.1:6379"])'],
  ],
  [
    "a key after [[listeners]] belongs to that listener",
    LISTENER + 'backends = ["127.0.0.1:6379"]\n',
    ['listeners[0].backends: unknown key (did you mean "backend"?)', 'listeners[0].backend: unknown backend "redis"'],
  ],
  ["backends written as a list", 'backends = ["127.0.0.1:6379"]\n' + LISTENER, ["backends: expected a table of backends ([backends.NAME]), got an array"]],
  ["a backend with an empty target list", LISTENER + "[backends.redis]\ntargets = []\n", ["backends.redis.targets: expected at least one target"]],
  [
    "targets written as one string",
    LISTENER + '[backends.redis]\ntargets = "127.0.0.1:6379"\n',
    ['backends.redis.targets: expected a list of targets such as ["127.0.0.1:6379"], got "127.0.0.1:6379"'],
  ],
  [
    "the same target twice, in either form",
    LISTENER +
      '[backends.redis]\ntargets = ["127.0.0.1:6379", "127.0.0.1:6380", { address = "127.0.0.1:6379", weight = 2 }, "unix:/tmp/r.sock", "unix:/tmp/r.sock"]\n',
    [
      "backends.redis.targets[2]: 127.0.0.1:6379 is already listed as targets[0]",
      "backends.redis.targets[4]: unix:/tmp/r.sock is already listed as targets[3]",
    ],
  ],
  [
    "bad targets",
    LISTENER + '[backends.redis]\ntargets = ["127.0.0.1:0", 6379, { weight = 2 }, { address = "127.0.0.1:6379", backup = "yes" }]\n',
    [
      'backends.redis.targets[0]: "127.0.0.1:0": port 0 is out of range (1-65535)',
      'backends.redis.targets[1]: expected an address or a table such as { address = "127.0.0.1:6379", weight = 2 }, got 6379',
      'backends.redis.targets[2].address: missing (the target\'s address, e.g. "127.0.0.1:6379")',
      'backends.redis.targets[3].backup: expected true or false, got "yes"',
    ],
  ],
  [
    "a resolve interval under 1s, off, or without a unit",
    '[defaults]\nresolve_interval = "500ms"\n' +
      LISTENER +
      '[backends.redis]\ntargets = ["redis.svc:6379"]\nresolve_interval = "off"\n[backends.web]\ntargets = ["web.svc:80"]\nresolve_interval = 30\n',
    [
      'defaults.resolve_interval: expected at least 1s, got "500ms"',
      'backends.redis.resolve_interval: expected a duration longer than 0, got "off"',
      'backends.web.resolve_interval: expected a duration such as "10s", got 30 (add a unit)',
    ],
  ],
  [
    "dns_servers that are not a list of IP addresses",
    'dns_servers = "127.0.0.1"\n' + VALID,
    ['dns_servers: expected a list of DNS servers such as ["127.0.0.1:53"], got "127.0.0.1"'],
  ],
  [
    "a DNS server given by name, with a bad port, not as a string, or in brackets without a port",
    'dns_servers = ["dns.example:53", "127.0.0.1:99999", 53, "[::1]"]\n' + VALID,
    [
      'dns_servers[0]: "dns.example:53": a DNS server must be an IP address, not a name',
      'dns_servers[1]: "127.0.0.1:99999": port 99999 is out of range (1-65535)',
      'dns_servers[2]: expected a DNS server address such as "127.0.0.1:53", got 53',
      'dns_servers[3]: "[::1]": expected [ipv6]:port',
    ],
  ],
  ["an empty dns_servers list", "dns_servers = []\n" + VALID, ["dns_servers: expected at least one server (leave dns_servers out to use the system resolver)"]],
  [
    "dns_servers under [defaults] (it is a top-level key)",
    '[defaults]\ndns_servers = ["127.0.0.1"]\n' + VALID,
    [
      "defaults.dns_servers: unknown key (expected one of: connect_timeout, idle_timeout, write_timeout, half_closed_timeout, max_session_duration, hello_timeout, drain_timeout, queue_timeout, resolve_interval)",
    ],
  ],
  [
    "an unknown balance",
    LISTENER + '[backends.redis]\nbalance = "leastconn"\ntargets = ["127.0.0.1:6379"]\n[backends.web]\nbalance = 1\ntargets = ["127.0.0.1:80"]\n',
    [
      'backends.redis.balance: unknown balance "leastconn" (use round-robin, least-conn, random-two or source-hash)',
      "backends.web.balance: expected round-robin, least-conn, random-two or source-hash, got 1",
    ],
  ],
  [
    "rise and fall below 1",
    VALID + "[backends.redis.health]\nrise = 0\nfall = -2\n",
    ["backends.redis.health.rise: expected a whole number ≥ 1, got 0", "backends.redis.health.fall: expected a whole number ≥ 1, got -2"],
  ],
  [
    "a health timeout longer than the interval",
    VALID + '[backends.redis.health]\ninterval = "1s"\ntimeout = "1500ms"\n',
    ["backends.redis.health.timeout: 1500ms is longer than the interval (1s)"],
  ],
  [
    "a health timeout longer than the default interval",
    VALID + '[backends.redis.health]\ntimeout = "3s"\n',
    ["backends.redis.health.timeout: 3s is longer than the interval (2s)"],
  ],
  [
    "health checks turned off inside the health table",
    VALID + '[backends.redis.health]\ninterval = "off"\ntimeout = "0"\n',
    [
      'backends.redis.health.interval: expected a duration longer than 0, got "off"',
      'backends.redis.health.timeout: expected a duration longer than 0, got "0"',
    ],
  ],
  [
    "send without expect",
    VALID + '[backends.redis.health]\nsend = "PING\\r\\n"\n',
    ["backends.redis.health.expect: missing (a check that sends must say what the reply starts with)"],
  ],
  ["an empty send", VALID + '[backends.redis.health]\nsend = ""\nexpect = "+PONG"\n', ['backends.redis.health.send: expected a non-empty string, got ""']],
  [
    "unknown keys everywhere, with a guess when one is close",
    '[defaults]\nconnect-timeout = "1s"\n[[listeners]]\nlisten = "127.0.0.1:11000"\nbackend = "redis"\nport = 11000\n[backends.redis]\ntargets = [{ address = "127.0.0.1:6379", Weight = 2 }]\n[backends.redis.health]\nexpected = "+PONG"\n',
    [
      'defaults.connect-timeout: unknown key (did you mean "connect_timeout"?)',
      "listeners[0].port: unknown key (expected one of: name, listen, mode, backend, routes, hello_timeout, accept_proxy, trusted, allow, deny, max_connections_per_ip, connection_rate_per_ip, tls, tls_policy, max_connections, connect_timeout, idle_timeout, write_timeout, half_closed_timeout, max_session_duration, upload_rate, download_rate, upload_rate_per_ip, download_rate_per_ip, tcp_keepalive, tcp_user_timeout, protocol, max_flows, max_flows_per_ip, responses)",
      'backends.redis.targets[0].Weight: unknown key (did you mean "weight"?)',
      'backends.redis.health.expected: unknown key (did you mean "expect"?)',
    ],
  ],
  [
    "names with spaces (quoted in the path)",
    '[[listeners]]\nname = "my redis"\nlisten = "127.0.0.1:11000"\nbackend = "my cache"\n[backends."my cache"]\ntargets = ["127.0.0.1:6379"]\n',
    [
      'listeners[0].name: expected a name without spaces, got "my redis"',
      'listeners[0].backend: expected a name without spaces, got "my cache"',
      'backends."my cache": expected a name without spaces, got "my cache"',
    ],
  ],
  [
    "tables where values belong, and values where tables belong",
    "defaults = 1979-05-27\n" + LISTENER + '[backends.redis]\ntargets = [["127.0.0.1:6379"]]\nhealth = true\n',
    [
      "defaults: expected a table, got a date or time",
      'backends.redis.targets[0]: expected an address or a table such as { address = "127.0.0.1:6379", weight = 2 }, got an array',
      "backends.redis.health: expected a table, got true",
    ],
  ],
  [
    "TOML that does not parse: the line where the parser stopped",
    '[[listeners]]\nlisten = "127.0.0.1:11000"\nbackend = "redis"\n\n[backends.redis]\ntargets = [\n  "127.0.0.1:6379",\n  "127.0.0.1:6380"\n  "127.0.0.1:6381",\n]\n',
    ["line 9: not valid TOML: Expected ',' or ']' in an array but found '\"'"],
  ],
  ["a key defined twice", VALID + '[defaults]\nidle_timeout = "1m"\nidle_timeout = "2m"\n', ["line 8: not valid TOML: Cannot redefine key 'idle_timeout'"]],
  [
    "every error of a file, not only the first",
    '[defaults]\nconnect_timeout = "5x"\n' +
      LISTENER +
      '[[listeners]]\nlisten = "127.0.0.1:11001"\nbackend = "cache"\n[backends.redis]\ntargets = [{ address = "127.0.0.1:6379", weight = 0 }]\n',
    [
      'defaults.connect_timeout: "5x" is not a duration (use e.g. 500ms, 10s, 2m, or off)',
      "backends.redis.targets[0].weight: expected a whole number ≥ 1, got 0",
      'listeners[1].backend: unknown backend "cache"',
    ],
  ],
  ["an [admin] table without listen", VALID + "[admin]\n", ['admin.listen: missing (the address to serve metrics and status on, e.g. "127.0.0.1:9901")']],
  [
    "a bad admin address, and an unknown admin key",
    VALID + '[admin]\nlisten = "9901"\nport = 9901\n',
    ['admin.listen: "9901": expected host:port', "admin.port: unknown key (expected one of: listen, token_file, protect_reads, tls)"],
  ],
  [
    "the admin listener on a listener's address",
    VALID + '[admin]\nlisten = "127.0.0.1:11000"\n',
    ["admin.listen: 127.0.0.1:11000 is already used by listeners[0]"],
  ],
  [
    "an admin token file that is missing, a directory, or empty; protect_reads not a boolean",
    VALID + `[admin]\nlisten = "127.0.0.1:9901"\ntoken_file = "${CERTS}/missing.token"\nprotect_reads = "yes"\n`,
    ['admin.protect_reads: expected true or false, got "yes"', `admin.token_file: cannot read ${CERTS}/missing.token: no such file`],
  ],
  [
    "an admin token file that is a directory",
    VALID + `[admin]\nlisten = "127.0.0.1:9901"\ntoken_file = "${CERTS}"\n`,
    [`admin.token_file: cannot read ${CERTS}: is a directory`],
  ],
  ["admin written as a plain value", 'admin = "127.0.0.1:9901"\n' + VALID, ['admin: expected a table, got "127.0.0.1:9901"']],
  ["an empty access_log", 'access_log = ""\n' + VALID, ['access_log: expected "stdout", "off" or a file path, got ""']],
  ["access_log as a number", "access_log = 1\n" + VALID, ['access_log: expected "stdout", "off" or a file path, got 1']], // ── Issue 5: SNI routes, PROXY protocol, ACLs, TLS ──
  [
    "an unknown mode",
    LISTENER + 'mode = "tls"\n' + '[[listeners]]\nlisten = "127.0.0.1:11001"\nbackend = "redis"\nmode = 1\n' + BACKEND,
    ['listeners[0].mode: unknown mode "tls" (use "tcp" or "sni")', 'listeners[1].mode: expected "tcp" or "sni", got 1'],
  ],
  [
    "routes and hello_timeout on a tcp listener",
    LISTENER + 'hello_timeout = "1s"\n[[listeners.routes]]\nserver_names = ["a.example.com"]\nbackend = "redis"\n' + BACKEND,
    [
      'listeners[0].routes: only for mode = "sni", or routes by client certificate on a listener with tls and tls_policy.verify_client',
      'listeners[0].hello_timeout: only for mode = "sni", tls or accept_proxy = true (a plain listener reads nothing before it dials)',
      'listeners[0].routes[0]: server_names and alpn are for mode = "sni"; a terminating listener routes by client_subject, client_cn or client_fingerprint',
    ],
  ],
  [
    "an sni listener with neither routes nor a backend",
    SNI + BACKEND + SNI.replace("8443", "8444") + "routes = []\n",
    [
      "listeners[0].routes: missing (an sni listener needs [[listeners.routes]], a backend for the clients no route takes, or both)",
      "listeners[1].routes: missing (an sni listener needs [[listeners.routes]], a backend for the clients no route takes, or both)",
    ],
  ],
  [
    "[listeners.routes] written as one table",
    SNI + '[listeners.routes]\nserver_names = ["a.example.com"]\nbackend = "redis"\n' + BACKEND,
    ["listeners[0].routes: expected an array of tables ([[listeners.routes]]), got a table"],
  ],
  [
    "routes that match nothing, bad names and protocols, unknown backends",
    SNI +
      'backend = "redis"\n' +
      '[[listeners.routes]]\nbackend = "redis"\n' +
      '[[listeners.routes]]\nserver_names = ["*", "a.*.example.com", "-a.example.com", "a..example.com"]\nbackend = "redis"\n' +
      '[[listeners.routes]]\nalpn = ["", "h 2"]\nbackend = "redis"\n' +
      '[[listeners.routes]]\nserver_names = []\nalpn = []\nbackend = "redis"\n' +
      '[[listeners.routes]]\nserver_names = ["a.example.com"]\nbackend = "cache"\n' +
      '[[listeners.routes]]\nserver_names = "a.example.com"\n' +
      BACKEND,
    [
      'listeners[0].routes[1].server_names[0]: "*": a lone "*" matches every name: use a default route',
      'listeners[0].routes[1].server_names[1]: "a.*.example.com": "*" is only allowed as the whole first label ("*.example.com")',
      'listeners[0].routes[1].server_names[2]: "-a.example.com": "-a" is not a valid DNS label',
      'listeners[0].routes[1].server_names[3]: "a..example.com": empty label',
      'listeners[0].routes[2].alpn[0]: expected an ALPN protocol id such as "h2" or "http/1.1" (1-255 printable ASCII characters), got ""',
      'listeners[0].routes[2].alpn[1]: expected an ALPN protocol id such as "h2" or "http/1.1" (1-255 printable ASCII characters), got "h 2"',
      "listeners[0].routes[3].server_names: expected at least one name (leave server_names out to match by alpn alone)",
      "listeners[0].routes[3].alpn: expected at least one protocol (leave alpn out to match by server name alone)",
      'listeners[0].routes[5].server_names: expected a list of server names such as ["db.example.com", "*.example.com"], got "a.example.com"',
      "listeners[0].routes[5].backend: missing (the name of the backend for clients this route matches)",
      "listeners[0].routes[0]: expected server_names, alpn or both (the listener's backend takes the clients no route matches)",
      'listeners[0].routes[4].backend: unknown backend "cache"',
    ],
  ],
  [
    "a name an earlier route without alpn already takes (compared normalized)",
    SNI +
      '[[listeners.routes]]\nserver_names = ["DB.example.com.", "*.example.com"]\nbackend = "redis"\n' +
      '[[listeners.routes]]\nserver_names = ["db.example.com"]\nalpn = ["h2"]\nbackend = "redis"\n' +
      '[[listeners.routes]]\nserver_names = ["*.example.com", "x.example.com"]\nbackend = "redis"\n' +
      BACKEND,
    [
      'listeners[0].routes[1].server_names[0]: "db.example.com" is already taken by routes[0], which matches any alpn',
      'listeners[0].routes[2].server_names[0]: "*.example.com" is already taken by routes[0], which matches any alpn',
    ],
  ],
  [
    "tls on an sni listener",
    SNI + `backend = "redis"\ntls = { cert = "${CERTS}/db.pem", key = "${CERTS}/db.key" }\n` + BACKEND,
    ['listeners[0].tls: not allowed with mode = "sni" (SNI passthrough forwards TLS unchanged; to terminate TLS use mode = "tcp")'],
  ],
  [
    "accept_proxy without trusted, trusted without accept_proxy, an empty trusted list",
    LISTENER +
      "accept_proxy = true\n" +
      LISTENER.replace("11000", "11001") +
      'trusted = ["127.0.0.1"]\n' +
      LISTENER.replace("11000", "11002") +
      'accept_proxy = "yes"\ntrusted = []\n' +
      BACKEND,
    [
      'listeners[2].accept_proxy: expected true or false, got "yes"',
      'listeners[2].trusted: expected at least one range (the proxies in front, e.g. ["127.0.0.1/32"])',
      'listeners[0].trusted: missing (the addresses allowed to send a PROXY header, e.g. ["127.0.0.1/32"])',
      "listeners[1].trusted: only used with accept_proxy = true",
    ],
  ],
  [
    "bad CIDRs in allow, deny and trusted",
    LISTENER +
      'allow = ["10.0.0.1/8", "10.0.0.0/33", "fe80::1%eth0", 10, "localhost"]\ndeny = "10.0.0.0/8"\naccept_proxy = true\ntrusted = ["127.0.0.1/32", "::1/129"]\n' +
      BACKEND,
    [
      'listeners[0].trusted[1]: "::1/129": prefix length 129 is out of range (0-128)',
      'listeners[0].allow[0]: "10.0.0.1/8": host bits are set (did you mean "10.0.0.0/8"?)',
      'listeners[0].allow[1]: "10.0.0.0/33": prefix length 33 is out of range (0-32)',
      'listeners[0].allow[2]: "fe80::1%eth0": "fe80::1%eth0" is not an IP address (zone ids are not allowed)',
      'listeners[0].allow[3]: expected a CIDR range such as "10.0.0.0/8", got 10',
      'listeners[0].allow[4]: "localhost": "localhost" is not an IP address',
      'listeners[0].deny: expected a list of CIDR ranges such as ["10.0.0.0/8", "::1/128"], got "10.0.0.0/8"',
    ],
  ],
  [
    "per-IP limits that are not whole numbers ≥ 0",
    LISTENER + "max_connections_per_ip = -1\nconnection_rate_per_ip = 0.5\n" + BACKEND,
    ["listeners[0].max_connections_per_ip: expected a whole number ≥ 0, got -1", "listeners[0].connection_rate_per_ip: expected a whole number ≥ 0, got 0.5"],
  ],
  [
    "listener certificates and keys that are missing, not PEM, or not a pair (read at load)",
    [
      `tls = { cert = "${CERTS}/missing.pem", key = "${CERTS}/db.key" }`,
      `tls = { cert = "${CERTS}/db.key", key = "${CERTS}/db.pem" }`,
      `tls = { cert = "${CERTS}/db.pem", key = "${CERTS}/web.key" }`,
      `tls = { cert = "${CERTS}/db.pem" }`,
      `tls = "${CERTS}/db.pem"`,
      `tls = { cert = "${CERTS}", key = "", pass = "x" }`,
    ]
      .map((tls, i) => LISTENER.replace("11000", String(11000 + i)) + tls + "\n")
      .join("") + BACKEND,
    [
      "listeners[3].tls.key: missing (the private key file, PEM)",
      `listeners[4].tls: expected a table such as { cert = "cert.pem", key = "key.pem" }, or a list of them, got "${CERTS}/db.pem"`,
      'listeners[5].tls.key: expected a file path, got ""',
      "listeners[5].tls.pass: unknown key (expected one of: cert, key, names, ciphers, ciphersuites, min_version, max_version, curves)",
      `listeners[0].tls.cert: cannot read ${CERTS}/missing.pem: no such file`,
      `listeners[1].tls.cert: ${CERTS}/db.key is not a PEM certificate`,
      `listeners[1].tls.key: ${CERTS}/db.pem is not a PEM private key`,
      `listeners[2].tls.key: ${CERTS}/web.key is not the key of the certificate in ${CERTS}/db.pem`,
      `listeners[5].tls.cert: cannot read ${CERTS}: is a directory`,
    ],
  ],
  [
    "a list of certificates: an empty list, errors in one entry with its index, bad names",
    [
      "tls = []",
      `tls = [{ cert = "${CERTS}/db.pem", key = "${CERTS}/db.key" }, { cert = "${CERTS}/web.pem", key = "${CERTS}/db.key" }, "x"]`,
      `tls = [{ cert = "${CERTS}/db.pem", key = "${CERTS}/db.key", names = [] }, { cert = "${CERTS}/web.pem", key = "${CERTS}/web.key", names = ["a b"] }]`,
    ]
      .map((tls, i) => LISTENER.replace("11000", String(11000 + i)) + tls + "\n")
      .join("") + BACKEND,
    [
      "listeners[0].tls: expected at least one certificate",
      `listeners[1].tls[2]: expected a table such as { cert = "cert.pem", key = "key.pem" }, got "x"`,
      "listeners[2].tls[0].names: expected at least one name (leave names out to use the certificate's own)",
      'listeners[2].tls[1].names[0]: "a b": "a b" is not a valid DNS label',
      `listeners[1].tls[1].key: ${CERTS}/db.key is not the key of the certificate in ${CERTS}/web.pem`,
    ],
  ],
  [
    "bad send_proxy and backend tls values; a CA file that is missing or not a certificate",
    LISTENER +
      `[backends.redis]\ntargets = ["127.0.0.1:6379"]\nsend_proxy = "v3"\ntls = { servername = "*.example.com", ca = "${CERTS}/missing-ca.pem", verify = "yes" }\n` +
      `[backends.b]\ntargets = ["127.0.0.1:1"]\nsend_proxy = 2\ntls = { ca = "${CERTS}/db.key", sni = "x" }\n` +
      '[backends.c]\ntargets = ["127.0.0.1:1"]\ntls = true\n',
    [
      'backends.redis.send_proxy: unknown PROXY protocol version "v3" (use "v1", "v2" or "off")',
      'backends.redis.tls.servername: "*.example.com": a wildcard cannot be sent as a server name',
      'backends.redis.tls.verify: expected true or false, got "yes"',
      'backends.b.send_proxy: expected "v1", "v2" or "off", got 2',
      "backends.b.tls.sni: unknown key (expected one of: servername, ca, verify, cert, key, min_version, max_version, ciphers, ciphersuites)",
      'backends.c.tls: expected a table such as { servername = "db.example.com", ca = "ca.pem" }, got true',
      `backends.redis.tls.ca: cannot read ${CERTS}/missing-ca.pem: no such file`,
      `backends.b.tls.ca: ${CERTS}/db.key is not a PEM certificate`,
    ],
  ],
];

const BAD_JSON: [name: string, text: string, errors: string[]][] = [
  [
    "JSON that does not parse (no line: the parser does not say)",
    '{"listeners": [{"listen": "127.0.0.1:11000",}]}',
    ["not valid JSON: Property name must be a string literal"],
  ],
  ["a JSON array at the top", "[]", ["expected a table, got an array"]],
  ["null in JSON", '{"listeners": null}', ["listeners: expected an array of tables ([[listeners]]), got null"]],
  [
    "camelCase keys in JSON",
    '{"listeners": [{"listen": "127.0.0.1:11000", "backend": "redis", "maxConnections": 5}], "backends": {"redis": {"targets": ["127.0.0.1:6379"]}}}',
    ['listeners[0].maxConnections: unknown key (did you mean "max_connections"?)'],
  ],
];

describe("a bad config is rejected with every error, each with its path", () => {
  for (const [name, text, errors] of BAD) test(name, () => expect(errorsOf(text)).toEqual(errors));
  for (const [name, text, errors] of BAD_JSON) test(name, () => expect(errorsOf(text, "json")).toEqual(errors));
});

/** The keys of issue 5 (SNI, PROXY, ACLs, TLS) at their defaults. */
const TCP_LISTENER = {
  mode: "tcp",
  routes: [],
  helloTimeout: 10_000,
  acceptProxy: false,
  trusted: [],
  allow: [],
  deny: [],
  maxConnectionsPerIp: 0,
  connectionRatePerIp: 0,
  tls: null,
  writeTimeout: 120_000,
  halfClosedTimeout: 600_000,
  maxSessionDuration: 0,
} as const satisfies Partial<ListenerConfig>;
/** The session timers' defaults ([defaults] and each listener). */
const TIMER_DEFAULTS = { writeTimeout: 120_000, halfClosedTimeout: 600_000, maxSessionDuration: 0, helloTimeout: 10_000 } as const;
const PLAIN_BACKEND = { sendProxy: null, tls: null, sentinel: null, maxFails: 0, failTimeout: 10_000, slowStart: 0 } as const satisfies Partial<BackendConfig>;
/** What a [health] table resolves to beyond timing and send/expect when it says nothing more. */
const HEALTH_DEFAULTS: Partial<HealthConfig> = { steps: [], auth: null, port: null, address: null, init: "up", onDown: "none", onUp: "none", http: null };

const EXAMPLE: Config = {
  defaults: { connectTimeout: 5000, idleTimeout: 600_000, ...TIMER_DEFAULTS, drainTimeout: 10_000, queueTimeout: 5000 },
  listeners: [
    {
      name: "redis",
      listen: { kind: "tcp", host: "127.0.0.1", port: 11000 },
      ...TCP_LISTENER,
      backend: "redis",
      maxConnections: 10_000,
      connectTimeout: 5000,
      idleTimeout: 600_000,
    },
    {
      name: "unix:/tmp/tcprouter-web.sock",
      listen: { kind: "unix", path: "/tmp/tcprouter-web.sock" },
      ...TCP_LISTENER,
      backend: "web",
      maxConnections: 0,
      connectTimeout: 5000,
      idleTimeout: 60_000,
    },
  ],
  backends: new Map([
    [
      "redis",
      {
        name: "redis",
        balance: "least-conn",
        retries: 2,
        targets: [
          { address: { kind: "tcp", host: "127.0.0.1", port: 6379 }, weight: 1, maxConnections: 0, backup: false },
          { address: { kind: "tcp", host: "127.0.0.1", port: 6380 }, weight: 2, maxConnections: 500, backup: false },
          { address: { kind: "tcp", host: "127.0.0.1", port: 6381 }, weight: 1, maxConnections: 0, backup: true },
        ],
        health: { interval: 2000, timeout: 1000, rise: 2, fall: 3, send: bytes("PING\r\n"), expect: bytes("+PONG"), ...HEALTH_DEFAULTS },
        resolveInterval: 30_000,
        ...PLAIN_BACKEND,
      },
    ],
    [
      "web",
      {
        name: "web",
        balance: "round-robin",
        retries: 2,
        targets: [
          { address: { kind: "tcp", host: "localhost", port: 8080 }, weight: 1, maxConnections: 0, backup: false },
          { address: { kind: "tcp", host: "::1", port: 8081 }, weight: 1, maxConnections: 0, backup: false },
        ],
        health: { interval: 5000, timeout: 1000, rise: 2, fall: 3, send: null, expect: null, ...HEALTH_DEFAULTS },
        resolveInterval: 30_000,
        ...PLAIN_BACKEND,
      },
    ],
  ]),
};

describe("a valid config resolves to a typed Config", () => {
  test("the annotated example parses to the expected Config", async () => {
    expect(await loadConfig(`${ROOT}${FIXTURES}/example.toml`)).toEqual(EXAMPLE);
  });

  test("the JSON example parses to the same Config", async () => {
    expect(await loadConfig(`${ROOT}${FIXTURES}/example.json`)).toEqual(EXAMPLE);
  });

  test("a minimal config gets every default", () => {
    const config = parseConfig(VALID + "[backends.redis.health]\n", "toml");
    expect(config).toEqual({
      defaults: { connectTimeout: 10_000, idleTimeout: 0, ...TIMER_DEFAULTS, drainTimeout: 10_000, queueTimeout: 5000 },
      listeners: [
        {
          name: "127.0.0.1:11000",
          listen: { kind: "tcp", host: "127.0.0.1", port: 11000 },
          ...TCP_LISTENER,
          backend: "redis",
          maxConnections: 0,
          connectTimeout: 10_000,
          idleTimeout: 0,
        },
      ],
      backends: new Map([
        [
          "redis",
          {
            name: "redis",
            balance: DEFAULTS.balance,
            retries: 2,
            targets: [{ address: { kind: "tcp", host: "127.0.0.1", port: 6379 }, weight: 1, maxConnections: 0, backup: false }],
            health: { interval: 2000, timeout: 1000, rise: 2, fall: 3, send: null, expect: null, ...HEALTH_DEFAULTS },
            resolveInterval: 30_000,
            ...PLAIN_BACKEND,
          },
        ],
      ]),
    });
    expect(parseConfig(VALID, "toml").backends.get("redis")!.health).toBeNull();
  });

  test("a listener's own timeouts override the defaults; the others inherit them", () => {
    const text =
      '[defaults]\nconnect_timeout = "3s"\nidle_timeout = "1m"\n' +
      '[[listeners]]\nname = "a"\nlisten = "127.0.0.1:0"\nbackend = "redis"\nconnect_timeout = "off"\n' +
      '[[listeners]]\nname = "b"\nlisten = "127.0.0.1:0"\nbackend = "redis"\n' +
      BACKEND;
    const [a, b] = parseConfig(text, "toml").listeners;
    expect([a!.connectTimeout, a!.idleTimeout, b!.connectTimeout, b!.idleTimeout]).toEqual([0, 60_000, 3000, 60_000]);
  });

  test("the health timeout defaults to 1s, or to a shorter interval", () => {
    const health = (table: string) => parseConfig(VALID + `[backends.redis.health]\n${table}`, "toml").backends.get("redis")!.health!;
    expect([health('interval = "500ms"\n').timeout, health('interval = "10s"\n').timeout]).toEqual([500, 1000]);
  });

  test("expect alone (a banner check) is allowed, and strings become their UTF-8 bytes", () => {
    const health = parseConfig(VALID + '[backends.redis.health]\nexpect = "SSH-2.0-\\u00e9"\n', "toml").backends.get("redis")!.health!;
    expect(health.send).toBeNull();
    expect(health.expect).toEqual(new Uint8Array([...bytes("SSH-2.0-"), 0xc3, 0xa9]));
  });

  test('[admin] listen and access_log are read; absent or "off" they are off', () => {
    const config = parseConfig('access_log = "/var/log/tcprouter/access.log"\n' + VALID + '[admin]\nlisten = "127.0.0.1:9901"\n', "toml");
    expect(config.admin).toEqual({ listen: { kind: "tcp", host: "127.0.0.1", port: 9901 }, tokenFile: null, protectReads: false });
    expect(config.accessLog).toBe("/var/log/tcprouter/access.log");
    expect(parseConfig('access_log = "stdout"\n' + VALID, "toml").accessLog).toBe("stdout");
    const off = parseConfig('access_log = "off"\n' + VALID, "toml");
    expect([off.admin, off.accessLog]).toEqual([undefined, undefined]);
    expect(parseConfig(VALID + '[admin]\nlisten = "unix:/run/tcprouter-admin.sock"\n', "toml").admin).toEqual({
      listen: { kind: "unix", path: "/run/tcprouter-admin.sock" },
      tokenFile: null,
      protectReads: false,
    });
  });

  test("[admin] token_file is read at load (relative to the config file), protect_reads is kept", () => {
    const dir = mkdtempSync(join(tmpdir(), "tcprouter-token-"));
    try {
      writeFileSync(join(dir, "admin.token"), "s3cret-token\n", { mode: 0o600 });
      const text = VALID + '[admin]\nlisten = "127.0.0.1:9901"\ntoken_file = "admin.token"\nprotect_reads = true\n';
      const config = parseConfig(text, "toml", join(dir, "router.toml"));
      expect(config.admin).toMatchObject({ tokenFile: join(dir, "admin.token"), protectReads: true });
      writeFileSync(join(dir, "empty.token"), " \n", { mode: 0o600 });
      expect(errorsOf(text.replace("admin.token", join(dir, "empty.token")))).toEqual([
        `admin.token_file: ${join(dir, "empty.token")} is empty (expected the admin token)`,
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("dns_servers become ip:port (53 by default); resolve_interval is the backend's, else the [defaults] one, else 30s", () => {
    const text =
      'dns_servers = ["10.0.0.2", "127.0.0.1:5353", "::1", "[fe80::1]:53"]\n[defaults]\nresolve_interval = "10s"\n' +
      LISTENER +
      '[backends.redis]\ntargets = ["redis.svc:6379"]\nresolve_interval = "1m"\n[backends.web]\ntargets = ["web.svc:80"]\n';
    const config = parseConfig(text, "toml");
    expect(config.dnsServers).toEqual(["10.0.0.2:53", "127.0.0.1:5353", "[::1]:53", "[fe80::1]:53"]);
    expect([config.backends.get("redis")!.resolveInterval, config.backends.get("web")!.resolveInterval]).toEqual([60_000, 10_000]);
    const plain = parseConfig(VALID, "toml");
    expect([plain.dnsServers, plain.backends.get("redis")!.resolveInterval]).toEqual([undefined, 30_000]);
  });

  test("an unused backend is allowed, with a warning", () => {
    const config = parseConfig(VALID + '[backends.spare]\ntargets = ["127.0.0.1:6380"]\n', "toml");
    expect([...config.backends.keys()]).toEqual(["redis", "spare"]);
    expect(configWarnings(config)).toEqual(["backends.spare: not used by any listener"]);
    expect(configWarnings(parseConfig(VALID, "toml"))).toEqual([]);
  });
});

describe("issue 5 keys: SNI routes, PROXY protocol, ACLs, TLS", () => {
  test("the annotated tls example parses to the expected Config; file paths are taken from the config file's directory", async () => {
    const config = await loadConfig(`${ROOT}${FIXTURES}/tls.toml`);
    const base = { ...TCP_LISTENER, maxConnections: 0, connectTimeout: 10_000, idleTimeout: 0 };
    expect(config.listeners).toEqual([
      {
        ...base,
        name: "tls-in",
        listen: { kind: "tcp", host: "127.0.0.1", port: 8443 },
        mode: "sni",
        backend: "web",
        routes: [
          { serverNames: ["db.example.com", "*.db.example.com"], alpn: [], backend: "db" },
          { serverNames: ["api.example.com"], alpn: ["h2"], backend: "h2" },
          { serverNames: [], alpn: ["h2", "http/1.1"], backend: "web" },
        ],
        helloTimeout: 5000,
        acceptProxy: true,
        trusted: ["127.0.0.1/32", "::1/128"],
        allow: ["10.0.0.0/8", "127.0.0.0/8", "::1/128"],
        deny: ["10.0.0.66/32"],
        maxConnectionsPerIp: 100,
        connectionRatePerIp: 20,
      },
      {
        ...base,
        name: "127.0.0.1:6380",
        listen: { kind: "tcp", host: "127.0.0.1", port: 6380 },
        backend: "redis-tls",
        tls: { certificates: [{ cert: `${CERTS}/localhost.pem`, key: `${CERTS}/localhost.key`, names: ["localhost", "upstream.test"] }] },
      },
    ]);
    const backends = [...config.backends.values()].map(({ name, sendProxy, tls }) => ({ name, sendProxy, tls }));
    expect(backends).toEqual([
      { name: "db", sendProxy: "v2", tls: null },
      { name: "h2", sendProxy: null, tls: null },
      { name: "web", sendProxy: "v1", tls: null },
      { name: "redis-tls", sendProxy: null, tls: { serverName: "upstream.test", ca: `${CERTS}/ca.pem`, verify: true } },
    ]);
    expect(configWarnings(config)).toEqual([]);
  });

  test('an sni listener may have no backend (null: no default route); tls = {} and send_proxy = "off" take the defaults', () => {
    const config = parseConfig(
      SNI + '[[listeners.routes]]\nalpn = ["h2"]\nbackend = "redis"\n[backends.redis]\ntargets = ["127.0.0.1:6379"]\nsend_proxy = "off"\ntls = {}\n',
      "toml",
    );
    const [listener] = config.listeners;
    expect([listener!.mode, listener!.backend, listener!.routes, listener!.helloTimeout]).toEqual([
      "sni",
      null,
      [{ serverNames: [], alpn: ["h2"], backend: "redis" }],
      10_000,
    ]);
    expect(config.backends.get("redis")!.sendProxy).toBeNull();
    expect(config.backends.get("redis")!.tls).toEqual({ serverName: null, ca: null, verify: true });
    expect(configWarnings(config)).toEqual([]);
  });

  test("server names are normalized, CIDRs made canonical, relative paths resolved against the source's directory", () => {
    const text =
      SNI +
      'backend = "redis"\nallow = ["10.1.0.0/16", " 127.0.0.1", "::ffff:10.0.0.0/104", "2001:DB8::/32"]\n' +
      '[[listeners.routes]]\nserver_names = ["DB.Example.COM.", "*.Apps.example.com"]\nbackend = "redis"\n' +
      '[backends.redis]\ntargets = ["127.0.0.1:6379"]\ntls = { servername = "Upstream.Test.", ca = "certs/ca.pem", verify = false }\n';
    const config = parseConfig(text, "toml", `${ROOT}test/fixtures/tls/tcprouter.toml`);
    expect(config.listeners[0]!.allow).toEqual(["10.1.0.0/16", "127.0.0.1/32", "10.0.0.0/8", "2001:db8::/32"]);
    expect(config.listeners[0]!.routes[0]!.serverNames).toEqual(["db.example.com", "*.apps.example.com"]);
    expect(config.backends.get("redis")!.tls).toEqual({ serverName: "upstream.test", ca: `${CERTS}/ca.pem`, verify: false });
  });

  test("hello_timeout also bounds the wait for a PROXY header on a tcp listener", () => {
    const config = parseConfig(LISTENER + 'accept_proxy = true\ntrusted = ["127.0.0.1"]\nhello_timeout = "2s"\n' + BACKEND, "toml");
    expect([config.listeners[0]!.acceptProxy, config.listeners[0]!.trusted, config.listeners[0]!.helloTimeout]).toEqual([true, ["127.0.0.1/32"], 2000]);
  });

  test("a backend used only by a route is not reported unused", () => {
    const config = parseConfig(
      SNI + '[[listeners.routes]]\nserver_names = ["a.example.com"]\nbackend = "redis"\n' + BACKEND + '[backends.spare]\ntargets = ["127.0.0.1:1"]\n',
      "toml",
    );
    expect(configWarnings(config)).toEqual(["backends.spare: not used by any listener"]);
  });
});

describe("loading a file", () => {
  test("a missing file, a directory and an unsupported extension are errors naming the file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tcprouter-config-"));
    try {
      const failure = (path: string) =>
        loadConfig(path).then(
          () => null,
          (error: ConfigError) => error.message,
        );
      expect(await failure(join(dir, "missing.toml"))).toBe(`${dir}/missing.toml: cannot read the config file: no such file`);
      const folder = join(dir, "folder.toml");
      await Bun.write(join(folder, "x"), "");
      expect(await failure(folder)).toBe(`${folder}: cannot read the config file: is a directory`);
      expect(await failure(join(dir, "tcprouter.yaml"))).toBe(`${dir}/tcprouter.yaml: unsupported file type ".yaml": use .toml or .json`);
      expect(await failure(join(dir, "tcprouter"))).toBe(`${dir}/tcprouter: unsupported file type (no extension): use .toml or .json`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the error's message has one line per error, each prefixed by the source", () => {
    const error = (() => {
      try {
        parseConfig(LISTENER, "toml", "tcprouter.toml");
      } catch (caught) {
        return caught as ConfigError;
      }
    })()!;
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.source).toBe("tcprouter.toml");
    expect(error.message).toBe('tcprouter.toml: listeners[0].backend: unknown backend "redis"');
  });
});

const PLAN = `defaults: connect_timeout 5s, idle_timeout 10m, drain_timeout 10s, queue_timeout 5s
session timers: hello_timeout 10s, write_timeout 2m, half_closed_timeout 10m, max_session_duration off
listener redis 127.0.0.1:11000 (max_connections 10000) → backend redis (least-conn, retries 2, health: send/expect every 2s)
  127.0.0.1:6379 weight 1
  127.0.0.1:6380 weight 2 max_connections 500
  127.0.0.1:6381 backup
listener unix:/tmp/tcprouter-web.sock (idle_timeout 1m) → backend web (round-robin, retries 2, health: connect every 5s)
  localhost:8080 weight 1
  [::1]:8081 weight 1
`;

test("the plan lists each listener with its backend and targets", () => {
  expect(renderPlan(EXAMPLE)).toBe(PLAN);
  const banner = parseConfig(VALID + '[backends.redis.health]\nexpect = "SSH-"\ninterval = "10s"\n', "toml");
  expect(renderPlan(banner).split("\n")[2]).toBe("listener 127.0.0.1:11000 → backend redis (round-robin, retries 2, health: expect every 10s)");
  expect(renderPlan(parseConfig(VALID, "toml")).split("\n")[2]).toBe("listener 127.0.0.1:11000 → backend redis (round-robin, retries 2, no health checks)");
  expect(
    renderPlan(parseConfig(`${VALID}[admin]\nlisten = "127.0.0.1:9901"\n`, "toml"))
      .split("\n")
      .at(-2),
  ).toBe("admin 127.0.0.1:9901: changes only with $TCPROUTER_ADMIN_TOKEN set; reads open");
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-plan-"));
  try {
    writeFileSync(join(dir, "admin.token"), "t0ken\n", { mode: 0o600 });
    const token = `${VALID}[admin]\nlisten = "unix:/run/a.sock"\ntoken_file = "admin.token"\nprotect_reads = true\n`;
    expect(
      renderPlan(parseConfig(token, "toml", join(dir, "r.toml")))
        .split("\n")
        .at(-2),
    ).toBe(`admin unix:/run/a.sock: changes with the token in ${dir}/admin.token; reads need the token`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const TLS_PLAN = `defaults: connect_timeout 10s, idle_timeout off, drain_timeout 10s, queue_timeout 5s
session timers: hello_timeout 10s, write_timeout 2m, half_closed_timeout 10m, max_session_duration off
listener tls-in 127.0.0.1:8443 (sni, hello_timeout 5s, accept_proxy from 127.0.0.1/32 ::1/128, allow 10.0.0.0/8 127.0.0.0/8 ::1/128, deny 10.0.0.66/32, max_connections_per_ip 100, connection_rate_per_ip 20/s)
  route db.example.com *.db.example.com → backend db (round-robin, retries 2, no health checks, send_proxy v2)
    127.0.0.1:5432 weight 1
  route api.example.com alpn h2 → backend h2 (round-robin, retries 2, no health checks)
    127.0.0.1:8081 weight 1
  route alpn h2 http/1.1 → backend web (round-robin, retries 2, no health checks, send_proxy v1)
    127.0.0.1:8080 weight 1
  default → backend web (round-robin, retries 2, no health checks, send_proxy v1)
    127.0.0.1:8080 weight 1
listener 127.0.0.1:6380 (tls ${CERTS}/localhost.pem (default; localhost upstream.test), tls_policy (TLSv1.2-TLSv1.3; ciphers default; curves default; verify_client off)) → backend redis-tls (round-robin, retries 2, no health checks, tls verifying upstream.test against ${CERTS}/ca.pem)
  127.0.0.1:6379 weight 1
`;

test("the plan of an sni listener has a line per route and one for the default, each with its backend's targets", async () => {
  expect(renderPlan(await loadConfig(`${ROOT}${FIXTURES}/tls.toml`))).toBe(TLS_PLAN);
  const noDefault = parseConfig(
    SNI + '[[listeners.routes]]\nalpn = ["h2"]\nbackend = "redis"\n[backends.redis]\ntargets = ["127.0.0.1:6379"]\ntls = { verify = false }\n',
    "toml",
  );
  expect(renderPlan(noDefault).split("\n").slice(2)).toEqual([
    "listener 127.0.0.1:8443 (sni)",
    "  route alpn h2 → backend redis (round-robin, retries 2, no health checks, tls to the target's host without verification)",
    "    127.0.0.1:6379 weight 1",
    "  default: none (other clients get the TLS alert unrecognized_name)",
    "",
  ]);
});

/** `bun run src/cli.ts check ...`, to completion. */
async function check(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([process.execPath, "run", "src/cli.ts", "check", ...args], {
    cwd: ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

describe("tcprouter check", () => {
  test("prints the plan of a valid file and exits 0", async () => {
    expect(await check("--config", `${FIXTURES}/example.toml`)).toEqual({ code: 0, stdout: PLAN, stderr: "" });
    expect(await check("-c", `${FIXTURES}/example.json`)).toEqual({ code: 0, stdout: PLAN, stderr: "" });
  });

  test("prints the plan of the tls example, whose certificate paths are relative to the file", async () => {
    expect(await check("--config", `${FIXTURES}/tls.toml`)).toEqual({ code: 0, stdout: TLS_PLAN, stderr: "" });
  });

  test("prints every error of an invalid file on stderr, prefixed by the file name, and exits 1", async () => {
    const file = `${FIXTURES}/bad.toml`;
    expect(await check("--config", file)).toEqual({
      code: 1,
      stdout: "",
      stderr: [
        `${file}: defaults.connect_timeout: "5x" is not a duration (use e.g. 500ms, 10s, 2m, or off)`,
        `${file}: backends.redis.targets[0].weight: expected a whole number ≥ 1, got 0`,
        `${file}: backends.redis.health.timeout: 5s is longer than the interval (2s)`,
        `${file}: listeners[1].name: "redis" is already used by listeners[0]`,
        `${file}: listeners[1].backend: unknown backend "cache"`,
        "",
      ].join("\n"),
    });
  });

  test("warns about an unused backend on stderr and still exits 0", async () => {
    const file = `${FIXTURES}/unused-backend.toml`;
    const result = await check("--config", file);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe(`${file}: warning: backends.spare: not used by any listener\n`);
    expect(result.stdout).toContain("listener 127.0.0.1:11000 → backend redis");
  });

  test("a missing file or a missing --config exits 1 with one line and no stack trace", async () => {
    const missing = await check("--config", "nope.toml");
    expect(missing).toEqual({ code: 1, stdout: "", stderr: "nope.toml: cannot read the config file: no such file\n" });
    const noFlag = await check();
    expect(noFlag.code).toBe(1);
    expect(noFlag.stderr).toContain("--config is required");
    expect(noFlag.stderr.trim().split("\n")).toHaveLength(1);
  });
});

test("several listener certificates: names come from each certificate's subjectAltNames unless given; the plan lists them", () => {
  const config = parseConfig(
    `[[listeners]]\nlisten = "127.0.0.1:8443"\nbackend = "app"\ntls = [
  { cert = "${CERTS}/localhost.pem", key = "${CERTS}/localhost.key" },
  { cert = "${CERTS}/apps.pem", key = "${CERTS}/apps.key" },
  { cert = "${CERTS}/web.pem", key = "${CERTS}/web.key", names = ["WWW.example.com."] },
]\n[backends.app]\ntargets = ["127.0.0.1:8080"]\n`,
    "toml",
  );
  expect(config.listeners[0]!.tls!.certificates.map((c) => c.names)).toEqual([["localhost", "upstream.test"], ["*.apps.example.com"], ["www.example.com"]]);
  expect(renderPlan(config).split("\n")[2]).toBe(
    `listener 127.0.0.1:8443 (tls ${CERTS}/localhost.pem (default; localhost upstream.test), ${CERTS}/apps.pem (*.apps.example.com), ${CERTS}/web.pem (www.example.com), tls_policy (TLSv1.2-TLSv1.3; ciphers default; curves default; verify_client off)) → backend app (round-robin, retries 2, no health checks)`,
  );
});
