/**
 * IP addresses and CIDR ranges for source ACLs and PROXY-protocol trust lists.
 *
 * Text ↔ bytes: `parseIp` gives 4 bytes (IPv4) or 16 bytes (IPv6), `formatIp` writes the
 * canonical form (RFC 5952 for IPv6, `::ffff:1.2.3.4` for IPv4-mapped). Parsing is strict:
 * no leading zeros in IPv4 octets (`010.0.0.1` is octal to some tools), no zone ids in ranges.
 *
 * Families: an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`, what a dual-stack listener
 * reports for an IPv4 client) is treated as the IPv4 address everywhere, on both sides: it
 * matches IPv4 rules, and a rule written as `::ffff:10.0.0.0/104` is the IPv4 rule `10.0.0.0/8`.
 * IPv6 rules match only other IPv6 addresses, so `::/0` does not match IPv4 clients; write
 * `0.0.0.0/0` as well to allow everyone.
 */

export class CidrError extends Error {}

/** A parsed range: `network` has its host bits cleared; 4 bytes for IPv4, 16 for IPv6. */
export interface Cidr {
  family: 4 | 6;
  network: Uint8Array;
  prefix: number;
}

// ── Addresses ──────────────────────────────────────────────────────────────────────────────

/** 4 bytes for IPv4, 16 for IPv6 (IPv4-mapped stay 16; see `unmapIPv4`); null if not an IP. */
export function parseIp(text: string): Uint8Array | null {
  if (text.includes(":")) return parseIPv6(text);
  const out = new Uint8Array(4);
  return parseIPv4Into(text, out, 0) ? out : null;
}

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as its 4 IPv4 bytes; other addresses as given. */
export function unmapIPv4(bytes: Uint8Array): Uint8Array {
  return isMappedIPv4(bytes) ? bytes.subarray(12, 16) : bytes;
}

