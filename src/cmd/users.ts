// `regiondb users hash-password` and `regiondb users new-token`: print entries to paste into the
// users file named by `[auth] users_file` (docs/security.md). Nothing is written to disk here.
import type { Command } from 'commander';
import { ROLES, type Role, hashPassword, newToken } from '../rpc/auth.js';

/** One line from stdin: hidden input on a terminal, or the first line of a pipe. */
async function readPassword(prompt: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    let text = '';
    for await (const chunk of stdin) text += String(chunk);
    return text.split(/\r?\n/)[0] ?? '';
  }
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  return new Promise((resolve, reject) => {
    let password = '';
    const finish = (err?: Error) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(password);
    };
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003') return finish(new Error('cancelled'));
        password = ch === '\u007f' ? password.slice(0, -1) : password + ch;
      }
    };
    stdin.on('data', onData);
  });
}

function parseRole(value: string): Role {
  if (!(ROLES as readonly string[]).includes(value)) throw new Error(`--role must be one of ${ROLES.join(', ')}`);
  return value as Role;
}

function tomlString(s: string): string {
  return JSON.stringify(s); // a JSON string is a valid TOML basic string
}

export function registerUsersCommand(program: Command): void {
  const users = program.command('users').description('entries for the users file of [auth] users_file (docs/security.md)');
  users
    .command('hash-password')
    .description('read a password (hidden on a terminal, or the first line of stdin) and print a [[users]] entry with its salted scrypt hash')
    .requiredOption('--name <user>', 'user name (no colons or spaces)')
    .option('--role <role>', `one of ${ROLES.join(', ')}`, parseRole, 'read-write' as Role)
    .action(async (opts: { name: string; role: Role }) => {
      if (!/^[^:\s]{1,128}$/.test(opts.name)) throw new Error('--name: 1..128 characters, no colons or spaces');
      const password = await readPassword(`password for ${opts.name}: `);
      if (!password) throw new Error('the password is empty');
      const hash = await hashPassword(password);
      process.stdout.write(`[[users]]\nname = ${tomlString(opts.name)}\nrole = ${tomlString(opts.role)}\npassword_hash = ${tomlString(hash)}\n`);
    });
  users
    .command('new-token')
    .description('make a random bearer token; prints the token (shown once) and the [[tokens]] entry that stores only its sha256')
    .requiredOption('--name <name>', 'what the token is for (shown in logs)')
    .option('--role <role>', `one of ${ROLES.join(', ')}`, parseRole, 'read-only' as Role)
    .action((opts: { name: string; role: Role }) => {
      if (!/^[^:\s]{1,128}$/.test(opts.name)) throw new Error('--name: 1..128 characters, no colons or spaces');
      const { token, sha256 } = newToken();
      process.stderr.write(`token (give it to the client, e.g. REGIONDB_TOKEN=...; it is not stored anywhere):\n`);
      process.stdout.write(`${token}\n`);
      process.stderr.write(`\nadd to the users file:\n`);
      process.stdout.write(`[[tokens]]\nname = ${tomlString(opts.name)}\nrole = ${tomlString(opts.role)}\ntoken_sha256 = ${tomlString(sha256)}\n`);
    });
}
