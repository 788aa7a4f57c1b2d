/** Sizes and rates as a config writes them (util/size.ts): table-driven. */
import { describe, expect, test } from "bun:test";
import { formatSize, parseSize, SizeError } from "../../src/util/size.ts";

describe("parseSize", () => {
  test.each([
    ["4096", 4096],
    ["0", 0],
    ["512B", 512],
    ["100MB", 100_000_000],
    ["100 MB", 100_000_000],
    ["1kB", 1000],
    ["1KB", 1000],
    ["64MiB", 67_108_864],
    ["1KiB", 1024],
    ["2GiB", 2 * 1024 ** 3],
    ["1.5MB", 1_500_000],
    ["1.5KiB", 1536],
    [" 3GB ", 3_000_000_000],
  ] as const)("%p is %p bytes", (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  test("a number is bytes", () => {
    expect(parseSize(1234)).toBe(1234);
  });

  test.each([
    ["", 'is not a size (use bytes, or a number with B, kB, MB, GB, KiB, MiB or GiB: "64MiB", "100MB")'],
    ["MB", "is not a size"],
    ["-1MB", "is not a size"],
    ["10 parsecs", 'unknown unit "parsecs" (use: B, kB, MB, GB, KiB, MiB or GiB)'],
    // A lower-case b is bits in most tools: "100Mb" read as 100 MB would be eight times the rate meant.
    ["100Mb", 'unknown unit "Mb" (a lower-case b is bits; sizes are bytes: B, kB, MB, GB, KiB, MiB or GiB)'],
    ["10Mbps", "a lower-case b is bits"],
    ["1kb", "a lower-case b is bits"],
    ["64mib", "a lower-case b is bits"],
    ["512b", "a lower-case b is bits"],
    ["10Mb/s", "is not a size"],
    ["99999999999999GiB", "is too large"],
  ])("refuses %p", (text, message) => {
    expect(() => parseSize(text)).toThrow(SizeError);
    expect(() => parseSize(text)).toThrow(message);
  });

  test.each([-1, 1.5, Number.NaN])("refuses the number %p", (n) => {
    expect(() => parseSize(n)).toThrow("is not a whole number of bytes");
  });
});

test.each([
  [64 * 1024 ** 2, "64 MiB"],
  [100_000_000, "100 MB"],
  [1000, "1 kB"],
  [1536, "1536 B"],
  [0, "0 B"],
])("formatSize(%p) is %p", (bytes, text) => {
  expect(formatSize(bytes)).toBe(text);
});
