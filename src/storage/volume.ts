import {
  chmodSync, chownSync, closeSync, existsSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmdirSync,
  statSync, truncateSync, unlinkSync, writeFileSync, writeSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { addKey, keyIdentifier, keyStatus, policyIdentifier, removeKey, setPolicy, type KeyStatus } from './fscrypt.js';
import {
  attachLoop, detachLoop, fsckExt4, loopDevicesOf, makeEncryptableExt4, mountAt, mountExt4, refreshLoopCapacity, resizeExt4, unmount, type MountEntry,
} from './devices.js';
import { VolumeError } from './errors.js';
import { holdersOf } from './holders.js';
import { checkStoragePrerequisites } from './prerequisites.js';

export { VolumeError };

/**
 * A volume is one server's disk: a sparse image file, ext4 with the `encrypt` feature, on a loop device,
 * mounted under the region's `mnt/`. Its `data/` directory carries an fscrypt v2 policy whose master key is
 * the server's DEK. The header (`volume.json`, plaintext, outside `data/`) names the key by its identifier
 * only, so the volume says which key opens it without holding the key.
 */

export interface VolumeHeader {
  format: 'pgbyok-volume';
  v: 1;
  name: string;
  created: string;
  /** Hex fscrypt identifier of the DEK that opens `data/` (set at the first unlock). */
  keyIdentifier?: string;
  /** PostgreSQL was initialised inside `data/`: never initdb again over it. */
  initialized?: boolean;
  /** Owned by the layer above (the wrapped DEK and the key version that wrapped it). */
  meta?: Record<string, unknown>;
}

export interface VolumeStatus {
  name: string;
  image: string;
  mountpoint: string;
  sizeBytes: number;
  attached: boolean;
  mounted: boolean;
  loopDevice?: string;
  keyIdentifier?: string;
  keyStatus?: KeyStatus;
  locked: boolean;
}

const GIB = 1024 ** 3;

/** A new DEK: 64 random bytes, the fscrypt master-key size that every kernel accepts for AES-256-XTS. */
export function newDek(): Buffer {
  return randomBytes(64);
}

export interface VolumePaths {
  image: string;
  mountpoint: string;
}

export function volumePaths(home: string, region: string, name: string): VolumePaths {
  return {
    image: join(home, 'regions', region, 'volumes', `${name}.img`),
    mountpoint: join(home, 'regions', region, 'mnt', name),
  };
}

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

export class Volume {
  readonly image: string;
  readonly mountpoint: string;

  constructor(readonly name: string, paths: VolumePaths) {
    if (!NAME_RE.test(name)) throw new VolumeError(`invalid volume name '${name}'`, 'Invalid');
    this.image = paths.image;
    this.mountpoint = paths.mountpoint;
  }

  /** The encrypted directory; PostgreSQL's data directory lives inside it. */
  get dataDir(): string {
    return join(this.mountpoint, 'data');
  }

  private get headerPath(): string {
    return join(this.mountpoint, 'volume.json');
  }

  /** Makes the sparse image and its ext4 filesystem, attaches and mounts it. Refuses to overwrite an image. */
  create(sizeGiB: number): void {
    checkStoragePrerequisites();
    if (!Number.isInteger(sizeGiB) || sizeGiB < 1 || sizeGiB > 16384) throw new VolumeError('size must be 1 to 16384 GiB', 'Invalid');
    if (existsSync(this.image)) throw new VolumeError(`volume image ${this.image} already exists`, 'Invalid');
    mkdirSync(dirname(dirname(this.image)), { recursive: true, mode: 0o711 });
    mkdirSync(dirname(this.image), { recursive: true, mode: 0o700 });
    const tmp = `${this.image}.creating`;
    try {
      closeSync(openSync(tmp, 'w', 0o600));
      truncateSync(tmp, sizeGiB * GIB);
      makeEncryptableExt4(tmp, this.name.slice(0, 16));
      renameSync(tmp, this.image);
    } catch (e) {
      if (existsSync(tmp)) unlinkSync(tmp);
      throw e;
    }
    this.attach();
    chmodSync(this.mountpoint, 0o711);
    this.writeHeader({ format: 'pgbyok-volume', v: 1, name: this.name, created: new Date().toISOString() });
  }

  private loops(): string[] {
    return loopDevicesOf(this.image);
  }

  private mountEntry(): MountEntry | undefined {
    return mountAt(this.mountpoint);
  }

  /**
   * Attaches and mounts; idempotent. After a crash it finds its own loop device or mount and reuses it,
   * and detaches stale loop devices of its image that nothing mounts.
   */
  attach(): void {
    checkStoragePrerequisites();
    if (!existsSync(this.image)) throw new VolumeError(`volume image ${this.image} does not exist`, 'NotFound');
    const loops = this.loops();
    const mounted = this.mountEntry();
    if (mounted) {
      if (!loops.includes(mounted.source)) {
        throw new VolumeError(`${this.mountpoint} is mounted from ${mounted.source}, not from this volume's image`, 'Invalid');
      }
      for (const l of loops) if (l !== mounted.source) detachLoop(l);
      return;
    }
    mkdirSync(dirname(this.mountpoint), { recursive: true, mode: 0o711 });
    mkdirSync(this.mountpoint, { recursive: true, mode: 0o711 });
    let loop = loops[0];
    for (const l of loops.slice(1)) detachLoop(l);
    if (!loop) loop = attachLoop(this.image);
    try {
      mountExt4(loop, this.mountpoint);
    } catch (e) {
      detachLoop(loop);
      throw e;
    }
  }

  readHeader(): VolumeHeader {
    if (!this.mountEntry()) throw new VolumeError(`volume ${this.name} is not mounted`, 'NotFound');
    return JSON.parse(readFileSync(this.headerPath, 'utf8')) as VolumeHeader;
  }

  /** Replaces the header atomically and durably (temp file, fsync, rename). */
  writeHeader(h: VolumeHeader): void {
    const tmp = `${this.headerPath}.tmp`;
    // Root only: the header names the key that wraps the DEK and carries the wrapped DEK itself.
    const fd = openSync(tmp, 'w', 0o600);
    try {
      fchmodSync(fd, 0o600);
      writeSync(fd, JSON.stringify(h, null, 2) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.headerPath);
  }

  updateHeader(change: (h: VolumeHeader) => VolumeHeader): VolumeHeader {
    const next = change(this.readHeader());
    this.writeHeader(next);
    return next;
  }

  /**
   * Puts the DEK in the kernel so `data/` opens. A DEK whose identifier differs from the header's is
   * refused before it touches the kernel. The first unlock sets the v2 policy on the empty `data/`, after
   * the key is in the keyring, and every unlock proves the directory works with a probe file.
   */
  unlock(dek: Buffer): void {
    try {
      this.unlockWith(dek);
    } finally {
      // The DEK is consumed: once the kernel has it, no copy stays in this process.
      dek.fill(0);
    }
  }

  private unlockWith(dek: Buffer): void {
    this.attach();
    const header = this.readHeader();
    const id = keyIdentifier(dek);
    const idHex = id.toString('hex');
    if (header.keyIdentifier && header.keyIdentifier !== idHex) {
      throw new VolumeError(`this key does not open volume ${this.name} (its data is encrypted under key ${header.keyIdentifier})`, 'WrongKey');
    }
    const added = addKey(this.mountpoint, dek);
    if (!added.equals(id)) throw new VolumeError('the kernel computed a different key identifier than expected', 'Failed');
    if (keyStatus(this.mountpoint, id).status !== 'present') throw new VolumeError('the key did not become present in the kernel', 'Failed');

    if (!existsSync(this.dataDir)) {
      if (header.keyIdentifier) throw new VolumeError(`volume ${this.name} lost its data directory`, 'Failed');
      mkdirSync(this.dataDir, { mode: 0o711 });
    }
    const policy = policyIdentifier(this.dataDir);
    if (!policy) {
      if (header.keyIdentifier || readdirSync(this.dataDir).length) {
        throw new VolumeError(`${this.dataDir} is not encrypted; refusing to use it`, 'Failed');
      }
      setPolicy(this.dataDir, id);
    } else if (!policy.equals(id)) {
      throw new VolumeError(`${this.dataDir} is encrypted under key ${policy.toString('hex')}, not ${idHex}`, 'WrongKey');
    }
    if (!header.keyIdentifier) this.writeHeader({ ...header, keyIdentifier: idHex });
    this.probe();
  }

  /**
   * Makes the volume private to the OS account of its server: the mount root root:group 0750 (its header
   * stays root's), the encrypted directory the account's own, 0700. Nobody else may enter either.
   */
  restrictTo(owner: { uid: number; gid: number }): void {
    if (!this.mountEntry()) throw new VolumeError(`volume ${this.name} is not mounted`, 'NotFound');
    chownSync(this.mountpoint, 0, owner.gid);
    chmodSync(this.mountpoint, 0o750);
    if (existsSync(this.dataDir)) {
      chownSync(this.dataDir, owner.uid, owner.gid);
      chmodSync(this.dataDir, 0o700);
    }
  }

  private probe(): void {
    const path = join(this.dataDir, '.pgbyok-probe');
    const token = randomBytes(16).toString('hex');
    writeFileSync(path, token, { mode: 0o600 });
    if (readFileSync(path, 'utf8') !== token) throw new VolumeError('the encrypted directory does not read back what was written', 'Failed');
  }

  /**
   * Removes the key from the kernel, for every user, until the kernel says ABSENT. Files still open in
   * the volume keep their plaintext reachable, so a busy answer is never reported as locked: with
   * `killHolders` the holders are killed first, otherwise the call fails naming them.
   */
  async lock(opts: { killHolders?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const header = this.readHeader();
    if (!header.keyIdentifier) return;
    const id = Buffer.from(header.keyIdentifier, 'hex');
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    for (;;) {
      removeKey(this.mountpoint, id);
      if (keyStatus(this.mountpoint, id).status === 'absent') return;
      const holders = holdersOf(this.dataDir).filter((p) => p !== process.pid);
      if (holders.length && !opts.killHolders) {
        throw new VolumeError(`volume ${this.name} is still in use by process(es) ${holders.join(', ')}; stop them, then lock again (the key stays partly present until then)`, 'Busy');
      }
      for (const pid of holders) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      if (Date.now() > deadline) throw new VolumeError(`volume ${this.name} could not be locked: files stay open`, 'Busy');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Mounted with its key present in the kernel: the encrypted directory is readable. */
  isUnlocked(): boolean {
    if (!this.mountEntry()) return false;
    const id = this.readHeader().keyIdentifier;
    return !!id && keyStatus(this.mountpoint, Buffer.from(id, 'hex')).status === 'present';
  }

  status(): VolumeStatus {
    const exists = existsSync(this.image);
    const loops = exists ? this.loops() : [];
    const mounted = this.mountEntry();
    let keyIdentifierHex: string | undefined;
    let ks: KeyStatus | undefined;
    if (mounted) {
      keyIdentifierHex = this.readHeader().keyIdentifier;
      if (keyIdentifierHex) ks = keyStatus(this.mountpoint, Buffer.from(keyIdentifierHex, 'hex')).status;
    }
    return {
      name: this.name,
      image: this.image,
      mountpoint: this.mountpoint,
      sizeBytes: exists ? statSync(this.image).size : 0,
      attached: loops.length > 0,
      mounted: !!mounted,
      loopDevice: mounted?.source ?? loops[0],
      keyIdentifier: keyIdentifierHex,
      keyStatus: ks,
      // Unmounted means no key can be present: the kernel drops keys with the superblock.
      locked: !mounted || ks !== 'present' && ks !== 'incompletely-removed',
    };
  }

  private checkNewSize(newSizeGiB: number): void {
    const current = statSync(this.image).size;
    if (!Number.isInteger(newSizeGiB) || newSizeGiB * GIB <= current || newSizeGiB > 16384) {
      throw new VolumeError(`the new size must be a whole number of GiB larger than ${current / GIB} GiB`, 'Invalid');
    }
  }

  /**
   * Grows the volume online: a larger image, the loop device's new capacity, then resize2fs on the mounted
   * filesystem. ext4's online resize needs CAP_SYS_RESOURCE; where the kernel refuses it, the error says so
   * and `growOffline` is the way (the image is already larger, which is harmless).
   */
  grow(newSizeGiB: number): void {
    const mounted = this.mountEntry();
    if (!mounted) throw new VolumeError(`volume ${this.name} must be mounted to grow online; use growOffline when detached`, 'Invalid');
    this.checkNewSize(newSizeGiB);
    truncateSync(this.image, newSizeGiB * GIB);
    refreshLoopCapacity(mounted.source);
    try {
      resizeExt4(mounted.source);
    } catch (e) {
      if (/Permission denied/.test((e as Error).message)) {
        throw new VolumeError('the kernel refused an online resize (ext4 needs CAP_SYS_RESOURCE, which this process lacks); stop the server, detach the volume and use growOffline', 'OnlineResizeUnavailable');
      }
      throw e;
    }
  }

  /** Grows a detached volume: a larger image, a forced fsck, then resize2fs on the image file. */
  growOffline(newSizeGiB: number): void {
    if (this.mountEntry() || this.loops().length) throw new VolumeError(`volume ${this.name} must be detached to grow offline`, 'Invalid');
    if (statSync(this.image).size < newSizeGiB * GIB) {
      this.checkNewSize(newSizeGiB);
      truncateSync(this.image, newSizeGiB * GIB);
    }
    fsckExt4(this.image);
    resizeExt4(this.image);
  }

  /** Unmounts (which drops every key of the filesystem) and detaches the loop device. */
  detach(): void {
    if (this.mountEntry()) unmount(this.mountpoint);
    for (const l of this.loops()) detachLoop(l);
  }

  /** Crypto-shred: lock, detach, delete the image. Without the DEK nothing of it can be read again. */
  async destroy(): Promise<void> {
    if (this.mountEntry()) await this.lock({ killHolders: true });
    this.detach();
    if (existsSync(this.image)) unlinkSync(this.image);
    if (existsSync(this.mountpoint)) rmdirSync(this.mountpoint);
  }
}
