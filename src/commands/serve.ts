/** `tcprouter serve` (the default command): listen and forward until SIGINT/SIGTERM. */
import { defineCommand, type ParsedArgs } from "citty";
import { AccessLog } from "../observe/access-log.ts";
import { AddressError, parseAddress, type Address } from "../util/address.ts";
import { adminExposure, startAdmin, type AdminServer } from "../observe/admin.ts";
import { loadAdminAuth, OPEN_READS, type AdminAuth } from "../observe/control.ts";
import { ConfigError, configWarnings, loadConfig, type Config } from "../config/load.ts";
import { checkAddressClashes } from "../config/address-clash.ts";
import { createLogger, event, type LogFormat, type LogLevel, type Logger } from "../util/log.ts";
import { forwardConfig } from "../proxy/forward.ts";
import { createRouter, ListenError, OptionsError } from "../proxy/create-router.ts";
import { holdListeners } from "../workers/bind.ts";
import type { RouterHandle } from "../proxy/handle.ts";
import { workerAdminAddress } from "../workers/admin.ts";
import { isWorker, parseWorkers, reportReady, supervise } from "../workers/supervisor.ts";
import { isUpgrade, takeOver, upgrade, UpgradeError, type Takeover } from "../workers/upgrade.ts";
import * as systemd from "../util/systemd.ts";
import { holdSignals } from "../util/signals.ts";
import { activatedListeners } from "../workers/activation.ts";
import { flagDuration, forwardArgs, logArgs, observeArgs, parseCount, processArgs, UsageError } from "./args.ts";
import { configArgs } from "./check.ts";

const args = { ...configArgs, ...forwardArgs, ...processArgs, ...observeArgs, ...logArgs };

