/**
 * A real Patroni cluster for the HTTP check test: one etcd and two Patroni nodes (PostgreSQL
 * 15), each node on its own loopback address (127.0.0.2, 127.0.0.3) with the same ports, as
 * Patroni runs on one port per host. Patroni and PostgreSQL run as the `postgres` user
 * (PostgreSQL refuses root); data dirs are in a temp dir. Disposable.
 */
import { chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, spawn, waitFor, type Child } from "./net.ts";

const PG_BIN = "/usr/lib/postgresql/15/bin";
const PG_USER = { uid: 101, gid: 104 };

/** patroni, etcd, PostgreSQL 15, and a `postgres` user to run them as (we run as root here). */
export function hasPatroni(): boolean {
  if (["patroni", "etcd", "runuser", "setpriv"].some((tool) => Bun.which(tool) === null)) return false;
  if (!Bun.file(`${PG_BIN}/postgres`).size) return false;
  const id = Bun.spawnSync(["id", "-u", "postgres"]);
  return id.exitCode === 0 && process.getuid?.() === 0;
}

export interface PatroniCluster extends AsyncDisposable {
  hosts: string[];
  /** PostgreSQL's port on every host. */
  pgPort: number;
  /** Patroni's REST API port on every host. */
  apiPort: number;
  /** The host whose GET /primary answers 200, or null. */
  leader(): Promise<string | null>;
  /** `patronictl switchover` to `candidate`. */
  switchover(candidate: string): Promise<void>;
}

export async function startPatroni(): Promise<PatroniCluster> {
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-patroni-"));
  chownSync(dir, PG_USER.uid, PG_USER.gid);
  const children: Child[] = [];
  const hosts = ["127.0.0.2", "127.0.0.3"];
  const [etcdClient, etcdPeer, pgPort, apiPort] = [freePort(), freePort(), freePort(), freePort()];
  const dispose = async () => {
    for (const child of children.reverse()) await child[Symbol.asyncDispose]();
    // Patroni's postgres children outlive a SIGKILLed patroni: stop them by their data dirs.
    for (const name of ["node0", "node1"])
      Bun.spawnSync(["runuser", "-u", "postgres", "--", `${PG_BIN}/pg_ctl`, "-D", join(dir, name), "-m", "immediate", "stop"]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    children.push(
      spawn([
        "etcd",
        "--data-dir",
        join(dir, "etcd"),
        "--listen-client-urls",
        `http://127.0.0.1:${etcdClient}`,
        "--advertise-client-urls",
        `http://127.0.0.1:${etcdClient}`,
        "--listen-peer-urls",
        `http://127.0.0.1:${etcdPeer}`,
        "--initial-advertise-peer-urls",
        `http://127.0.0.1:${etcdPeer}`,
        "--initial-cluster",
        `default=http://127.0.0.1:${etcdPeer}`,
      ]),
    );
    await waitFor(async () => (await fetch(`http://127.0.0.1:${etcdClient}/health`).catch(() => null))?.ok, 15_000, "etcd");
    hosts.forEach((host, i) => {
      const data = join(dir, `node${i}`);
      const file = join(dir, `node${i}.yml`);
      writeFileSync(
        file,
        `scope: tcprouter-test
name: node${i}
restapi:
  listen: ${host}:${apiPort}
  connect_address: ${host}:${apiPort}
etcd3:
  hosts: 127.0.0.1:${etcdClient}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
  initdb:
  - encoding: UTF8
postgresql:
  listen: ${host}:${pgPort}
  connect_address: ${host}:${pgPort}
  data_dir: ${data}
  bin_dir: ${PG_BIN}
  pgpass: ${join(dir, `pgpass${i}`)}
  authentication:
    superuser: {username: postgres, password: pw}
    replication: {username: replicator, password: rep}
  parameters:
    unix_socket_directories: ${join(dir, `sock${i}`)}
  pg_hba:
  - host all all 127.0.0.0/8 trust
  - host replication all 127.0.0.0/8 trust
`,
      );
      chownSync(file, PG_USER.uid, PG_USER.gid);
      for (const own of [data, join(dir, `sock${i}`)]) {
        mkdirSync(own, { recursive: true, mode: 0o700 });
        chownSync(own, PG_USER.uid, PG_USER.gid);
      }
    });
    // setpriv execs patroni as postgres in the same process (runuser would fork, and a SIGKILL of it would leave patroni running).
    const patroni = (file: string) => spawn(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "patroni", file], { HOME: dir });
    children.push(patroni(join(dir, "node0.yml")));
    const status = async (host: string, path: string) => (await fetch(`http://${host}:${apiPort}${path}`).catch(() => null))?.status ?? 0;
    await waitFor(async () => (await status(hosts[0]!, "/primary")) === 200, 60_000, "node0 to bootstrap as the leader");
    children.push(patroni(join(dir, "node1.yml")));
    await waitFor(async () => (await status(hosts[1]!, "/replica")) === 200, 60_000, "node1 to run as a replica");
    return {
      hosts,
      pgPort,
      apiPort,
      async leader() {
        for (const host of hosts) if ((await status(host, "/primary")) === 200) return host;
        return null;
      },
      async switchover(candidate) {
        const name = `node${hosts.indexOf(candidate)}`;
        const proc = Bun.spawn(["runuser", "-u", "postgres", "--", "patronictl", "-c", join(dir, "node0.yml"), "switchover", "--candidate", name, "--force"], {
          stdout: "pipe",
          stderr: "pipe",
        });
        const code = await proc.exited;
        if (code !== 0) throw new Error(`patronictl switchover: ${await new Response(proc.stdout).text()}${await new Response(proc.stderr).text()}`);
      },
      [Symbol.asyncDispose]: dispose,
    };
  } catch (error) {
    const tail = children.map((child) => `${child.proc.pid}: ${(child.stdoutText + child.stderrText).split("\n").slice(-15).join("\n")}`).join("\n---\n");
    await dispose();
    throw new Error(`${(error as Error).message}\n${tail}`);
  }
}
