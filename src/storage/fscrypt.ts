import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { hkdfSync } from 'node:crypto';
import koffi from 'koffi';

/**
 * Linux fscrypt v2 through the kernel's ioctls, called from TypeScript with koffi (no userland tool, no key
 * in a file, an argument or the environment). Request numbers and struct layouts are those of
 * <linux/fscrypt.h> on x86_64/arm64, as measured in shared/reference/fscrypt-postgres-facts.md.
 */

const FS_IOC_SET_ENCRYPTION_POLICY = 0x800c6613n;
const FS_IOC_GET_ENCRYPTION_POLICY_EX = 0xc0096616n;
const FS_IOC_ADD_ENCRYPTION_KEY = 0xc0506617n;
const FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS = 0xc0406619n;
const FS_IOC_GET_ENCRYPTION_KEY_STATUS = 0xc080661an;

const KEY_SPEC_TYPE_IDENTIFIER = 2;
const POLICY_V2 = 2;
const MODE_AES_256_XTS = 1;
const MODE_AES_256_CTS = 4;
const POLICY_FLAGS_PAD_32 = 3;
const REMOVAL_FILES_BUSY = 1;

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 13: 'EACCES', 17: 'EEXIST', 20: 'ENOTDIR', 22: 'EINVAL', 25: 'ENOTTY', 39: 'ENOTEMPTY',
  61: 'ENODATA', 95: 'EOPNOTSUPP', 126: 'ENOKEY', 127: 'EKEYEXPIRED', 128: 'EKEYREVOKED', 129: 'EKEYREJECTED',
};

export class FscryptError extends Error {
  constructor(readonly op: string, readonly errno: number) {
    super(`${op} failed: ${ERRNO_NAMES[errno] ?? 'errno ' + errno}${errno === 95 ? ' (the filesystem was not made with -O encrypt, or the kernel lacks CONFIG_FS_ENCRYPTION)' : ''}`);
  }
  get code(): string {
    return ERRNO_NAMES[this.errno] ?? `E${this.errno}`;
  }
}

export type KeyStatus = 'absent' | 'present' | 'incompletely-removed';

let ioctlFn: ((fd: number, req: bigint, ...args: unknown[]) => number) | undefined;
function ioctl(): (fd: number, req: bigint, ...args: unknown[]) => number {
  if (!ioctlFn) {
    const libc = koffi.load('libc.so.6');
    ioctlFn = libc.func('int ioctl(int fd, unsigned long request, ...)') as (fd: number, req: bigint, ...args: unknown[]) => number;
  }
  return ioctlFn;
}

function call(path: string, op: string, request: bigint, buf: Buffer): void {
  const fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY | (fsConstants as any).O_CLOEXEC);
  try {
    const rc = ioctl()(fd, request, 'void *', buf);
    if (rc < 0) throw new FscryptError(op, koffi.errno());
  } finally {
    closeSync(fd);
  }
}

/** The kernel's key identifier: HKDF-SHA512(key, salt "", info "fscrypt\0" 0x01), 16 bytes. */
export function keyIdentifier(key: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha512', key, Buffer.alloc(0), Buffer.from('fscrypt\0\x01', 'latin1'), 16));
}

function keySpec(buf: Buffer, identifier: Buffer): void {
  buf.writeUInt32LE(KEY_SPEC_TYPE_IDENTIFIER, 0);
  identifier.copy(buf, 8);
}

/**
 * Adds a raw key to the filesystem's keyring and returns the identifier the kernel computed. The copy of
 * the key made for the ioctl is zeroed before returning; the caller zeroes its own buffer.
 */
export function addKey(mountpoint: string, key: Buffer): Buffer {
  if (key.length < 32 || key.length > 64) throw new Error('fscrypt v2 keys for AES-256-XTS must be 32 to 64 bytes');
  const buf = Buffer.alloc(80 + key.length);
  try {
    buf.writeUInt32LE(KEY_SPEC_TYPE_IDENTIFIER, 0);
    buf.writeUInt32LE(key.length, 40);
    key.copy(buf, 80);
    call(mountpoint, 'FS_IOC_ADD_ENCRYPTION_KEY', FS_IOC_ADD_ENCRYPTION_KEY, buf);
    return Buffer.from(buf.subarray(8, 24));
  } finally {
    buf.fill(0);
  }
}

export function keyStatus(mountpoint: string, identifier: Buffer): { status: KeyStatus; userCount: number } {
  const buf = Buffer.alloc(128);
  keySpec(buf, identifier);
  call(mountpoint, 'FS_IOC_GET_ENCRYPTION_KEY_STATUS', FS_IOC_GET_ENCRYPTION_KEY_STATUS, buf);
  const status = buf.readUInt32LE(64);
  return { status: status === 2 ? 'present' : status === 3 ? 'incompletely-removed' : 'absent', userCount: buf.readUInt32LE(72) };
}

/** Removes the key for every user. `filesBusy` means NOT locked: files still open keep their plaintext. */
export function removeKey(mountpoint: string, identifier: Buffer): { filesBusy: boolean } {
  const buf = Buffer.alloc(64);
  keySpec(buf, identifier);
  try {
    call(mountpoint, 'FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS', FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS, buf);
  } catch (e) {
    // ENOKEY: the key is not in the keyring at all, which is what removal wants.
    if (e instanceof FscryptError && e.errno === 126) return { filesBusy: false };
    throw e;
  }
  return { filesBusy: (buf.readUInt32LE(40) & REMOVAL_FILES_BUSY) !== 0 };
}

/** Sets a v2 policy (AES-256-XTS contents, AES-256-CTS names, 32-byte name padding) on an empty directory. */
export function setPolicy(dir: string, identifier: Buffer): void {
  const buf = Buffer.alloc(24);
  buf.writeUInt8(POLICY_V2, 0);
  buf.writeUInt8(MODE_AES_256_XTS, 1);
  buf.writeUInt8(MODE_AES_256_CTS, 2);
  buf.writeUInt8(POLICY_FLAGS_PAD_32, 3);
  identifier.copy(buf, 8);
  call(dir, 'FS_IOC_SET_ENCRYPTION_POLICY', FS_IOC_SET_ENCRYPTION_POLICY, buf);
}

/** The master-key identifier of a directory's v2 policy, or undefined for an unencrypted directory. */
export function policyIdentifier(dir: string): Buffer | undefined {
  const buf = Buffer.alloc(32);
  buf.writeBigUInt64LE(24n, 0);
  try {
    call(dir, 'FS_IOC_GET_ENCRYPTION_POLICY_EX', FS_IOC_GET_ENCRYPTION_POLICY_EX, buf);
  } catch (e) {
    if (e instanceof FscryptError && e.errno === 61) return undefined;
    throw e;
  }
  const policy = buf.subarray(8, 32);
  if (policy[0] !== POLICY_V2 || policy[1] !== MODE_AES_256_XTS || policy[2] !== MODE_AES_256_CTS) {
    throw new Error(`${dir} carries an fscrypt policy pgbyok did not set (version ${policy[0]}, modes ${policy[1]}/${policy[2]})`);
  }
  return Buffer.from(policy.subarray(8, 24));
}
