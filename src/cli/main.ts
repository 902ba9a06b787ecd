import { Command, CommanderError, type ErrorOptions } from 'commander';
import { CliError } from './client.js';
import { registerPlatformCommands } from './commands-platform.js';
import { registerVaultCommands } from './commands-vault.js';
import { registerServerCommands } from './commands-servers.js';
import { registerArmCommands } from './commands-arm.js';
import { registerHsmCommands } from './commands-hsm.js';
import { USAGE_EXIT } from './run.js';

/**
 * Every pgbyok command and group: a usage error is one line on stderr naming the command it was given to
 * and where its help is, and exits 2, so a script tells a typo from success.
 */
class PgbyokCommand extends Command {
  override createCommand(name?: string): Command {
    return new PgbyokCommand(name);
  }

  override error(message: string, errorOptions?: ErrorOptions): never {
    const names: string[] = [];
    for (let c: Command | null = this; c; c = c.parent) names.unshift(c.name());
    const path = names.join(' ');
    // Commander's text is `error: ...`, with a suggestion on a second line: `(Did you mean list?)`.
    const [first, ...more] = message.replace(/^error: /, '').split('\n');
    const suggestion = more.join(' ').trim().replace(/^\((.*)\)$/, '$1').replace(/^Did/, 'did');
    const forWhom = errorOptions?.code === 'commander.unknownCommand' && this.parent ? ` for '${path}'` : '';
    return super.error(`pgbyok: ${first}${forWhom} (${suggestion ? `${suggestion} ` : ''}see '${path} --help')`, { ...errorOptions, exitCode: USAGE_EXIT });
  }
}

/** `pgbyok`: a CLI shaped like `az`, acting as the signed-in principal against the platform over HTTPS. */
export async function main(argv: string[]): Promise<void> {
  const program = new PgbyokCommand('pgbyok')
    .description('Bring-your-own-key encryption at rest for PostgreSQL: identities, key vaults and encrypted servers')
    .option('--home <dir>', 'pgbyok home (default: $PGBYOK_HOME, else ~/.pgbyok, or /var/lib/pgbyok as root)')
    .option('-o, --output <format>', 'json, table or none', 'json')
    .option('--subscription <idOrName>', 'subscription to act in (default: $PGBYOK_SUBSCRIPTION, else the one `account set` chose, else the tenant\'s default)')
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
      // A group given no command prints its help on stderr: a usage error too (--help itself exits 0).
      process.exitCode = e.code === 'commander.help' && e.exitCode !== 0 ? USAGE_EXIT : e.exitCode;
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
