/**
 * Signals that arrive while the process starts. From its first listening socket until its
 * handlers are in place, the default action of SIGHUP, SIGUSR1 and SIGUSR2 (terminate) would
 * end the process and every session it had accepted: a reload, a log rotation or an upgrade
 * sent the moment the port answers must not kill it. `holdSignals` catches them before
 * anything is bound; `release` runs them through the real handlers once those are in place,
 * in the order they came.
 *
 * SIGINT and SIGTERM wait too (the drain they start needs the router), but a second one while
 * starting exits at once with status 1, as a second one does while draining.
 */
const HELD = ["SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2"] as const;

export interface HeldSignals {
  /** Stops holding and hands each signal that came, once per arrival, to the handlers now installed. */
  release(): void;
}

export function holdSignals(): HeldSignals {
  const held: NodeJS.Signals[] = [];
  const hold = (signal: NodeJS.Signals) => {
    const stop = signal === "SIGINT" || signal === "SIGTERM";
    if (stop && held.some((s) => s === "SIGINT" || s === "SIGTERM")) process.exit(1);
    held.push(signal);
  };
  for (const signal of HELD) process.on(signal, hold);
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      // The real handlers are on already, so no signal falls back to its default action here.
      for (const signal of HELD) process.off(signal, hold);
      for (const signal of held) process.emit(signal, signal);
    },
  };
}
