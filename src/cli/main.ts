import { Command, CommanderError } from 'commander';
import { CliError } from './client.js';
import { registerPlatformCommands } from './commands-platform.js';
import { registerVaultCommands } from './commands-vault.js';
import { registerServerCommands } from './commands-servers.js';
import { registerArmCommands } from './commands-arm.js';
import { registerHsmCommands } from './commands-hsm.js';

/** `pgbyok`: a CLI shaped like `az`, acting as the signed-in principal against the platform over HTTPS. */
export async function main(argv: string[]): Promise<void> {
  const program = new Command('pgbyok')
    .description('Bring-your-own-key encryption at rest for PostgreSQL: identities, key vaults and encrypted servers')
    .option('--home <dir>', 'pgbyok home (default: $PGBYOK_HOME or ~/.pgbyok)')
    .option('-o, --output <format>', 'json, table or none', 'json')
    .option('--subscription <idOrName>', 'subscription to act in (default: $PGBYOK_SUBSCRIPTION, else the one `account set` chose, else the tenant\'s default)')
    .showHelpAfterError()
    .exitOverride();
  registerPlatformCommands(program);
  registerArmCommands(program);
  registerVaultCommands(program);
  registerHsmCommands(program);
  registerServerCommands(program);
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode;
      return;
    }
    if (e instanceof CliError) {
      process.stderr.write(`ERROR: ${e.message}\n`);
      process.exitCode = e.exitCode;
      return;
    }
    process.stderr.write(`ERROR: ${(e as Error).stack ?? e}\n`);
    process.exitCode = 1;
  }
}
