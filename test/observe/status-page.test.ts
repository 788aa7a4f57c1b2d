/**
 * The status page: self-contained, and live in a real browser (Debian's headless Chromium
 * driven by playwright-core; .ci/run installs it, elsewhere these tests are skipped visibly).
 */
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { startAdmin } from "../../src/observe/admin.ts";
import { STATUS_PAGE } from "../../src/observe/status-page.ts";
import { dial, echo, HOST, listen, patternBytes, waitFor } from "../helpers/net.ts";
import { startForward } from "../helpers/router.ts";

const CHROMIUM = "/usr/bin/chromium";
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`skip: the status page browser tests need ${CHROMIUM} (apt-get install -y chromium; .ci/run installs it)`);

describe("the page is self-contained", () => {
  test("no external scripts, styles, images or fonts; it fetches only the relative status path", () => {
    expect(STATUS_PAGE).not.toMatch(/<script[^>]*\ssrc=/i);
    expect(STATUS_PAGE).not.toMatch(/<link\b/i);
    expect(STATUS_PAGE).not.toMatch(/<img\b|@import|url\(/i);
    // The only absolute URL is the SVG namespace name, which is never fetched.
    expect([...STATUS_PAGE.matchAll(/https?:\/\/[^\s"'`)]+/g)].map((m) => m[0])).toEqual(["http://www.w3.org/2000/svg"]);
    expect([...STATUS_PAGE.matchAll(/fetch\(([^,)]+)/g)].map((m) => m[1])).toEqual(['first ? "status?history" : "status"']);
  });
});

describe.skipIf(!hasChromium)(`in headless Chromium (${CHROMIUM})`, () => {
  test("shows the listener and its backend, and the numbers change after traffic", async () => {
    const { chromium } = await import("playwright-core");
    await using upstream = listen(echo);
    await using fwd = await startForward({ to: upstream.address });
    const admin = startAdmin({ listen: `${HOST}:0`, router: fwd.view });
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
      page.on("console", (message) => message.type() === "error" && problems.push(`console: ${message.text()}`));
      // Offline: any request that is not to the admin listener fails the test.
      const requested: string[] = [];
      await page.route("**/*", (route) => {
        const url = route.request().url();
        requested.push(url);
        return url.startsWith(admin.url) ? route.continue() : route.abort();
      });
      await page.goto(admin.url);

      const name = `${HOST}:0`;
      const row = page.locator(`tr[data-listener="${name}"]`);
      await row.waitFor({ timeout: 10_000 });
      const field = (key: string) => row.locator(`td[data-field="${key}"]`).innerText();
      expect(await field("name")).toBe(name);
      expect(await field("address")).toBe(fwd.address);
      expect(await field("backend")).toBe("default");
      expect(await field("accepted")).toBe("0");
      expect(await field("bytesUp")).toBe("0 B");
      expect(await page.locator(`tr[data-target="${upstream.address}"] td[data-field="health"]`).innerText()).toBe("up");
      expect(await page.locator("#state").innerText()).toBe("ready");

      for (const size of [1000, 2000]) {
        await using client = await dial(fwd.port);
        client.write(patternBytes(size));
        await waitFor(() => client.bytesIn === size, 5000, "the echo");
        client.shutdown();
        await waitFor(() => client.closed, 5000, "the session to end");
      }
      // The page polls every second: bounded waits for what it shows next.
      await page.waitForFunction(`document.querySelector('tr[data-listener="${name}"] td[data-field="accepted"]')?.textContent === "2"`, undefined, {
        timeout: 10_000,
      });
      expect(await field("bytesUp")).toBe("2.93 KiB");
      expect(await field("bytesDown")).toBe("2.93 KiB");
      expect(await page.locator("#total-sessions").innerText()).toBe("2");
      expect(await page.locator(`tr[data-target="${upstream.address}"] td[data-field="sessions"]`).innerText()).toBe("2");
      // After a few polls the charts have lines.
      await page.waitForFunction('document.querySelectorAll("#chart-sessions path, #chart-bytes path").length === 4', undefined, { timeout: 10_000 });

      expect(problems).toEqual([]);
      expect(requested.every((url) => url.startsWith(admin.url))).toBe(true);
      expect(requested.filter((url) => url.endsWith("/status?history")).length).toBe(1);
      expect(requested.filter((url) => url.endsWith("/status")).length).toBeGreaterThanOrEqual(1);
      if (process.env.STATUS_PAGE_SCREENSHOT) await page.screenshot({ path: process.env.STATUS_PAGE_SCREENSHOT, fullPage: true });
    } finally {
      await browser.close();
      await admin.stop();
    }
  }, 45_000);

  test("shows each target's admin state, and a change made through the control API", async () => {
    const { chromium } = await import("playwright-core");
    await using upstream = listen(echo);
    await using fwd = await startForward({ to: upstream.address });
    const admin = startAdmin({ listen: `${HOST}:0`, router: fwd.view, auth: { token: "page-token", protectReads: false } });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"] });
    try {
      const page = await browser.newPage();
      await page.goto(admin.url);
      const state = page.locator(`tr[data-target="${upstream.address}"] td[data-field="state"]`);
      await state.waitFor({ timeout: 10_000 });
      expect(await state.innerText()).toBe("ready");
      const changed = await fetch(`${admin.url}api/backends/default/targets/${upstream.address}/state`, {
        method: "POST",
        headers: { authorization: "Bearer page-token" },
        body: JSON.stringify({ state: "drain" }),
      });
      expect(changed.status).toBe(200);
      await page.waitForFunction(`document.querySelector('tr[data-target="${upstream.address}"] td[data-field="state"]')?.textContent === "drain"`, undefined, {
        timeout: 10_000,
      });
    } finally {
      await browser.close();
      await admin.stop();
    }
  }, 45_000);

  test("shows that the router is draining, then that it cannot be reached", async () => {
    const { chromium } = await import("playwright-core");
    await using upstream = listen(echo);
    await using fwd = await startForward({ to: upstream.address });
    const admin = startAdmin({ listen: `${HOST}:0`, router: fwd.view });
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
    });
    try {
      const page = await browser.newPage();
      await page.goto(admin.url);
      await page.locator("#state", { hasText: "ready" }).waitFor({ timeout: 10_000 });
      await using held = await dial(fwd.port);
      const stopped = fwd.stop({ drainTimeout: 10_000 });
      await page.locator("#state", { hasText: "draining" }).waitFor({ timeout: 10_000 });
      held.shutdown();
      await stopped;
      await admin.stop();
      await page.locator("#state", { hasText: "unreachable" }).waitFor({ timeout: 10_000 });
      expect(await page.locator("#error").innerText()).toContain("cannot reach tcprouter");
    } finally {
      await browser.close();
      await admin.stop();
    }
  }, 45_000);
});
