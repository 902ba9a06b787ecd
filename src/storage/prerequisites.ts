import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { VolumeError } from './errors.js';

/**
 * What the host must offer before any volume is made or opened: root, loop devices, ext4 with encryption
 * in the kernel, and the tools (losetup, mount, mkfs.ext4, resize2fs). Checked once per process; a missing
 * piece fails at once, naming it and how to get it, since there is no plaintext fallback.
 */

function which(cmd: string): boolean {
  return ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(join(d, cmd)));
}

let checked = false;
/** Fails at once, naming what is missing and how to get it: there is no plaintext fallback. */
export function checkStoragePrerequisites(): void {
  if (checked) return;
  if (process.getuid?.() !== 0) {
    throw new VolumeError('Encrypted volumes need root (CAP_SYS_ADMIN): pgbyok attaches loop devices, mounts ext4 and adds fscrypt keys to the kernel. Run pgbyok as root.', 'PrerequisiteMissing');
  }
  if (!existsSync('/dev/loop-control')) {
    throw new VolumeError('This kernel offers no loop devices (/dev/loop-control is missing): load the loop module (modprobe loop) or use a kernel with CONFIG_BLK_DEV_LOOP.', 'PrerequisiteMissing');
  }
  if (!existsSync('/sys/fs/ext4/features/encryption')) {
    throw new VolumeError('This kernel has no ext4 encryption (/sys/fs/ext4/features/encryption is missing): it needs CONFIG_FS_ENCRYPTION=y.', 'PrerequisiteMissing');
  }
  const missing = [['losetup', 'util-linux'], ['mount', 'mount'], ['umount', 'mount'], ['mkfs.ext4', 'e2fsprogs'], ['resize2fs', 'e2fsprogs']]
    .filter(([c]) => !which(c));
  if (missing.length) {
    throw new VolumeError(`Missing tools: ${missing.map(([c]) => c).join(', ')}. Install them with: apt-get install ${[...new Set(missing.map(([, p]) => p))].join(' ')}`, 'PrerequisiteMissing');
  }
  checked = true;
}
