/** `tcprouter serve` (the default command): listen and forward until SIGINT/SIGTERM. */
import { defineCommand } from "citty";
import { createLogger, type LogFormat, type LogLevel } from "../log.ts";
import { forward } from "../router.ts";
import { flagDuration, forwardArgs, logArgs, parseCount, UsageError } from "./args.ts";

const args = { ...forwardArgs, ...logArgs };

export default defineCommand({
  meta: { name: "serve", description: "Listen and forward every connection to the target (default command)" },
  args,
  async run({ args: flags }) {
    if (!flags.to) throw new UsageError("--to is required: the target address, e.g. --to 127.0.0.1:6379");
    const log = createLogger({ level: flags["log-level"] as LogLevel, format: flags["log-format"] as LogFormat });
    const handle = await forward({
      listen: flags.listen,
      to: flags.to,
      connectTimeout: flagDuration("connect-timeout", flags["connect-timeout"]),
      idleTimeout: flagDuration("idle-timeout", flags["idle-timeout"]),
      maxConnections: parseCount("max-connections", flags["max-connections"]),
      drainTimeout: flagDuration("drain-timeout", flags["drain-timeout"]),
      logger: log,
    });
    log.info(`listening on ${handle.address} → ${flags.to}`);

    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        log.warn(`${signal} again: exiting now`);
        process.exit(1);
      }
      stopping = true;
      const open = handle.stats().activeSessions;
      log.info(`${signal}: stopped accepting, draining ${open} open session${open === 1 ? "" : "s"}`);
      handle.stop().then((summary) => {
        const stats = handle.stats();
        log.info(
          `stopped after ${summary.durationMs} ms: ${summary.drained} drained, ${summary.closed} closed at the deadline; ` +
            `${stats.totalSessions} sessions, ${stats.bytesUp} B up, ${stats.bytesDown} B down, ${stats.connectFailures} connect failures`,
        );
        process.exit(0);
      });
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
    await new Promise(() => {}); // serve until a signal
  },
});