/** The canonical text of 4 or 16 address bytes. */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (isMappedIPv4(bytes)) return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  // RFC 5952: the longest run of two or more zero groups (the first on a tie) becomes "::".
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const hex = (list: number[]) => list.map((group) => group.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

function isMappedIPv4(bytes: Uint8Array): boolean {
  if (bytes.length !== 16 || bytes[10] !== 0xff || bytes[11] !== 0xff) return false;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Writes the 4 bytes of a dotted quad at `offset`; false if `text` is not one. */
function parseIPv4Into(text: string, out: Uint8Array, offset: number): boolean {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const code = i < text.length ? text.charCodeAt(i) : 0x2e; // a final "." closes the last part
    if (code === 0x2e) {
      if (digits === 0 || part > 3) return false;
      out[offset + part++] = value;
      value = 0;
      digits = 0;
    } else if (code >= 0x30 && code <= 0x39) {
      if (digits > 0 && value === 0) return false; // a leading zero
      value = value * 10 + (code - 0x30);
      if (++digits > 3 || value > 255) return false;
    } else {
      return false;
    }
  }
  return part === 4;
}

function parseIPv6(text: string): Uint8Array | null {
  if (text.length < 2 || text.length > 45) return null;
  const gap = text.indexOf("::");
  if (gap >= 0 && text.indexOf("::", gap + 1) >= 0) return null;
  const head = gap < 0 ? text : text.slice(0, gap);
  const tail = gap < 0 ? "" : text.slice(gap + 2);
  const out = new Uint8Array(16);
  const headBytes = parseGroups(head, out, 0, gap < 0);
  if (headBytes < 0) return null;
  if (gap < 0) return headBytes === 16 ? out : null;
  const rest = new Uint8Array(16);
  const tailBytes = parseGroups(tail, rest, 0, true);
  // "::" stands for at least one zero group.
  if (tailBytes < 0 || headBytes + tailBytes > 14) return null;
  out.set(rest.subarray(0, tailBytes), 16 - tailBytes);
  return out;
}

/**
 * Parses colon-separated hex groups into `out` from `offset`; the last group may be a dotted
 * quad when `last` (it ends the address). Returns the bytes written, or -1.
 */
function parseGroups(text: string, out: Uint8Array, offset: number, last: boolean): number {
  if (text === "") return 0;
  const groups = text.split(":");
  let at = offset;
  for (let g = 0; g < groups.length; g++) {
    const group = groups[g]!;
    if (last && g === groups.length - 1 && group.includes(".")) {
      if (at + 4 > 16 || !parseIPv4Into(group, out, at)) return -1;
      at += 4;
    } else {
      if (!/^[0-9a-fA-F]{1,4}$/.test(group) || at + 2 > 16) return -1;
      const value = parseInt(group, 16);
      out[at++] = value >> 8;
      out[at++] = value & 0xff;
    }
  }
  return at - offset;
}

// ── Ranges ─────────────────────────────────────────────────────────────────────────────────

/**
 * Parses `10.0.0.0/8`, `::1/128`, `fe80::/10`; a bare address is a /32 or /128. IPv4-mapped
 * ranges become IPv4 ranges. Throws CidrError quoting the input; host bits must be clear.
 */
export function parseCidr(input: string): Cidr {
  const text = input.trim();
  const slash = text.indexOf("/");
  const addressText = slash < 0 ? text : text.slice(0, slash);
  let bytes = parseIp(addressText);
  if (bytes === null) {
    const what = addressText === "" ? "missing address" : `"${addressText}" is not an IP address`;
    throw new CidrError(`"${input}": ${what}${addressText.includes("%") ? " (zone ids are not allowed)" : ""}`);
  }
  let max = bytes.length * 8;
  let prefix = max;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefixText)) throw new CidrError(`"${input}": prefix length "${prefixText}" is not a number`);
    prefix = Number(prefixText);
    if (prefix > max) throw new CidrError(`"${input}": prefix length ${prefix} is out of range (0-${max})`);
  }
  if (isMappedIPv4(bytes) && prefix >= 96) {
    bytes = bytes.slice(12);
    prefix -= 96;
    max = 32;
  }
  const address = bytes;
  const network = masked(address, prefix);
  if (!network.every((byte, i) => byte === address[i])) {
    const suggestion = formatCidr({ family: max === 32 ? 4 : 6, network, prefix });
    throw new CidrError(`"${input}": host bits are set (did you mean "${suggestion}"?)`);
  }
  return { family: max === 32 ? 4 : 6, network, prefix };
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIp(cidr.network)}/${cidr.prefix}`;
}

function masked(bytes: Uint8Array, prefix: number): Uint8Array {
  const out = bytes.slice();
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    out[i] = out[i]! & (0xff00 >> keep) & 0xff;
  }
  return out;
}

/**
 * A set of CIDR ranges with a membership test for each new connection. Lookups cost one hash
 * probe per distinct prefix length in the set (a few for typical lists, at most 33 / 129),
 * whatever the number of ranges.
 */
export class CidrSet {
  /** By prefix length: the networks as unsigned 32-bit numbers. */
  #v4 = new Map<number, Set<number>>();
  /** By prefix length: the networks as "w0,w1,w2,w3" (32-bit words). */
  #v6 = new Map<number, Set<string>>();
  #size = 0;

  /** Throws CidrError for the first entry that is not a range. */
  constructor(entries: Iterable<string | Cidr> = []) {
    for (const entry of entries) this.add(entry);
  }

  add(entry: string | Cidr): this {
    const cidr = typeof entry === "string" ? parseCidr(entry) : entry;
    const isNew = cidr.family === 4 ? addTo(this.#v4, cidr.prefix, v4Number(cidr.network, 0)) : addTo(this.#v6, cidr.prefix, v6Key(cidr.network, cidr.prefix));
    if (isNew) this.#size++;
    return this;
  }

  /** Distinct ranges. */
  get size(): number {
    return this.#size;
  }

  /**
   * Whether `ip` (as a socket reports it: `127.0.0.1`, `::1`, `::ffff:127.0.0.1`,
   * `fe80::1%eth0`; a zone id is ignored) is in one of the ranges. False for text that is not
   * an IP address; never throws.
   */
  has(ip: string): boolean {
    const percent = ip.indexOf("%");
    const parsed = parseIp(percent < 0 ? ip : ip.slice(0, percent));
    if (parsed === null) return false;
    const bytes = unmapIPv4(parsed);
    if (bytes.length === 4) {
      const value = v4Number(bytes, 0);
      for (const [prefix, networks] of this.#v4) {
        const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
        if (networks.has((value & mask) >>> 0)) return true;
      }
      return false;
    }
    for (const [prefix, networks] of this.#v6) {
      if (networks.has(v6Key(bytes, prefix))) return true;
    }
    return false;
  }
}

function addTo<T>(map: Map<number, Set<T>>, prefix: number, key: T): boolean {
  let networks = map.get(prefix);
  if (networks === undefined) map.set(prefix, (networks = new Set()));
  if (networks.has(key)) return false;
  networks.add(key);
  return true;
}

function v4Number(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0;
}

/** The first `prefix` bits of a 16-byte address as a Set key. */
function v6Key(bytes: Uint8Array, prefix: number): string {
  let key = "";
  for (let word = 0; word < 4; word++) {
    const bits = Math.max(0, Math.min(32, prefix - word * 32));
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    key += `${(v4Number(bytes, word * 4) & mask) >>> 0},`;
  }
  return key;
}
