/**
 * A PostgreSQL client reduced to its first exchange: connect, send a startup message in the clear, read the
 * first answer. It tells apart nothing listening, PostgreSQL itself answering, and pgbyok's refusal.
 */
import { connect } from 'node:net';

export type ProbeAnswer =
  | { kind: 'refused' }
  | { kind: 'error'; code: string; message: string; fields: Record<string, string> }
  | { kind: 'auth' }
  | { kind: 'closed' }
  | { kind: 'timeout' };

function startupMessage(user: string, database: string): Buffer {
  const params = Buffer.from(`user\0${user}\0database\0${database}\0\0`, 'utf8');
  const b = Buffer.alloc(8 + params.length);
  b.writeInt32BE(b.length, 0);
  b.writeInt32BE(196608, 4);
  params.copy(b, 8);
  return b;
}

export function probe(port: number, timeoutMs = 2000): Promise<ProbeAnswer> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (a: ProbeAnswer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(a);
    };
    const socket = connect({ port, host: '127.0.0.1' }, () => socket.write(startupMessage('dbadmin', 'postgres')));
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
    socket.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ECONNREFUSED' ? { kind: 'refused' } : { kind: 'closed' }));
    socket.on('close', () => finish({ kind: 'closed' }));
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length < 5) return;
      if (buf[0] === 0x52) return finish({ kind: 'auth' });
      const len = buf.readInt32BE(1);
      if (buf[0] !== 0x45 || buf.length < len + 1) return;
      const fields: Record<string, string> = {};
      for (let i = 5; i < len + 1 && buf[i] !== 0;) {
        const end = buf.indexOf(0, i + 1);
        fields[String.fromCharCode(buf[i])] = buf.subarray(i + 1, end).toString('utf8');
        i = end + 1;
      }
      finish({ kind: 'error', code: fields.C, message: fields.M, fields });
    });
  });
}
