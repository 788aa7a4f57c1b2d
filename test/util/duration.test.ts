/** parseDuration: pure, table-driven. */
import { describe, expect, test } from "bun:test";
import { DurationError, parseDuration } from "../../src/index.ts";

describe("parseDuration reads milliseconds", () => {
  test.each([
    ["500ms", 500],
    ["1ms", 1],
    ["10s", 10_000],
    ["1.5s", 1500],
    ["0.25s", 250],
    ["2m", 120_000],
    ["1h", 3_600_000],
    ["0", 0],
    ["off", 0],
    ["0s", 0],
    [" 10s ", 10_000],
    ["0.0004s", 0],
    [250, 250],
    [0, 0],
  ] as const)("%p → %p", (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });
});

describe("parseDuration rejects, quoting the input", () => {
  test.each(["", "10", "5x", "-1s", "1.s", ".5s", "s", "10 s", "1e3ms", "10S", "OFF", "1d", "ten seconds"])("%p", (input) => {
    expect(() => parseDuration(input)).toThrow(DurationError);
    expect(() => parseDuration(input)).toThrow(`"${input}" is not a duration (use e.g. 500ms, 10s, 2m, or off)`);
  });

  test.each([-1, Number.NaN, Number.POSITIVE_INFINITY])("the number %p", (input) => {
    expect(() => parseDuration(input)).toThrow(DurationError);
    expect(() => parseDuration(input)).toThrow(`"${input}" is not a duration`);
  });
});
