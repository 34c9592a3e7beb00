import { scrubErrorText } from '../http/log-errors.ts';
import { Command, InvalidArgumentError } from 'commander';
import pkg from '../../package.json' with { type: 'json' };
import { loadCliConfig, loadConfig } from '../config.ts';
import { openDatabase } from '../db/client.ts';
import { serve } from '../server.ts';
import { createAdminClient } from './client.ts';
import { record, table } from './format.ts';
import { registerProjectFileCommands } from './project-file-commands.ts';

type Obj = Record<string, unknown>;
type List = { data: Obj[] };

const program = new Command('eugpt')
  .description('eugpt: a self-hostable EU GPT API server, and its admin commands')
  .version(pkg.version)
  .option('--url <url>', 'server base URL for admin commands (default: EUGPT_URL, or http://127.0.0.1:$PORT)')
  .option('--json', 'print one JSON document instead of a table')
  .showHelpAfterError();

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number');
  return n;
}

/** Runs an admin command: calls the API, prints JSON or a view for people. */
function admin(run: (api: ReturnType<typeof createAdminClient>, ...args: never[]) => Promise<{ data: unknown; human: string }>) {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const opts = cmd.optsWithGlobals<{ url?: string; json?: boolean }>();
    const env = loadCliConfig();
    const api = createAdminClient(opts.url ?? env.url, env.adminToken);
    const { data, human } = await run(api, ...(args as never[]));
    process.stdout.write(`${opts.json === true ? JSON.stringify(data) : human}\n`);
  };
}

program
  .command('serve')
  .description('run the server (the same as npm start)')
  .option('-p, --port <port>', 'port to listen on (default: PORT or 8080)', port)
  .option('--host <host>', 'address to listen on (default: HOST or 127.0.0.1)')
  .action(async (opts: { port?: number; host?: string }) => {
    await serve({ ...(opts.port === undefined ? {} : { port: opts.port }), ...(opts.host === undefined ? {} : { host: opts.host }) });
  });

program
  .command('migrate')
  .description('apply database migrations (the server also does this at start)')
  .action(async () => {
    const config = loadConfig();
    const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    try {
      await database.migrate();
    } finally {
      await database.close();
    }
    process.stdout.write(`migrations applied (${database.kind === 'pglite' ? config.dataDir : 'DATABASE_URL'})\n`);
  });

const org = program.command('org').description('organisations');
org
  .command('create')
  .requiredOption('--name <name>', 'organisation name')
  .option('--plan <plan>', 'plan name')
  .action(
    admin(async (api, opts: { name: string; plan?: string }) => {
      const o = await api.request('POST', '/organizations', { name: opts.name, plan: opts.plan });
      return { data: o, human: record(o) };
    }),
  );
org.command('list').action(
  admin(async (api) => {
    const l = await api.request<List>('GET', '/organizations?limit=1000');
    return { data: l, human: table(l.data, ['id', 'name', 'plan', 'status', 'created_at']) };
  }),
);

/** A token limit on the command line: a whole number, or `none` to fall back to the plan's. */
function tokenLimit(value: string): number | 'none' {
  if (value === 'none') return value; // commander replaces a null from a parser with ''
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('must be a whole number of tokens, or none');
  return Number(value);
}

const limitValue = (v: number | 'none' | undefined) => (v === 'none' ? null : v);

function onOff(value: string): boolean {
  if (value !== 'on' && value !== 'off') throw new InvalidArgumentError('must be on or off');
  return value === 'on';
}

const patchOrg = (api: ReturnType<typeof createAdminClient>, id: string, body: Obj) =>
  api.request('PATCH', `/organizations/${encodeURIComponent(id)}`, body);

