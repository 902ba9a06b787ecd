import { parseKeyUri } from '../../../keyaccess/key-access.js';
import { VolumeError } from '../../../storage/volume.js';
import { sameEncryption } from '../../custody.js';
import { activity, ACTIVITY_OPERATIONS, applyTransition, returnEvent, serverOf, subscribeEvents, unsubscribeEvents, type ServerKit } from '../../kit.js';
import type { DataEncryption, ServerState } from '../../model/server.js';
import type { StepContext, Workflow } from '../runner.js';

/** What an update changes, validated before it was accepted. */
export interface UpdateInput {
  /** A new key or identity, or the same key after a rotation: the DEK is re-wrapped, no data re-encrypted. */
  target?: DataEncryption;
  why?: string;
  storageGb?: number;
  /** The administrator's new password, as its SCRAM verifier (the password itself is never stored). */
  adminVerifier?: string;
  /** The state the server returns to. */
  resumeState: Extract<ServerState, 'Ready' | 'Stopped' | 'Inaccessible'>;
  [k: string]: unknown;
}

type Ctx = StepContext<UpdateInput>;

/**
 * An update: the re-wrap in its two recorded halves (pending, then the swap), the backup keys re-wrapped
 * under the new key too (so revoking the old key leaves every backup openable), the vault subscription
 * moved, storage grown, the administrator's password reset, and an Inaccessible server revalidated.
 */
export function updateWorkflow(k: ServerKit): Workflow<UpdateInput> {
  const server = (ctx: Ctx) => serverOf(k, ctx.op.serverId);
  const noKey = (ctx: Ctx) => !ctx.input.target;
  const originOf = (e: DataEncryption | undefined) => (e?.type === 'AzureKeyVault' ? parseKeyUri(e.primaryKeyURI!).origin : undefined);

  return {
    kind: 'Update',
    steps: [
      {
        name: 'wrap-pending',
        skip: noKey,
        done: (ctx) => sameEncryption(server(ctx).pending?.encryption, ctx.input.target),
        run: async (ctx) => {
          const s = server(ctx);
          const pending = await k.custody.wrapPending(s, ctx.input.target!);
          return { previous: s.current.encryption, previousKid: s.current.wrappedBy, kid: pending.wrappedBy };
        },
      },
      {
        name: 'commit-wrap',
        skip: noKey,
        run: (ctx) => void k.custody.commitPending(server(ctx)),
      },
      {
        name: 'rewrap-backups',
        skip: noKey,
        run: async (ctx) => {
          const s = server(ctx);
          const n = await k.backups.rewrapEpochs(s);
          const w = ctx.outputOf('wrap-pending') as { previousKid?: string } | undefined;
          activity(k, s, ACTIVITY_OPERATIONS.rewrap, 'Succeeded', `Data-encryption key of ${s.name} re-wrapped (${ctx.input.why ?? 'data encryption changed'}): ${w?.previousKid ?? 'the previous key'} -> ${s.current.wrappedBy}; ${n} backup key(s) re-wrapped too. No data was re-encrypted.`, ctx.op.caller);
          return { backupKeys: n };
        },
      },
      {
        name: 'subscribe-events',
        skip: noKey,
        run: async (ctx) => {
          const s = server(ctx);
          await subscribeEvents(k, s);
          const previous = (ctx.outputOf('wrap-pending') as { previous?: DataEncryption } | undefined)?.previous;
          if (previous && originOf(previous) && originOf(previous) !== originOf(s.current.encryption)) await unsubscribeEvents(k, s, previous);
        },
      },
      {
        name: 'grow-storage',
        skip: (ctx) => ctx.input.storageGb === undefined,
        done: (ctx) => server(ctx).storageGb >= ctx.input.storageGb!,
        run: async (ctx) => {
          const s = server(ctx);
          if (!k.instances.isUp(s)) await k.instances.bringUp(s);
          const volume = k.runtime.volumeOf(s);
          try {
            volume.grow(ctx.input.storageGb!);
          } catch (e) {
            if (!(e instanceof VolumeError && e.code === 'OnlineResizeUnavailable')) throw e;
            // This kernel refuses online resize here: grow offline around a short stop.
            await k.instances.shutdown(s);
            volume.detach();
            volume.growOffline(ctx.input.storageGb!);
            await k.instances.bringUp(s);
          }
          k.repo.update(s.id, { storageGb: ctx.input.storageGb! });
        },
      },
      {
        name: 'set-admin-password',
        skip: (ctx) => !ctx.input.adminVerifier,
        run: async (ctx) => {
          const s = server(ctx);
          k.repo.update(s.id, { adminVerifier: ctx.input.adminVerifier! });
          if (!k.instances.isUp(s)) await k.instances.bringUp(s);
          await k.pgOf(s).setAdminPassword(ctx.input.adminVerifier!);
        },
      },
      {
        name: 'revalidate',
        skip: (ctx) => !ctx.input.target || ctx.input.resumeState !== 'Inaccessible',
        run: async (ctx) => k.instances.bringUp(server(ctx)),
      },
      {
        name: 'finish',
        run: (ctx) => {
          const s = server(ctx);
          const revalidated = ctx.input.resumeState === 'Inaccessible' && !!ctx.input.target;
          if (s.state === 'Updating') {
            applyTransition(k, s, revalidated ? 'updatedRunning' : returnEvent(ctx.input.resumeState),
              ctx.input.target ? { keyStatus: 'Valid', ...(revalidated ? { inaccessibleReason: null, keyUnreachableSince: null } : {}) } : {});
          }
          activity(k, s, ACTIVITY_OPERATIONS.write, 'Succeeded', `Server ${s.name} updated.`, ctx.op.caller);
        },
      },
    ],
    /** Back to the state it had; a re-wrap not committed yet is dropped (the current wrap still opens the DEK). */
    async compensate(ctx) {
      const s = k.repo.byId(ctx.op.serverId);
      if (!s) return;
      if (s.pending) k.repo.update(s.id, { pending: null });
      if (s.state === 'Updating') applyTransition(k, s, returnEvent(ctx.input.resumeState));
    },
  };
}
