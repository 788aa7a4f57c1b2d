/**
 * Health checks over UDP, for the backends of UDP listeners (the config sets `udp` on their
 * checks). A probe is a UDP socket connected to the check address; it runs the check's steps
 * in order: each send step is one datagram, each expect step waits for the next datagram and
 * matches it on its own (prefix, contains or regex, as over TCP: `expect_hex = "1234"` checks
 * a DNS reply's ID). The probe fails on a datagram that does not match, on ICMP port
 * unreachable (ECONNREFUSED on the connected socket) and when the timeout passes without the
 * reply (a UDP target that is down usually just says nothing). Never throws.
 */
import type { udp } from "bun";
import type { Address } from "../../util/address.ts";
import { errorCode, firstLine, udpErrorArgs } from "../../util/errors.ts";
import type { HealthStep } from "../../config/types.ts";
import { describeStep, matchStep } from "./check-steps.ts";

/** What the UDP probe needs of a probe (checker.ts's Probe): its end, and a place for its socket's close. */
export interface UdpProbe {
  done: boolean;
  /** Closes the probe's socket; set here, called by the checker when the probe ends. */
  abort: { abort(): void } | null;
}

type Finish<P> = (probe: P, passed: boolean, reason: string) => void;

type ProbeSocket = udp.ConnectedSocket<"buffer"> & { run?: Run<UdpProbe> };

/** One probe's progress through its steps. */
class Run<P extends UdpProbe> {
  step = 0;
  constructor(
    readonly probe: P,
    readonly steps: readonly HealthStep[],
    readonly socket: ProbeSocket,
    readonly finish: Finish<P>,
  ) {}

  /** Sends datagrams up to the next expect step; passes after the last step. */
  advance(): void {
    while (!this.probe.done) {
      const step = this.steps[this.step];
      if (step === undefined) return this.end(true, "");
      if (!("send" in step)) return; // wait for a datagram
      let sent = false;
      try {
        sent = this.socket.send(step.send);
      } catch {
        sent = false;
      }
      if (!sent) return this.end(false, "send failed");
      this.step++;
    }
  }

  datagram(data: Buffer): void {
    if (this.probe.done) return;
    const step = this.steps[this.step];
    if (step === undefined || "send" in step) return; // nothing expected now: ignored
    // A datagram is a whole reply: what did not match in it never will.
    if (typeof matchStep(step, data) !== "number") return this.end(false, `unexpected reply (expected ${describeStep(step)})`);
    this.step++;
    this.advance();
  }

  error(error: unknown): void {
    if (this.probe.done) return;
    const code = errorCode(error);
    this.end(false, code === "ECONNREFUSED" ? "port unreachable (ICMP)" : `socket error (${code ?? firstLine(error)})`);
  }

  end(passed: boolean, reason: string): void {
    this.finish(this.probe, passed, passed ? "" : reason);
  }
}

/**
 * Starts one UDP probe of `address`; `finish` gets its result once (the checker's deadline
 * gives "timeout" when no reply came). The probe's `abort` closes the socket.
 */
export function udpProbe<P extends UdpProbe>(probe: P, address: Address, steps: readonly HealthStep[], finish: Finish<P>): void {
  if (address.kind !== "tcp") return finish(probe, false, "a UDP check needs host:port");
  let socket: ProbeSocket;
  try {
    const options = {
      hostname: address.host.includes(":") ? "::" : "0.0.0.0",
      port: 0,
      binaryType: "buffer" as const,
      connect: { hostname: address.host, port: address.port },
      socket: probeHandlers,
    };
    const made = Bun.peek(Bun.udpSocket(options as unknown as udp.ConnectSocketOptions<"buffer">));
    if (made instanceof Promise) {
      made.then(
        (late) => (late as ProbeSocket).close(),
        () => {},
      );
      return finish(probe, false, "the UDP socket did not open at once");
    }
    socket = made as ProbeSocket;
  } catch (error) {
    return finish(probe, false, `socket failed (${errorCode(error) ?? firstLine(error)})`);
  }
  const run = new Run(probe, steps, socket, finish);
  socket.run = run as unknown as Run<UdpProbe>;
  probe.abort = {
    abort() {
      socket.run = undefined;
      socket.close();
    },
  };
  run.advance();
}

/** Handlers of probe sockets: defined once, the probe's run is the socket's `run`. */
const probeHandlers = {
  data(socket: ProbeSocket, data: Buffer) {
    socket.run?.datagram(data);
  },
  drain() {},
  error(this: unknown, first: unknown, second?: unknown) {
    const [socket, error] = udpErrorArgs<ProbeSocket>(this, first, second);
    socket?.run?.error(error);
  },
};
