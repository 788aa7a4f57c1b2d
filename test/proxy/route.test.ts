/** The SNI route table (ServerNameRoutes): pure and table-driven. */
import { describe, expect, test } from "bun:test";
import { ServerNameError } from "../../src/protocol/sni.ts";
import { ServerNameRoutes, matchServerName, type ServerNameRule } from "../../src/proxy/route.ts";

interface Rule extends ServerNameRule {
  backend: string;
}

describe("matchServerName", () => {
  const routes: Rule[] = [
    { serverNames: ["db.example.com"], backend: "db" },
    { serverNames: ["api.example.com"], alpn: ["h2"], backend: "api-h2" },
    { serverNames: ["API.example.com."], backend: "api" },
    { serverNames: ["*.example.com", "*.example.org"], backend: "wild" },
    { serverNames: ["*.db.example.com"], backend: "wild-db" },
    { alpn: ["acme-tls/1"], backend: "acme" },
    { alpn: ["h2", "h3"], backend: "h2" },
    { default: true, backend: "fallback" },
  ];
  const table = new ServerNameRoutes(routes);

  // Precedence: exact > wildcard > ALPN-only > default; first listed wins within a kind.
  test.each<[string | null, string[], string]>([
    ["db.example.com", [], "db"],
    ["DB.EXAMPLE.COM", [], "db"],
    ["db.example.com.", [], "db"],
    ["db.example.com", ["h2"], "db"], // an exact name beats an ALPN route
    ["api.example.com", ["h2", "http/1.1"], "api-h2"],
    ["api.example.com", ["http/1.1"], "api"],
    ["api.example.com", [], "api"],
    ["a.example.com", [], "wild"],
    ["a.example.org", ["h2"], "wild"], // a wildcard beats an ALPN route
    ["x.db.example.com", [], "wild-db"],
    // a wildcard is one label, as in certificates
    ["a.b.example.com", [], "fallback"],
    ["a.b.example.com", ["h2"], "h2"],
    ["example.com", [], "fallback"],
    [".example.com", [], "fallback"],
    ["other.test", ["acme-tls/1"], "acme"],
    ["other.test", ["http/1.1", "h3"], "h2"],
    ["other.test", ["H2"], "fallback"], // ALPN protocols are exact bytes
    [null, ["h2"], "h2"],
    [null, [], "fallback"],
  ])("%p with ALPN %p → %s", (serverName, alpn, backend) => {
    expect(table.match(serverName, alpn)?.backend).toBe(backend);
    expect(matchServerName(routes, serverName, alpn)?.backend).toBe(backend);
  });

  test("no match and no default is null", () => {
    const noDefault = routes.filter((route) => !route.default);
    expect(matchServerName(noDefault, "unknown.test", [])).toBeNull();
    expect(matchServerName(noDefault, null, [])).toBeNull();
    expect(matchServerName<Rule>([], "db.example.com", [])).toBeNull();
  });

  test.each<[string, Rule[], string]>([
    [
      "two defaults",
      [
        { default: true, backend: "a" },
        { default: true, backend: "b" },
      ],
      "route 2: more than one default route",
    ],
    ["a default with names", [{ default: true, serverNames: ["a.test"], backend: "a" }], "route 1: a default route cannot also match serverNames or alpn"],
    ["an empty alpn list", [{ alpn: [], backend: "a" }], "route 1: alpn is empty"],
    ["a route that matches nothing", [{ serverNames: [], backend: "a" }], "route 1: matches nothing (give serverNames, alpn or default)"],
    ["a bad pattern", [{ serverNames: ["a.*.test"], backend: "a" }], '"a.*.test": "*" is only allowed as the whole first label ("*.example.com")'],
  ])("refuses %s", (_, bad, message) => {
    expect(() => new ServerNameRoutes(bad)).toThrow(ServerNameError);
    expect(() => new ServerNameRoutes(bad)).toThrow(message);
  });
});
