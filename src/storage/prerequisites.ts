import { realProbe, unmet, type HostRequirement } from '../doctor/probe.js';
import { VolumeError } from './errors.js';

/**
 * What the host must offer before any volume is made or opened: root, loop devices, ext4 with encryption
 * in the kernel, and the tools (losetup, mount, mkfs.ext4, resize2fs, e2fsck). Checked once per process; a
 * missing piece fails at once, naming it and how to get it, since there is no plaintext fallback. The same
 * table is part of what `pgbyok doctor` checks.
 */
const tool = (command: string, pkg: string): HostRequirement => ({
  check: command, needs: { command }, problem: `${command} is not installed`, fix: `apt-get install ${pkg}`, package: pkg,
});

export const STORAGE_REQUIREMENTS: readonly HostRequirement[] = [
  {
    check: 'root', needs: { root: true },
    problem: 'Encrypted volumes need root (CAP_SYS_ADMIN): pgbyok attaches loop devices, mounts ext4 and adds fscrypt keys to the kernel',
    fix: 'run pgbyok as root',
  },
  {
    check: 'loop devices', needs: { file: '/dev/loop-control' },
    problem: 'this kernel offers no loop devices (/dev/loop-control is missing)', fix: 'modprobe loop, or use a kernel with CONFIG_BLK_DEV_LOOP',
  },
  {
    check: 'fscrypt', needs: { file: '/sys/fs/ext4/features/encryption' },
    problem: 'this kernel has no ext4 encryption (/sys/fs/ext4/features/encryption is missing)', fix: 'use a kernel with CONFIG_FS_ENCRYPTION=y',
  },
  tool('losetup', 'util-linux'), tool('mount', 'mount'), tool('umount', 'mount'),
  tool('mkfs.ext4', 'e2fsprogs'), tool('resize2fs', 'e2fsprogs'), tool('e2fsck', 'e2fsprogs'),
];

let checked = false;
/** Fails at once, naming what is missing and how to get it: there is no plaintext fallback. */
export function checkStoragePrerequisites(): void {
  if (checked) return;
  const missing = unmet(STORAGE_REQUIREMENTS, realProbe);
  if (missing.length) throw new VolumeError(missing.map((r) => `${r.problem} (fix: ${r.fix})`).join('; '), 'PrerequisiteMissing');
  checked = true;
}
