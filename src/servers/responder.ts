import { createServer, type Server, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

/**
 * Stands on an Inaccessible server's port and answers every connection attempt the way PostgreSQL itself
 * refuses one: a protocol ErrorResponse (severity FATAL) whose message says why, so `psql` and every driver
 * show the reason instead of "connection refused".
 */

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
/** SQLSTATE 08004: the server rejected the establishment of the connection. */
const SQLSTATE = '08004';

export function errorResponse(message: string, detail?: string, hint?: string): Buffer {
  const fields: [string, string][] = [['S', 'FATAL'], ['V', 'FATAL'], ['C', SQLSTATE], ['M', message]];
  if (detail) fields.push(['D', detail]);
  if (hint) fields.push(['H', hint]);
  const body = Buffer.concat([...fields.map(([t, v]) => Buffer.concat([Buffer.from(t), Buffer.from(v, 'utf8'), Buffer.from([0])])), Buffer.from([0])]);
  const header = Buffer.alloc(5);
  header.write('E', 0);
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

export interface ResponderTls {
  key: string;
  cert: string;
}

/**
 * Reads the client's opening messages and answers the startup message with the error. An SSLRequest is
 * accepted when a certificate is at hand, so clients that require TLS (sslmode=require/verify-full) still
 * get to read the reason; without one it is declined and the client continues in the clear.
 */
function handle(stream: Socket | TLSSocket, reply: () => Buffer, tls: ResponderTls | undefined, upgraded = false): void {
  let buf = Buffer.alloc(0);
  stream.setTimeout(10_000, () => stream.destroy());
  stream.on('error', () => stream.destroy());
  const onData = (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 8) {
      const len = buf.readInt32BE(0);
      if (len < 8 || len > 10_000) return stream.destroy();
      if (buf.length < len) return;
      const code = buf.readInt32BE(4);
      buf = buf.subarray(len);
      if ((code === SSL_REQUEST && tls && !upgraded)) {
        stream.removeListener('data', onData);
        stream.write('S');
        const secure = new TLSSocket(stream as Socket, { isServer: true, key: tls.key, cert: tls.cert });
        handle(secure, reply, tls, true);
        return;
      }
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        stream.write('N');
        continue;
      }
      if (code === CANCEL_REQUEST) return stream.end();
      stream.end(reply());
      return;
    }
  };
  stream.on('data', onData);
}

export interface Responder {
  close(): Promise<void>;
}

/** Listens on the server's port (IPv4 and, where available, IPv6 loopback) until closed. */
export async function startResponder(port: number, hosts: string[], message: () => { message: string; detail?: string; hint?: string }, tls?: ResponderTls): Promise<Responder> {
  const servers: Server[] = [];
  for (const host of hosts) {
    const server = createServer((s) => handle(s, () => {
      const m = message();
      return errorResponse(m.message, m.detail, m.hint);
    }, tls));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve());
      });
      servers.push(server);
    } catch (e) {
      // IPv6 may be absent; IPv4 loopback is required.
      if (host === '127.0.0.1') {
        for (const s of servers) s.close();
        throw e;
      }
    }
  }
  return {
    async close() {
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
