import type { ServerKit } from '../../kit.js';
import type { Runner } from '../runner.js';
import { deleteWorkflow } from './delete.js';
import { powerWorkflows } from './power.js';
import { promoteWorkflow } from './promote.js';
import { provisionWorkflow } from './provision.js';
import { updateWorkflow } from './update.js';

/** One workflow per kind of operation (see ../catalog.ts for their steps). */
export function registerWorkflows(k: ServerKit, runner: Runner): void {
  for (const kind of ['Create', 'Restore', 'GeoRestore', 'CreateReplica'] as const) runner.register(provisionWorkflow(k, kind));
  runner.register(updateWorkflow(k));
  runner.register(promoteWorkflow(k));
  runner.register(deleteWorkflow(k));
  for (const wf of powerWorkflows(k)) runner.register(wf);
}
