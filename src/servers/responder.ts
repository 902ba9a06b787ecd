import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { KeyFailure } from '../keyaccess/key-access.js';

/**
 * pgbyok's answer on the port of a server it will not let anyone reach: the way PostgreSQL itself refuses a
 * connection, a protocol ErrorResponse (severity FATAL) whose message says why, so `psql` and every driver
 * show the reason instead of "connection refused".
 */

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
/**
 * SQLSTATE 57P03 (cannot_connect_now), as PostgreSQL answers while it cannot take connections: probes such
 * as pg_isready read it as "rejecting connections", and pools retry instead of treating it as a bad login.
 */
export const REFUSAL_SQLSTATE = '57P03';

export interface Refusal {
  message: string;
  /** The SQLSTATE (default 57P03, cannot connect now). */
  code?: string;
  detail?: string;
  hint?: string;
}

export function errorResponse(r: Refusal): Buffer {
  const fields: [string, string][] = [['S', 'FATAL'], ['V', 'FATAL'], ['C', r.code ?? REFUSAL_SQLSTATE], ['M', r.message]];
  if (r.detail) fields.push(['D', r.detail]);
  if (r.hint) fields.push(['H', r.hint]);
  const body = Buffer.concat([...fields.map(([t, v]) => Buffer.concat([Buffer.from(t), Buffer.from(v, 'utf8'), Buffer.from([0])])), Buffer.from([0])]);
  const header = Buffer.alloc(5);
  header.write('E', 0);
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

/** Why a key cannot be used, in words, for anyone who knocks: no key URI, no vault address, no identity. */
const REASONS: Record<KeyFailure, string> = {
  KeyDisabled: 'the key is disabled',
  KeyNotFound: 'the key was deleted',
  KeyExpired: 'the key has expired',
  KeyNotYetValid: 'the key is not valid yet (its activation date is in the future)',
  PermissionDenied: "the server's permission on the key was revoked",
  Unauthorized: "the key vault does not accept the server's identity",
  IdentityNotFound: "the server's managed identity was deleted",
  ForbiddenByFirewall: "the key vault's firewall refuses the server",
  VaultUnreachable: 'the key vault cannot be reached (network)',
  VaultNotFound: 'the key vault was deleted',
  InvalidKey: 'the key cannot be used for this server',
  WrongKey: "the key does not open this server's data",
};

/** The refusal of an Inaccessible server; `server show` keeps the key URI for those allowed to read the server. */
export function inaccessibleRefusal(serverName: string, failure: KeyFailure | undefined): Refusal {
  return {
    message: `server "${serverName}" is inaccessible: its customer-managed key cannot be used because ${failure ? REASONS[failure] : 'access to it was lost'}`,
    hint: `Restore access to the key, then revalidate: pgbyok server revalidate --name ${serverName} (the server also comes back by itself once access returns).`,
  };
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
export function refuse(stream: Socket | TLSSocket, reply: () => Buffer, tls: ResponderTls | undefined, upgraded = false): void {
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
        refuse(secure, reply, tls, true);
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
