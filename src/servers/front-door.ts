import { connect, createServer, type Server, type Socket } from 'node:net';
import { errorResponse, refuse, type Refusal, type ResponderTls } from './responder.js';

/**
 * A server's front door: pgbyok holds the server's public port for as long as the server exists and is not
 * stopped, so the port is never dark while a server locks. While the server is Ready each connection is
 * piped byte for byte to PostgreSQL on its private loopback port (TLS, authentication and replication stay
 * end to end with PostgreSQL, so sslmode=verify-full still verifies PostgreSQL's own certificate). The moment
 * the platform decides to lock, new connections get pgbyok's refusal and the piped ones are cut.
 */

export interface FrontDoor {
  /** Pipes every new connection to PostgreSQL on `port` (127.0.0.1). */
  pipe(port: number): void;
  /** Refuses every new connection with `refusal()` (read at each attempt) and cuts the piped ones. */
  refuse(refusal: () => Refusal): void;
  close(): Promise<void>;
}

type Mode = { kind: 'pipe'; port: number } | { kind: 'refuse'; refusal: () => Refusal };

/** While a Ready server's PostgreSQL restarts (a restart, a storage resize), as PostgreSQL itself says it. */
const NOT_LISTENING: Refusal = { message: 'the database system is starting up' };

/** Listens on the server's public port on each of `hosts` (IPv6 loopback may be absent; IPv4 is required). */
export async function openFrontDoor(port: number, hosts: string[], tls: ResponderTls | undefined, onError: (e: Error) => void, admit: (address: string | undefined) => Refusal | undefined = () => undefined): Promise<FrontDoor> {
  let mode: Mode = { kind: 'refuse', refusal: () => ({ message: 'the server is starting up' }) };
  const piped = new Set<Socket>();

  const pipeTo = (client: Socket, target: number) => {
    // Nothing is read from the client until PostgreSQL has answered the connect: if it is not listening
    // (a restart), the client gets a refusal it can read instead of a cut connection.
    client.pause();
    client.setNoDelay(true);
    const upstream = connect({ port: target, host: '127.0.0.1', noDelay: true });
    /** PostgreSQL has sent the client something: from then on a close of either side is passed on. */
    let answered = false;
    /** What the client sent before PostgreSQL answered: replayed into the refusal if PostgreSQL goes away first. */
    const unanswered: Buffer[] = [];
    piped.add(client);
    const cut = () => {
      piped.delete(client);
      client.destroy();
      upstream.destroy();
    };
    const toUpstream = (chunk: Buffer) => {
      if (!answered) unanswered.push(chunk);
      if (!upstream.write(chunk)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
    };
    const endUpstream = () => upstream.end();
    /**
     * PostgreSQL closed (or was never there) before it said a word, as a postmaster does when it stops
     * between accepting a connection and serving it: the client reads the restart refusal instead.
     */
    const refuseInstead = () => {
      piped.delete(client);
      client.removeListener('error', cut).removeListener('close', cut);
      client.removeListener('data', toUpstream).removeListener('end', endUpstream);
      upstream.removeAllListeners();
      upstream.on('error', () => undefined);
      upstream.destroy();
      for (const chunk of unanswered.reverse()) client.unshift(chunk);
      refuse(client, () => errorResponse(NOT_LISTENING), tls);
      client.resume();
    };
    client.on('error', cut).on('close', cut);
    upstream.on('error', () => (answered ? cut() : refuseInstead()));
    upstream.once('connect', () => {
      upstream.on('close', () => (answered ? cut() : refuseInstead()));
      upstream.on('data', (chunk: Buffer) => {
        answered = true;
        unanswered.length = 0;
        if (!client.write(chunk)) {
          upstream.pause();
          client.once('drain', () => upstream.resume());
        }
      });
      upstream.on('end', () => {
        if (answered) client.end();
      });
      client.on('data', toUpstream).on('end', endUpstream);
      client.resume();
    });
  };

  const onConnection = (client: Socket) => {
    const m = mode;
    if (m.kind === 'pipe') {
      // The server's firewall rules, read at each connection (a rule changed takes effect on the next one).
      const no = admit(client.remoteAddress);
      if (no) return refuse(client, () => errorResponse(no), tls);
      return pipeTo(client, m.port);
    }
    refuse(client, () => errorResponse(m.refusal()), tls);
  };

  const servers: Server[] = [];
  for (const host of hosts) {
    const server = createServer(onConnection);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve());
      });
      server.on('error', onError);
      servers.push(server);
    } catch (e) {
      if (host === '127.0.0.1') {
        await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
        throw e;
      }
    }
  }

  const cutAll = () => {
    for (const c of piped) c.destroy();
    piped.clear();
  };

  return {
    pipe(target) {
      mode = { kind: 'pipe', port: target };
    },
    refuse(refusal) {
      mode = { kind: 'refuse', refusal };
      cutAll();
    },
    async close() {
      cutAll();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

/**
 * The front doors of all servers, by name: opened on a server's public port the first time it is served or
 * refused, closed when it stops or goes away. Refusals name the reason the key failed, in words.
 */
export function createFrontDoors(d: { hosts: string[]; tls: ResponderTls | undefined; log: (server: string, message: string, e: unknown) => void; admission?: (server: string, address: string | undefined) => Refusal | undefined }) {
  const doors = new Map<string, Promise<FrontDoor | undefined>>();
  const doorOf = (name: string, port: number): Promise<FrontDoor | undefined> => {
    let door = doors.get(name);
    if (!door) {
      door = openFrontDoor(port, d.hosts, d.tls, (e) => d.log(name, 'front door error', e), d.admission && ((address) => d.admission!(name, address))).catch((e) => {
        d.log(name, 'could not open the front door', e);
        doors.delete(name);
        return undefined;
      });
      doors.set(name, door);
    }
    return door;
  };
  return {
    /** Pipes the server's public port to PostgreSQL on its private port. */
    async serve(s: { name: string; port: number }, privatePort: number): Promise<void> {
      (await doorOf(s.name, s.port))?.pipe(privatePort);
    },
    /** Refuses on the server's public port, with `refusal()` read at each attempt; cuts piped sessions. */
    async refuse(s: { name: string; port: number }, refusal: () => Refusal): Promise<void> {
      (await doorOf(s.name, s.port))?.refuse(refusal);
    },
    async close(name: string): Promise<void> {
      const door = doors.get(name);
      doors.delete(name);
      await (await door)?.close();
    },
  };
}

export type FrontDoors = ReturnType<typeof createFrontDoors>;