org
  .command('set-limits')
  .argument('<org-id>', 'organisation id')
  .option('--daily-tokens <n>', "tokens per UTC day for the whole organisation (none: the plan's)", tokenLimit)
  .option('--monthly-tokens <n>', "tokens per UTC month for the whole organisation (none: the plan's)", tokenLimit)
  .action(
    admin(async (api, id: string, opts: { dailyTokens?: number | 'none'; monthlyTokens?: number | 'none' }) => {
      const o = await patchOrg(api, id, { daily_token_limit: limitValue(opts.dailyTokens), monthly_token_limit: limitValue(opts.monthlyTokens) });
      return { data: o, human: record(o) };
    }),
  );
org
  .command('set-policy')
  .argument('<org-id>', 'organisation id')
  .option('--api-access <on|off>', 'allow API access', onOff)
  .option('--residency <eu|codes|any>', 'where requests may be answered: eu, country codes such as DE,FR, or any')
  .action(
    admin(async (api, id: string, opts: { apiAccess?: boolean; residency?: string }) => {
      if (opts.apiAccess === undefined && opts.residency === undefined) throw new Error('give --api-access, --residency or both');
      const residency = opts.residency === undefined ? undefined : residencyArgument(opts.residency);
      const o = await patchOrg(api, id, { api_access: opts.apiAccess, residency });
      const said = [
        ...(opts.apiAccess === undefined ? [] : [`API access ${opts.apiAccess ? 'on' : 'off'}`]),
        ...(residency === undefined ? [] : [`residency ${residency === null ? 'any' : String(o.residency)}`]),
      ];
      return { data: o, human: `${said.join(', ')} for ${String(o.name)} (${id})` };
    }),
  );
/** `eu`, `any` (no policy) or country codes separated by commas, as the admin API takes them. */
function residencyArgument(value: string): 'eu' | string[] | null {
  const v = value.trim().toLowerCase();
  if (v === 'any' || v === 'none') return null;
  if (v === 'eu') return 'eu';
  return value.split(',').map((c) => c.trim()).filter(Boolean);
}

for (const [name, status] of [
  ['suspend', 'suspended'],
  ['resume', 'active'],
] as const) {
  org
    .command(name)
    .argument('<org-id>', 'organisation id')
    .description(status === 'suspended' ? 'refuse every API request of the organisation' : 'lift a suspension')
    .action(
      admin(async (api, id: string) => {
        const o = await patchOrg(api, id, { status });
        return { data: o, human: `${String(o.name)} (${id}) is ${status}` };
      }),
    );
}
org
  .command('set-retention')
  .argument('<org-id>', 'organisation id')
  .requiredOption('--days <n|plan>', "days conversations, responses and files are kept (plan: the plan's)")
  .action(
    admin(async (api, id: string, opts: { days: string }) => {
      const days = opts.days === 'plan' ? null : Number(opts.days);
      if (days !== null && (!Number.isInteger(days) || days < 1)) throw new Error('--days takes a whole number of days, or plan');
      const o = await patchOrg(api, id, { retention_days: days });
      return { data: o, human: `${String(o.name)} (${id}) keeps content ${days === null ? "as long as its plan says" : `for ${days} days`}` };
    }),
  );
org
  .command('export')
  .argument('<org-id>', 'organisation id')
  .description('everything stored about the organisation, as JSON (redirect it to a file)')
  .action(
    admin(async (api, id: string) => {
      const e = await api.request('POST', `/organizations/${encodeURIComponent(id)}/export`);
      return { data: e, human: JSON.stringify(e, null, 2) };
    }),
  );
org
  .command('erase')
  .argument('<org-id>', 'organisation id')
  .option('--confirm', 'erasure cannot be undone: say so')
  .description('erase the organisation, its users and all their data (anonymous usage totals stay)')
  .action(
    admin(async (api, id: string, opts: { confirm?: boolean }) => {
      const e = await api.request('POST', `/organizations/${encodeURIComponent(id)}/erase`, { confirm: opts.confirm === true });
      return { data: e, human: `erased organisation ${id}: ${String(e.users)} users, ${String(e.conversations)} conversations, ${String(e.responses)} responses` };
    }),
  );
