import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { VolumeError } from './errors.js';

/**
 * The host's block-device commands a volume is built from, each a thin wrapper that turns a failure into a
 * VolumeError: ext4 filesystems on image files (mkfs, fsck, resize), loop devices (find, attach, detach,
 * refresh capacity), mounts and the kernel's mount table. What to do with them, and when, is the volume's.
 */

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string; code?: string };
    if (err.code === 'ENOENT') throw new VolumeError(`${cmd} is not installed`, 'PrerequisiteMissing');
    throw new VolumeError(`${cmd} ${args.join(' ')} failed: ${(err.stderr || err.message).trim()}`, 'Failed');
  }
}

export interface MountEntry {
  target: string;
  source: string;
  fstype: string;
}

function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

export function mounts(): MountEntry[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => {
    const [left, right] = line.split(' - ');
    const target = unescapeMountPath(left.split(' ')[4]);
    const [fstype, source] = right.split(' ');
    return { target, source: unescapeMountPath(source), fstype };
  });
}

/** What is mounted at `target`, if anything. */
export function mountAt(target: string): MountEntry | undefined {
  return mounts().find((m) => m.target === target);
}

/** An ext4 filesystem with the `encrypt` feature over the whole of an image file. */
export function makeEncryptableExt4(image: string, label: string): void {
  run('mkfs.ext4', ['-q', '-F', '-O', 'encrypt', '-L', label, '-E', 'lazy_itable_init=1,lazy_journal_init=1', image]);
}

/** The loop devices attached to an image file (none when the file does not exist). */
export function loopDevicesOf(image: string): string[] {
  if (!existsSync(image)) return [];
  return run('losetup', ['-j', image, '-n', '-O', 'NAME']).split('\n').map((s) => s.trim()).filter(Boolean);
}

/** Attaches an image file to a free loop device and returns the device. */
export function attachLoop(image: string): string {
  return run('losetup', ['--find', '--show', image]).trim();
}

export function detachLoop(device: string): void {
  run('losetup', ['-d', device]);
}

/** Makes a loop device see its image file's new size. */
export function refreshLoopCapacity(device: string): void {
  run('losetup', ['-c', device]);
}

export function mountExt4(device: string, target: string): void {
  run('mount', ['-t', 'ext4', '-o', 'nosuid,nodev,noatime', device, target]);
}

export function unmount(target: string): void {
  run('umount', [target]);
}

/** Grows an ext4 filesystem to fill its device or image file (online when given a mounted device). */
export function resizeExt4(deviceOrImage: string): void {
  run('resize2fs', [deviceOrImage]);
}

/** A forced fsck of an unmounted image, fixing what it safely can; fails if it could not. */
export function fsckExt4(image: string): void {
  try {
    execFileSync('e2fsck', ['-f', '-p', image], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    // e2fsck exits 1 when it fixed something, which is fine; 4 and above mean it could not.
    if (((e as { status?: number }).status ?? 8) >= 4) throw new VolumeError(`e2fsck of ${image} failed before resizing`, 'Failed');
  }
}
