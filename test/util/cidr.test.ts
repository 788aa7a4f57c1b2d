/** parseIp / formatIp / parseCidr / CidrSet: pure, table-driven. */
import { describe, expect, test } from "bun:test";
import { isIP } from "node:net";
import { CidrError, CidrSet, formatCidr, formatIp, parseCidr, parseIp, unmapIPv4 } from "../../src/util/cidr.ts";

describe("parseIp and formatIp", () => {
  test.each([
    ["127.0.0.1", "127.0.0.1"],
    ["0.0.0.0", "0.0.0.0"],
    ["255.255.255.255", "255.255.255.255"],
    ["::", "::"],
    ["::1", "::1"],
    ["1::", "1::"],
    ["fe80::1", "fe80::1"],
    ["2001:DB8::A", "2001:db8::a"],
    // RFC 5952 §4: leading zeros go, the longest zero run (the first of equals) becomes "::", never for one group
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"],
    ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"],
    ["::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"],
    ["::ffff:127.0.0.1", "::ffff:127.0.0.1"],
    ["::FFFF:7f00:1", "::ffff:127.0.0.1"],
    ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"],
  ])("%p → %p", (input, canonical) => {
    const bytes = parseIp(input);
    expect(bytes).not.toBeNull();
    expect(formatIp(bytes!)).toBe(canonical);
    expect(formatIp(parseIp(canonical)!)).toBe(canonical);
  });

  test.each([
    "",
    "1.2.3",
    "1.2.3.4.5",
    "256.0.0.1",
    "01.2.3.4",
    "1.2.3.04",
    "1..2.3",
    "1.2.3.4 ",
    " 1.2.3.4",
    "a.b.c.d",
    "1.2.3.-1",
    ":",
    ":::",
    "1:::2",
    "1::2::3",
    ":1::",
    "::1:",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8::",
    "12345::",
    "g::1",
    "::ffff:1.2.3",
    "::1.2.3.4:5",
    "fe80::1%eth0",
    "localhost",
  ])("rejects %p", (input) => {
    expect(parseIp(input)).toBeNull();
  });

  test("agrees with node:net and the URL serializer on 2,000 random addresses", () => {
    let state = 42;
    const random = () => (state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0) >>> 24;
    for (let i = 0; i < 2000; i++) {
      const bytes = Uint8Array.from({ length: 16 }, () => random());
      // runs of zeros, so "::" is exercised
      for (let g = random() % 8; g < 8; g += 1 + (random() % 4)) bytes[g * 2] = bytes[g * 2 + 1] = 0;
      if (bytes[10] === 0xff && bytes[11] === 0xff) bytes[11] = 0; // mapped addresses print as IPv4
      const text = formatIp(bytes);
      expect(isIP(text)).toBe(6);
      expect(parseIp(text)).toEqual(bytes);
      expect(new URL(`http://[${text}]/`).hostname).toBe(`[${text}]`);
    }
  });

  test("unmapIPv4 turns ::ffff:a.b.c.d into a.b.c.d and leaves others alone", () => {
    expect(unmapIPv4(parseIp("::ffff:10.1.2.3")!)).toEqual(Uint8Array.of(10, 1, 2, 3));
    expect(unmapIPv4(parseIp("::1")!).length).toBe(16);
    expect(unmapIPv4(parseIp("10.1.2.3")!)).toEqual(Uint8Array.of(10, 1, 2, 3));
  });
});

describe("parseCidr", () => {
  test.each([
    ["127.0.0.1/32", "127.0.0.1/32", 4],
    ["10.0.0.0/8", "10.0.0.0/8", 4],
    ["0.0.0.0/0", "0.0.0.0/0", 4],
    ["192.168.1.7", "192.168.1.7/32", 4],
    ["  172.16.0.0/12 ", "172.16.0.0/12", 4],
    ["::1/128", "::1/128", 6],
    ["::1", "::1/128", 6],
    ["fe80::/10", "fe80::/10", 6],
    ["::/0", "::/0", 6],
    ["2001:DB8::/32", "2001:db8::/32", 6],
    ["::ffff:127.0.0.1", "127.0.0.1/32", 4],
    ["::ffff:10.0.0.0/104", "10.0.0.0/8", 4],
    ["::ffff:0:0/96", "0.0.0.0/0", 4],
  ])("%p → %p", (input, canonical, family) => {
    const cidr = parseCidr(input);
    expect(formatCidr(cidr)).toBe(canonical);
    expect(cidr.family).toBe(family as 4 | 6);
  });

  test.each([
    ["", '"": missing address'],
    ["/8", '"/8": missing address'],
    ["10.0.0.0/", '"10.0.0.0/": prefix length "" is not a number'],
    ["10.0.0.0/x", '"10.0.0.0/x": prefix length "x" is not a number'],
    ["10.0.0.0/-1", '"10.0.0.0/-1": prefix length "-1" is not a number'],
    ["10.0.0.0/33", '"10.0.0.0/33": prefix length 33 is out of range (0-32)'],
    ["::/129", '"::/129": prefix length 129 is out of range (0-128)'],
    ["10.0.0.0/8/8", '"10.0.0.0/8/8": prefix length "8/8" is not a number'],
    ["10.0.0.256/8", '"10.0.0.256/8": "10.0.0.256" is not an IP address'],
    ["localhost", '"localhost": "localhost" is not an IP address'],
    ["fe80::1%eth0/64", '"fe80::1%eth0/64": "fe80::1%eth0" is not an IP address (zone ids are not allowed)'],
    ["10.0.0.1/8", '"10.0.0.1/8": host bits are set (did you mean "10.0.0.0/8"?)'],
    ["192.168.1.10/24", '"192.168.1.10/24": host bits are set (did you mean "192.168.1.0/24"?)'],
    ["fe80::1/10", '"fe80::1/10": host bits are set (did you mean "fe80::/10"?)'],
  ])("rejects %p", (input, message) => {
    expect(() => parseCidr(input)).toThrow(CidrError);
    expect(() => parseCidr(input)).toThrow(message);
  });
});