org
  .command('usage')
  .argument('<org-id>', 'organisation id')
  .action(
    admin(async (api, id: string) => {
      const u = await api.request<{ day: { organization: Obj; start: string }; month: { organization: Obj; start: string } }>('GET', `/organizations/${encodeURIComponent(id)}/usage`);
      const rows = [
        { window: `day ${u.day.start}`, ...u.day.organization },
        { window: `month ${u.month.start}`, ...u.month.organization },
      ];
      return { data: u, human: table(rows, ['window', 'total_tokens', 'input_tokens', 'output_tokens', 'requests', 'reserved_tokens', 'limit', 'remaining']) };
    }),
  );

const plan = program.command('plan').description('plans: token limits, features, trials');
plan.command('list').action(
  admin(async (api) => {
    const l = await api.request<List>('GET', '/plans');
    return { data: l, human: table(l.data, ['name', 'daily_tokens', 'monthly_tokens', 'user_daily_tokens', 'user_monthly_tokens', 'requests_per_minute', 'trial_days']) };
  }),
);

const user = program.command('user').description('users');
user
  .command('create')
  .requiredOption('--org <org-id>', 'organisation id')
  .requiredOption('--email <email>', 'email address')
  .option('--role <role>', 'owner, admin or member (default member)')
  .action(
    admin(async (api, opts: { org: string; email: string; role?: string }) => {
      const u = await api.request('POST', '/users', { organization_id: opts.org, email: opts.email, role: opts.role });
      return { data: u, human: record(u) };
    }),
  );
user
  .command('list')
  .option('--org <org-id>', 'only this organisation')
  .action(
    admin(async (api, opts: { org?: string }) => {
      const q = opts.org === undefined ? '' : `&organization_id=${encodeURIComponent(opts.org)}`;
      const l = await api.request<List>('GET', `/users?limit=1000${q}`);
      return { data: l, human: table(l.data, ['id', 'email', 'role', 'organization_id', 'created_at']) };
    }),
  );

user
  .command('export')
  .argument('<user-id>', 'user id')
  .description('everything stored about the user, as JSON (redirect it to a file)')
  .action(
    admin(async (api, id: string) => {
      const e = await api.request('POST', `/users/${encodeURIComponent(id)}/export`);
      return { data: e, human: JSON.stringify(e, null, 2) };
    }),
  );
user
  .command('erase')
  .argument('<user-id>', 'user id')
  .option('--confirm', 'erasure cannot be undone: say so')
  .description("erase the user's conversations, responses, files, keys and account (anonymous usage totals stay)")
  .action(
    admin(async (api, id: string, opts: { confirm?: boolean }) => {
      const e = await api.request('POST', `/users/${encodeURIComponent(id)}/erase`, { confirm: opts.confirm === true });
      return { data: e, human: `erased user ${id}: ${String(e.conversations)} conversations, ${String(e.responses)} responses, ${String(e.files)} files, ${String(e.api_keys)} keys` };
    }),
  );

const key = program.command('key').description('API keys');
key
  .command('create')
  .requiredOption('--user <user-id>', 'user id')
  .requiredOption('--label <label>', 'a name to recognise the key by')
  .action(
    admin(async (api, opts: { user: string; label: string }) => {
      const k = await api.request('POST', '/api-keys', { user_id: opts.user, label: opts.label });
      const warning = '\nStore the key now: it is shown only once and cannot be recovered.';
      return { data: k, human: record(k) + warning };
    }),
  );
key
  .command('list')
  .requiredOption('--user <user-id>', 'user id')
  .action(
    admin(async (api, opts: { user: string }) => {
      const l = await api.request<List>('GET', `/api-keys?limit=1000&user_id=${encodeURIComponent(opts.user)}`);
      return { data: l, human: table(l.data, ['id', 'label', 'prefix', 'created_at', 'last_used_at', 'revoked_at']) };
    }),
  );
