/** parseAddress / formatAddress: pure, table-driven. */
import { describe, expect, test } from "bun:test";
import { AddressError, formatAddress, parseAddress } from "../../src/index.ts";

describe("parseAddress accepts", () => {
  test.each([
    ["127.0.0.1:6379", { kind: "tcp", host: "127.0.0.1", port: 6379 }],
    ["0.0.0.0:1", { kind: "tcp", host: "0.0.0.0", port: 1 }],
    ["255.255.255.255:65535", { kind: "tcp", host: "255.255.255.255", port: 65535 }],
    ["localhost:11000", { kind: "tcp", host: "localhost", port: 11000 }],
    ["redis.internal.example:6379", { kind: "tcp", host: "redis.internal.example", port: 6379 }],
    ["my_host-1:80", { kind: "tcp", host: "my_host-1", port: 80 }],
    ["fqdn.example.:443", { kind: "tcp", host: "fqdn.example.", port: 443 }],
    ["[::1]:6379", { kind: "tcp", host: "::1", port: 6379 }],
    ["[fe80::1%eth0]:22", { kind: "tcp", host: "fe80::1%eth0", port: 22 }],
    ["[2001:db8::42]:8080", { kind: "tcp", host: "2001:db8::42", port: 8080 }],
    ["  127.0.0.1:80  ", { kind: "tcp", host: "127.0.0.1", port: 80 }],
    ["127.0.0.1:00080", { kind: "tcp", host: "127.0.0.1", port: 80 }],
    ["unix:/tmp/redis.sock", { kind: "unix", path: "/tmp/redis.sock" }],
    ["unix:relative.sock", { kind: "unix", path: "relative.sock" }],
  ])("%p", (input, expected) => {
    expect(parseAddress(input)).toEqual(expected as ReturnType<typeof parseAddress>);
  });

  test("port 0 only for listeners", () => {
    expect(parseAddress("127.0.0.1:0", true)).toEqual({ kind: "tcp", host: "127.0.0.1", port: 0 });
    expect(parseAddress("[::1]:0", true)).toEqual({ kind: "tcp", host: "::1", port: 0 });
    expect(() => parseAddress("127.0.0.1:0")).toThrow('"127.0.0.1:0": port 0 is out of range (1-65535)');
  });
});

describe("parseAddress rejects, quoting the input and naming the problem", () => {
  test.each([
    ["", '"": expected host:port'],
    ["127.0.0.1", '"127.0.0.1": expected host:port'],
    ["nope", '"nope": expected host:port'],
    [":6379", '":6379": missing host'],
    ["127.0.0.1:", '"127.0.0.1:": port "" is not a number'],
    ["127.0.0.1:http", '"127.0.0.1:http": port "http" is not a number'],
    ["127.0.0.1:-1", '"127.0.0.1:-1": port "-1" is not a number'],
    ["127.0.0.1:65536", '"127.0.0.1:65536": port 65536 is out of range (1-65535)'],
    ["127.0.0.1:99999", '"127.0.0.1:99999": port 99999 is out of range (1-65535)'],
    ["127.0.0.1:123456", '"127.0.0.1:123456": port "123456" is not a number'],
    ["256.0.0.1:80", '"256.0.0.1:80": "256.0.0.1" is not an IPv4 address'],
    ["::1:6379", '"::1:6379": write IPv6 addresses as [addr]:port'],
    ["[::1]6379", '"[::1]6379": expected [ipv6]:port'],
    ["[::1:6379", '"[::1:6379": expected [ipv6]:port'],
    ["[127.0.0.1]:80", '"[127.0.0.1]:80": "127.0.0.1" is not an IPv6 address'],
    ["bad host:80", '"bad host:80": "bad host" is not a valid hostname'],
    ["-leading.example:80", '"-leading.example:80": "-leading.example" is not a valid hostname'],
    ["a..b:80", '"a..b:80": "a..b" is not a valid hostname'],
    [`${"a".repeat(64)}:80`, `"${"a".repeat(64)}:80": "${"a".repeat(64)}" is not a valid hostname`],
    ["unix:", '"unix:": unix: needs a path'],
  ])("%p", (input, message) => {
    expect(() => parseAddress(input)).toThrow(AddressError);
    expect(() => parseAddress(input)).toThrow(message);
  });
});

describe("formatAddress writes what parseAddress reads", () => {
  test.each(["127.0.0.1:6379", "localhost:1", "[::1]:6379", "[2001:db8::42]:8080", "unix:/tmp/x.sock"])("%p", (text) => {
    expect(formatAddress(parseAddress(text))).toBe(text);
  });
});