describe("CidrSet.has", () => {
  const set = new CidrSet(["127.0.0.1/32", "10.0.0.0/8", "192.168.0.0/16", "::1/128", "fe80::/10", "2001:db8:abcd::/48"]);

  test.each([
    ["127.0.0.1", true],
    ["127.0.0.2", false],
    ["10.255.255.255", true],
    ["11.0.0.0", false],
    ["9.255.255.255", false],
    ["192.168.40.2", true],
    ["192.169.0.1", false],
    // IPv4-mapped IPv6 (a dual-stack listener's view of an IPv4 client) matches IPv4 rules
    ["::ffff:127.0.0.1", true],
    ["::ffff:10.1.2.3", true],
    ["::FFFF:7f00:2", false],
    ["::1", true],
    ["::2", false],
    ["fe80::1", true],
    ["fe80::1%eth0", true],
    ["febf:ffff::1", true],
    ["fec0::1", false],
    ["2001:db8:abcd:12::1", true],
    ["2001:db8:abce::1", false],
    // not addresses: false, never a throw
    ["", false],
    ["localhost", false],
    ["10.0.0.0/8", false],
    ["::ffff:10.0.0", false],
  ])("%p → %p", (ip, expected) => {
    expect(set.has(ip)).toBe(expected);
  });

  test("IPv6 rules do not match IPv4 clients, and IPv4 rules do not match IPv6", () => {
    const v6Everything = new CidrSet(["::/0"]);
    expect(v6Everything.has("2001:db8::1")).toBe(true);
    expect(v6Everything.has("1.2.3.4")).toBe(false);
    expect(v6Everything.has("::ffff:1.2.3.4")).toBe(false);
    const v4Everything = new CidrSet(["0.0.0.0/0"]);
    expect(v4Everything.has("1.2.3.4")).toBe(true);
    expect(v4Everything.has("::ffff:1.2.3.4")).toBe(true);
    expect(v4Everything.has("::1")).toBe(false);
    // a rule written as IPv4-mapped IPv6 is an IPv4 rule
    expect(new CidrSet(["::ffff:10.0.0.0/104"]).has("10.9.9.9")).toBe(true);
  });

  test("an empty set has nothing; size counts distinct ranges", () => {
    expect(new CidrSet().has("127.0.0.1")).toBe(false);
    expect(new CidrSet(["10.0.0.0/8", "10.0.0.0/8", "::ffff:10.0.0.0/104", "::1", "::1/128", "0:0::1"]).size).toBe(2);
    expect(() => new CidrSet(["10.0.0.0/8", "nope"])).toThrow('"nope": "nope" is not an IP address');
  });

  test("agrees with a linear scan over 500 random ranges", () => {
    let state = 7;
    const random = () => (state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0) / 4_294_967_296;
    const ranges = Array.from({ length: 500 }, () => {
      const prefix = Math.floor(random() * 33);
      const value = prefix === 0 ? 0 : Math.floor(random() * 2 ** 32) & ((0xffffffff << (32 - prefix)) >>> 0);
      return { value: value >>> 0, prefix };
    });
    const toText = (value: number) => [24, 16, 8, 0].map((shift) => (value >>> shift) & 0xff).join(".");
    const set = new CidrSet(ranges.map((range) => `${toText(range.value)}/${range.prefix}`));
    for (let i = 0; i < 5000; i++) {
      const ip = Math.floor(random() * 2 ** 32) >>> 0;
      const expected = ranges.some(({ value, prefix }) => prefix === 0 || ip >>> (32 - prefix) === value >>> (32 - prefix));
      expect(set.has(toText(ip))).toBe(expected);
    }
  });

  test("is fast enough for every new connection: 120,000 lookups in a 10,000-range set", () => {
    const ranges: string[] = [];
    for (let i = 0; i < 5000; i++) ranges.push(`10.${(i >> 8) & 0xff}.${i & 0xff}.0/24`, `2001:db8:${i.toString(16)}::/48`);
    const big = new CidrSet(ranges);
    expect(big.size).toBe(10_000);
    const probes = ["10.3.7.9", "11.0.0.1", "::ffff:10.0.1.1", "2001:db8:ff::1", "2001:db9::1", "::1"];
    const before = process.cpuUsage();
    let hits = 0;
    for (let i = 0; i < 120_000; i++) if (big.has(probes[i % probes.length]!)) hits++;
    const cpu = process.cpuUsage(before);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    expect(hits).toBe(60_000);
    console.log(`CidrSet: ${((cpuMs * 1e6) / 120_000).toFixed(0)} ns of CPU per lookup (10,000 ranges)`);
    // CPU time, so a busy shared machine does not fail it; about 1 µs per lookup here.
    expect(cpuMs).toBeLessThan(2000);
  });
});