key
  .command('revoke')
  .argument('<key-id>', 'key id')
  .action(
    admin(async (api, id: string) => {
      const k = await api.request('POST', `/api-keys/${encodeURIComponent(id)}/revoke`);
      return { data: k, human: `revoked ${String(k.prefix)}… (${id})` };
    }),
  );

const project = program.command('project').description('projects and their members');
project
  .command('create')
  .requiredOption('--org <org-id>', 'organisation id')
  .requiredOption('--name <name>', 'project name')
  .action(
    admin(async (api, opts: { org: string; name: string }) => {
      const p = await api.request('POST', '/projects', { organization_id: opts.org, name: opts.name });
      return { data: p, human: record(p) };
    }),
  );
project
  .command('list')
  .option('--org <org-id>', 'only this organisation')
  .action(
    admin(async (api, opts: { org?: string }) => {
      const q = opts.org === undefined ? '' : `&organization_id=${encodeURIComponent(opts.org)}`;
      const l = await api.request<List>('GET', `/projects?limit=1000${q}`);
      return { data: l, human: table(l.data, ['id', 'name', 'organization_id', 'created_at']) };
    }),
  );
project
  .command('add-member')
  .argument('<project-id>', 'project id')
  .requiredOption('--user <user-id>', 'user id (of the same organisation)')
  .action(
    admin(async (api, id: string, opts: { user: string }) => {
      const m = await api.request('POST', `/projects/${encodeURIComponent(id)}/members`, { user_id: opts.user });
      return { data: m, human: `user ${opts.user} is a member of project ${id}` };
    }),
  );
project
  .command('remove-member')
  .argument('<project-id>', 'project id')
  .requiredOption('--user <user-id>', 'user id')
  .action(
    admin(async (api, id: string, opts: { user: string }) => {
      const m = await api.request('DELETE', `/projects/${encodeURIComponent(id)}/members/${encodeURIComponent(opts.user)}`);
      return { data: m, human: `user ${opts.user} removed from project ${id}` };
    }),
  );
project
  .command('members')
  .argument('<project-id>', 'project id')
  .action(
    admin(async (api, id: string) => {
      const l = await api.request<List>('GET', `/projects/${encodeURIComponent(id)}/members`);
      return { data: l, human: table(l.data, ['user_id', 'created_at']) };
    }),
  );

/** A page size on the command line: 1 to 1000, as the API takes. */
function pageSize(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 1000) throw new InvalidArgumentError('must be a whole number from 1 to 1000');
  return n;
}

const audit = program.command('audit').description('the audit log of admin actions');
audit
  .command('list')
  .description('admin actions, newest first')
  .option('--action <action>', 'only this action, e.g. api_key.revoke or admin.auth_failed')
  .option('--target-type <type>', 'only this kind of target: organization, user, api_key, plan, project')
  .option('--target-id <id>', 'only this target')
  .option('--limit <n>', 'how many events (default 100, at most 1000)', pageSize)
  .action(
    admin(async (api, opts: { action?: string; targetType?: string; targetId?: string; limit?: number }) => {
      const q = new URLSearchParams({ limit: String(opts.limit ?? 100) });
      if (opts.action !== undefined) q.set('action', opts.action);
      if (opts.targetType !== undefined) q.set('target_type', opts.targetType);
      if (opts.targetId !== undefined) q.set('target_id', opts.targetId);
      const l = await api.request<List>('GET', `/audit?${q.toString()}`);
      return { data: l, human: table(l.data, ['id', 'at', 'actor', 'action', 'target_type', 'target_id', 'ip']) };
    }),
  );

registerProjectFileCommands(program);

try {
  await program.parseAsync();
} catch (err) {
  // Errors are one readable line; a stack trace helps nobody running an admin command.
  const message = scrubErrorText(err instanceof Error ? err.message : String(err));
  process.stderr.write(`eugpt: ${message.replaceAll('\n', '; ')}\n`);
  process.exitCode = 1;
}