export default defineCommand({
  meta: { name: "serve", description: "Listen and forward every connection (default command)" },
  args,
  async run({ args: flags, rawArgs }) {
    const baseLog = createLogger({ level: flags["log-level"] as LogLevel, format: flags["log-format"] as LogFormat });
    const log = isWorker() ? baseLog.withTag(`worker ${process.env.TCPROUTER_WORKER}`) : baseLog;
    let workers: number;
    try {
      workers = parseWorkers(flags.workers);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    const config = await serveConfig(flags, rawArgs, log);
    const observe = observeOptions(flags, config);
    let auth: AdminAuth = OPEN_READS; // no admin listener (--admin off): no token to read
    try {
      if (observe.admin !== null) auth = adminAuth(flags["admin-token-file"], config);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    // Workers append whole batches of lines to one file (O_APPEND); on a pipe, batches over
    // PIPE_BUF could interleave. A worker serves its admin on the socket its supervisor named.
    const adminTls = observe.admin === null ? null : (config.admin?.tls ?? null);
    if (isWorker()) observe.admin = workerAdminAddress();
    if (workers > 1 && observe.accessLog === "stdout")
      throw new UsageError("--workers: --access-log stdout cannot be used with more than one worker; give a file");
    if (workers > 1 && adminTls !== null)
      throw new UsageError(
        "--workers: [admin] tls works with one process only (the supervisor's merged admin is plain HTTP); drop --workers or the admin's tls",
      );
    const exposure = observe.admin === null || isWorker() ? null : adminExposure(observe.admin, auth, adminTls);
    if (exposure !== null) log.warn(exposure);
    // From here the process may hold listening sockets: a signal waits for its handler (util/signals.ts).
    const early = holdSignals();
    const takeover = await takeOverIfUpgrade();
    if (workers > 1 && !isWorker()) {
      const anyPort = config.listeners.find((listener) => listener.listen.kind === "tcp" && listener.listen.port === 0);
      if (anyPort) throw new UsageError(`--workers: listener ${anyPort.name} asks for port 0; workers must share a fixed port`);
      let held: ReturnType<typeof holdListeners>;
      try {
        held = holdListeners(config, takeover?.listeners ?? activatedListeners(config, log));
      } catch (error) {
        if (error instanceof ListenError) throw new UsageError(error.message);
        throw error;
      }
      await supervise(workers, {
        args: rawArgs,
        log,
        admin: observe.admin,
        auth,
        listeners: held,
        takeover,
        upgradeTimeout: flagDuration("upgrade-timeout", flags["upgrade-timeout"]),
        early,
      });
    }
    // Opened before listening: a path that cannot be opened stops the start.
    const accessLog =
      observe.accessLog === null ? null : new AccessLog({ to: observe.accessLog, format: flags["log-format"] === "json" ? "json" : "text", logger: log });
    // Listening sockets an older process, the supervisor or systemd bound are adopted, not bound.
    const inherited = takeover?.listeners ?? activatedListeners(config, log);
    const handle = await createRouter(config, { logger: log, reusePort: workers > 1, observers: accessLog === null ? [] : [accessLog], inherited });
    if (takeover !== null) {
      handle.handover.restore(takeover.targets);
      const moved = await takeover.ready(handle.handover, log);
      log.info(event(`upgrade: took over the listeners and ${moved} sessions`, { moved }));
    }
    let admin: AdminServer | null = null;
    if (observe.admin !== null) {
      try {
        admin = startAdmin({
          listen: observe.admin,
          router: handle.view,
          logger: log,
          auth,
          trustClientHeader: isWorker(),
          ...(isWorker() ? {} : { upgrade: () => process.kill(process.pid, "SIGUSR2"), tls: adminTls }),
        });
      } catch (error) {
        await handle.stop({ drainTimeout: 0 });
        accessLog?.close();
        throw error;
      }
    }
    if (isWorker()) {
      exitWithSupervisor(log);
      reportReady();
    }
    // The signal handlers first: whoever waits for the `listening on` lines (or READY=1) may signal at once.
    const drainAndExit = stopOnSignals(handle, log, () => accessLog?.close());
    reopenOnUser1(accessLog, log);
    reloadOnHangup(handle, log, flags.config);
    upgradeOnUser2(log, rawArgs, {
      handover: handle.handover,
      activeSessions: () => handle.stats().activeSessions,
      stopAccepting: () => handle.handover.stopAccepting(),
      closeAdmin: () => admin?.stop(),
      finish: () => drainAndExit("upgrade"),
      log,
      readyTimeout: flagDuration("upgrade-timeout", flags["upgrade-timeout"]),
    });
    early.release();
    logListening(handle, config, flags.config ? null : flags.to!, log);
    if (admin !== null && !isWorker()) {
      const changes = auth.token === null ? "read-only: no token" : "changes with the token";
      log.info(event(`admin on ${admin.url} (/metrics, /healthz, /readyz, /status, /api: ${changes})`, { admin: admin.address, control: auth.token !== null }));
    }
    if (takeover !== null) systemd.mainPid(process.pid);
    systemd.ready();
    await new Promise(() => {}); // serve until a signal
  },
});

/** The config file, or the one route of --listen/--to. A bad file: its errors, one line each, and exit 1. */
async function serveConfig(flags: ParsedArgs<typeof args>, rawArgs: string[], log: Logger): Promise<Config> {
  const path = flags.config;
  if (path) {
    const routeFlags = ["--to", "--listen", "--max-connections", "--connect-timeout", "--idle-timeout", "--drain-timeout"];
    const clash = rawArgs.find((arg) => routeFlags.includes(arg.split("=")[0]!));
    if (clash) throw new UsageError(`${clash.split("=")[0]} cannot be used with --config: set it in the config file`);
    try {
      const config = await loadConfig(path);
      const clashes = await checkAddressClashes(config);
      if (clashes.length > 0) throw new ConfigError(path, clashes);
      for (const warning of configWarnings(config)) log.warn(`${path}: ${warning}`);
      return config;
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      for (const line of error.errors) log.error(`${error.source}: ${line}`);
      process.exit(1);
    }
  }
  if (!flags.to) throw new UsageError("--to is required (or --config FILE): the target address, e.g. --to 127.0.0.1:6379");
  try {
    return forwardConfig({
      listen: flags.listen,
      to: flags.to,
      connectTimeout: flagDuration("connect-timeout", flags["connect-timeout"]),
      idleTimeout: flagDuration("idle-timeout", flags["idle-timeout"]),
      maxConnections: parseCount("max-connections", flags["max-connections"]),
      drainTimeout: flagDuration("drain-timeout", flags["drain-timeout"]),
    });
  } catch (error) {
    if (error instanceof OptionsError) throw new UsageError(`--${error.message}`);
    throw error;
  }
}

/** In an upgrade's new process (or new supervisor): the old one's listening sockets and target states. */
async function takeOverIfUpgrade(): Promise<Takeover | null> {
  if (!isUpgrade()) return null;
  try {
    return await takeOver();
  } catch (error) {
    if (error instanceof UpgradeError) throw new UsageError(`upgrade: ${error.message}`);
    throw error;
  }
}

/** One `listening on …` line per listener, with where it forwards (`to`: the --to address, or null with a config). */
function logListening(handle: RouterHandle, config: Config, to: string | null, log: Logger): void {
  for (const bound of handle.listeners) {
    // By name: the handle lists TCP listeners before UDP ones, whatever the file's order.
    const listener = config.listeners.find((l) => l.name === bound.name);
    if (listener === undefined) continue;
    const backend = listener.backend === null ? null : config.backends.get(listener.backend)!;
    const targets = backend === null ? "" : `backend ${backend.name} (${backend.targets.length} target${backend.targets.length === 1 ? "" : "s"})`;
    const routes = listener.routes.length === 0 ? "" : `${listener.routes.length} route${listener.routes.length === 1 ? "" : "s"}`;
    const where = to !== null ? to : listener.mode === "tcp" ? targets : `${routes}${routes && targets ? ", default " : ""}${targets}`;
    const fields = { listener: bound.name, address: bound.address, mode: listener.mode, backend: listener.backend, routes: listener.routes.length };
    log.info(event(`listening on ${bound.address}${listener.mode === "sni" ? " (sni)" : ""} → ${where}`, fields));
  }
}

/**
 * SIGHUP re-reads the config file. A valid file replaces listeners, backends and targets at
 * once (open sessions are untouched); an invalid one, or a listener that cannot be bound,
 * changes nothing: the errors are logged and the current config keeps serving.
 */
function reloadOnHangup(handle: RouterHandle, log: Logger, path: string | undefined): void {
  let reloading = Promise.resolve();
  process.on("SIGHUP", () => {
    if (path === undefined) return void log.warn("SIGHUP: nothing to reload without --config");
    systemd.reloading();
    reloading = reloading.then(async () => {
      try {
        const config = await loadConfig(path);
        const clashes = await checkAddressClashes(config);
        if (clashes.length > 0) throw new ConfigError(path, clashes);
        await handle.resolve(config);
        const summary = handle.reload(config);
        const parts = [`${config.listeners.length} listeners`, `${config.backends.size} backends`];
        if (summary.opened.length > 0) parts.push(`opened ${summary.opened.join(", ")}`);
        if (summary.closed.length > 0) parts.push(`closed ${summary.closed.join(", ")}`);
        if (summary.certificates.length > 0) parts.push(`new certificates on ${summary.certificates.join(", ")}`);
        const fields = {
          config: path,
          listeners: config.listeners.length,
          backends: config.backends.size,
          opened: summary.opened,
          closed: summary.closed,
          certificates: summary.certificates,
        };
        log.info(event(`SIGHUP: reloaded ${path}: ${parts.join("; ")}`, fields));
      } catch (error) {
        const lines = error instanceof ConfigError ? error.errors.map((line) => `${path}: ${line}`) : [(error as Error).message];
        for (const line of lines) log.error(event(`SIGHUP: ${line}`, { signal: "SIGHUP", config: path }));
        log.error(event("SIGHUP: reload failed; the current config keeps serving", { signal: "SIGHUP", config: path, errors: lines.length }));
      }
      systemd.ready();
    });
  });
}

/**
 * `--admin` and `--access-log` override `[admin] listen` and `access_log` of the config file;
 * "off" turns either off.
 */
function observeOptions(flags: { admin?: string; "access-log"?: string }, config: Config): { admin: Address | null; accessLog: string | null } {
  let admin = config.admin?.listen ?? null;
  if (flags.admin !== undefined) {
    try {
      admin = flags.admin === "off" ? null : parseAddress(flags.admin, true);
    } catch (error) {
      if (error instanceof AddressError) throw new UsageError(`--admin: ${error.message}`);
      throw error;
    }
  }
  const accessLog = flags["access-log"] ?? config.accessLog ?? null;
  if (accessLog === "") throw new UsageError("--access-log: expected stdout, off or a file path");
  return { admin, accessLog: accessLog === "off" ? null : accessLog };
}

/** The control API's token: `--admin-token-file`, else `[admin] token_file`, else the environment variable. */
function adminAuth(tokenFile: string | undefined, config: Config): AdminAuth {
  if (tokenFile === "") throw new UsageError("--admin-token-file: expected a file path");
  const source = tokenFile !== undefined ? "--admin-token-file" : "admin.token_file";
  return loadAdminAuth({ tokenFile: tokenFile ?? config.admin?.tokenFile ?? null, protectReads: config.admin?.protectReads ?? false, source });
}

/** SIGUSR1 (logrotate's postrotate) reopens the access log file; without one it is ignored. */
function reopenOnUser1(accessLog: AccessLog | null, log: Logger): void {
  process.on("SIGUSR1", () => {
    if (accessLog === null || accessLog.to === "stdout") return void log.info("SIGUSR1: no access log file to reopen");
    if (accessLog.reopen()) log.info(`SIGUSR1: reopened the access log ${accessLog.to}`);
  });
}

/**
 * SIGINT/SIGTERM: stop accepting, drain, exit 0 with a summary. A second signal exits at once.
 * `closing` runs just before either exit (it writes the access log's last lines); the admin
 * listener stays up meanwhile, so /readyz answers 503 while draining.
 */
function stopOnSignals(handle: RouterHandle, log: Logger, closing: () => void): (signal: string) => void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn(`${signal} again: exiting now`);
      closing();
      process.exit(1);
    }
    stopping = true;
    if (signal !== "upgrade") systemd.stopping();
    const open = handle.stats().activeSessions;
    log.info(event(`${signal}: stopped accepting, draining ${open} open session${open === 1 ? "" : "s"}`, { signal, open }));
    handle.stop().then((summary) => {
      const stats = handle.stats();
      const message =
        `stopped after ${summary.durationMs} ms: ${summary.drained} drained, ${summary.closed} closed at the deadline; ` +
        `${stats.totalSessions} sessions, ${stats.bytesUp} B up, ${stats.bytesDown} B down, ${stats.connectFailures} connect failures`;
      const { activeSessions, queuedBytes, ...totals } = stats;
      log.info(event(message, { signal, ...summary, ...totals }));
      closing();
      process.exit(0);
    });
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  return stop;
}

/**
 * SIGUSR2: upgrade in place (workers/upgrade.ts). A new process that fails to start or to get
 * ready leaves this one serving, with one error line.
 */
function upgradeOnUser2(log: Logger, args: string[], old: Parameters<typeof upgrade>[0]): void {
  process.on("SIGUSR2", () => {
    log.info("SIGUSR2: upgrading: starting the new process");
    upgrade(old, args).catch((error: Error) => log.error(event(`upgrade failed: ${error.message}; this process keeps serving`, { signal: "SIGUSR2" })));
  });
}

/** A worker whose supervisor is gone (killed with SIGKILL) drains and exits rather than live on alone. */
function exitWithSupervisor(log: Logger): void {
  const supervisor = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === supervisor) return;
    clearInterval(timer);
    log.warn("the supervisor is gone: draining and exiting");
    process.kill(process.pid, "SIGTERM");
  }, 1000);
  timer.unref();
}
