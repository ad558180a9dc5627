/**
 * One config schema: a corpus of good and bad configs run through the loader (validation and the
 * chain built as `mxguard check` builds it) and through the published JSON Schema with a standard
 * validator (ajv, draft 2020-12). Both agree on every case; each refusal names its place and the
 * nearest known name. Then `mxguard config check`, and exit status 2 in check, serve and policy.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '@mxguard/core';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { configJsonSchema, createRuntime, jsonLogger, type MxguardConfig } from 'mxguard';
import { describe, expect, it } from 'vitest';

const root = new URL('../../../', import.meta.url);
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const published = JSON.parse(readFileSync(new URL('schema/mxguard.schema.json', root), 'utf8')) as object;
const ajv = new Ajv2020({ allErrors: true, strict: false });
const schemaValid = ajv.compile(published);

/** The loader: validation, then every link built (no I/O: a resolver never asked, memory stores). */
async function load(config: unknown): Promise<Awaited<ReturnType<typeof createRuntime>>> {
  const rt = await createRuntime(config as MxguardConfig, {
    offline: false,
    dryRun: true,
    log: jsonLogger(() => {}, 'error'),
  });
  await rt.close();
  return rt;
}

async function loaderError(config: unknown): Promise<string | undefined> {
  try {
    await load(config);
    return undefined;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.message;
  }
}

const D = { ourDomains: ['mydomain.org'] };

/** Configs both must refuse, with what the loader says. */
const BAD: [string, unknown, RegExp][] = [
  [
    'a duration with a unit Postfix does not know',
    { ...D, gateway: { sessionLifetime: '30x' } },
    /^config\.gateway\.sessionLifetime: a duration: whole seconds, or a number with a unit ms, s, m, h, d or w \(as 300s, 5m\), from 1m to 1d$/,
  ],
  [
    'a duration in seconds out of range',
    { ...D, policy: { idleTimeout: 0 } },
    /^config\.policy\.idleTimeout: from 1s to 1d \(a number is seconds\)$/,
  ],
  [
    'a recipient limit of 0',
    { ...D, gateway: { recipientLimit: 0 } },
    /^config\.gateway\.recipientLimit: a whole number from 1 to 100000$/,
  ],
  [
    'a limit misspelt',
    { ...D, gateway: { recipientlimit: 10 } },
    /^config\.gateway\.recipientlimit: unknown key; did you mean "recipientLimit"\?$/,
  ],
  [
    'ourDomain (one letter short)',
    { ourDomain: ['mydomain.org'] },
    /^config\.ourDomain: unknown key; did you mean "ourDomains"\?$/,
  ],
  [
    'warn: a misspelt check',
    { ...D, warn: ['helo-fqnd'] },
    /^config\.warn\[0\]: unknown check "helo-fqnd"; did you mean "helo-fqdn"\?$/,
  ],
  [
    'delayreject',
    { ...D, delayreject: false },
    /^config\.delayreject: unknown key; did you mean "delayReject"\?$/,
  ],
  [
    'a greylist store bound that is not a whole number (said of the key, not of the string form)',
    { ...D, greylist: { store: 'memory', maxTripletBytes: 1.5 } },
    /^config\.greylist\.maxTripletBytes: must be an integer; got 1\.5$/,
  ],
  [
    'a greylist store count of 0, refused when the config is read rather than when the store is made',
    { ...D, greylist: { store: 'memory', maxTriplets: 0 } },
    /^config\.greylist\.maxTriplets: Too small: expected number to be >=1$/,
  ],
  [
    'a reputation store bound of the wrong type',
    { ...D, reputationStore: { type: 'memory', maxBytes: 'big' } },
    /^config\.reputationStore\.maxBytes: must be a number; got "big"$/,
  ],
  [
    'a greylist store that is neither a location nor an object',
    { ...D, greylist: 5 },
    /^config\.greylist: must be "memory" or a string or an object; got 5$/,
  ],
  [
    'greylist store: stor',
    { ...D, greylist: { stor: 'memory' } },
    /^config\.greylist\.stor: unknown key; did you mean "store"\?$/,
  ],
  [
    'options for a misspelt check',
    { ...D, options: { 'helo-fqnd': { action: 'score' } } },
    /^config\.options\.helo-fqnd: unknown check; did you mean "helo-fqdn"\?$/,
  ],
  [
    'a misspelt option',
    { ...D, options: { 'rdns-dynamic': { actoin: 'score' } } },
    /^config\.options\.rdns-dynamic\.actoin: unknown key; did you mean "action"\?$/,
  ],
  [
    'options for a check not in checks',
    { ...D, checks: ['sender-domain'], options: { callout: { domains: ['example.net'] } } },
    /^config\.options\.callout: "callout" is not in "checks"/,
  ],
  [
    'warn for a check not in checks',
    { ...D, checks: ['relay'], warn: ['helo-fqdn'] },
    /^config\.warn\[0\]: "helo-fqdn" is not in "checks"/,
  ],
  [
    'warn for a check not in the recommended chain',
    { ...D, warn: ['geo'] },
    /^config\.warn\[0\]: "geo" is not in the recommended chain/,
  ],
  [
    'options for a check not in the recommended chain',
    { ...D, options: { weigh: { reject: 5 } } },
    /^config\.options\.weigh: "weigh" is not in the recommended chain/,
  ],
  [
    'a misspelt check in checks',
    { ...D, checks: ['relay', 'dnsbll'] },
    /^config\.checks\[1\]: unknown check "dnsbll"; did you mean "dnsbl"\?$/,
  ],
  [
    'a misspelt check as an object',
    { ...D, checks: [{ name: 'helo-fqnd', action: 'warn' }] },
    /^config\.checks\[0\]\.name: unknown check "helo-fqnd"; did you mean "helo-fqdn"\?$/,
  ],
  [
    'a misspelt option inline',
    { ...D, checks: [{ name: 'dnsbl', treshold: 2 }] },
    /^config\.checks\[0\]\.treshold: unknown key; did you mean "threshold"\?$/,
  ],
  [
    'an entry without a name',
    { ...D, checks: [{ action: 'warn' }] },
    /^config\.checks\[0\]: needs a "name"$/,
  ],
  [
    'an entry that is a number',
    { ...D, checks: [42] },
    /^config\.checks\[0\]: must be a check name or an object with a "name"; got 42$/,
  ],
  [
    'a bad action',
    { ...D, checks: [{ name: 'helo-fqdn', action: 'rejet' }] },
    /^config\.checks\[0\]\.action: must be one of .*"reject".*got "rejet"/,
  ],
  [
    'a bad option value',
    { ...D, options: { greylist: { mode: 'some' } } },
    /^config\.options\.greylist\.mode: must be one of "selective", "all"; got "some"$/,
  ],
  [
    'ourDomains as a string',
    { ourDomains: 'mydomain.org' },
    /^config\.ourDomains: must be a list of strings; got "mydomain\.org"$/,
  ],
  [
    'help.ur',
    { ...D, help: { ur: 'https://example.org/help' } },
    /^config\.help\.ur: unknown key; did you mean "url"\?$/,
  ],
  [
    'dns.timeot',
    { ...D, dns: { timeot: 5 } },
    /^config\.dns\.timeot: unknown key; did you mean "timeout"\?$/,
  ],
  [
    'dnsLists as a string',
    { ...D, dnsLists: 'zen.spamhaus.org' },
    /^config\.dnsLists: must be a list of strings/,
  ],
  [
    'a store that is neither memory nor redis',
    { ...D, reputationStore: 'memcache' },
    /^config\.reputationStore: /,
  ],
  ['$schemas', { ...D, $schemas: 'x' }, /^config\.\$schemas: unknown key; did you mean "\$schema"\?$/],
  [
    'a nested misspelt key',
    { ...D, options: { reputation: { points: { rejections: 1 } } } },
    /^config\.options\.reputation\.points\.rejections: unknown key; did you mean "rejection"\?$/,
  ],
  [
    'weigh without reject',
    { ...D, checks: [{ name: 'weigh' }] },
    /^config\.checks\[0\]\.reject: is required$/,
  ],
  [
    'received named alone, without its lists',
    { ...D, checks: ['relay', 'received'] },
    /^config\.checks\[1\]: "received" needs options \(lists\)/,
  ],
  [
    'received with an action',
    { ...D, checks: [{ name: 'received', lists: ['zen.test'], action: 'reject' }] },
    /^config\.checks\[0\]\.action: no hit action: Received headers are claims by strangers/,
  ],
  ['a list, not an object', [], /^config: must be a JSON object$/],
];

/** Configs both accept. */
const GOOD: [string, unknown][] = [
  ['empty: the embedded defaults', {}],
  ['our domains and the schema key', { ...D, $schema: './schema/mxguard.schema.json' }],
  ['warn for a check of the recommended chain', { ...D, warn: ['helo-fqdn'] }],
  [
    'options for checks of the recommended chain',
    { ...D, options: { 'rdns-dynamic': { action: 'score', score: 3 }, greylist: { delay: 300 } } },
  ],
  [
    'options beside checks',
    { ...D, checks: ['sender-domain', 'callout'], options: { callout: { domains: ['example.net'] } } },
  ],
  [
    'received with its lists in options',
    {
      ...D,
      checks: ['received', { name: 'weigh', reject: 5, stage: 'data' }],
      options: { received: { lists: ['zen.test'] } },
    },
  ],
  [
    'every store and DNS setting',
    {
      ...D,
      dns: { servers: ['127.0.0.1:53'], timeout: 2000, cacheBytes: 1048576 },
      dnsLists: ['zen.spamhaus.org=127.0.0.[2..11]*3'],
      rhsLists: ['dbl.spamhaus.org'],
      greylist: { store: 'memory', maxTriplets: 1000, maxTripletBytes: 8388608, maxClientBytes: 1048576 },
      reputationStore: 'redis://127.0.0.1:6379/1',
      calloutStore: { type: 'memory', max: 100, maxBytes: 1048576 },
    },
  ],
  [
    'the gateway and policy limits, durations as main.cf writes them',
    {
      ...D,
      gateway: {
        budget: '9s',
        recipientLimit: 500,
        junkCommandLimit: 50,
        timeout: '5m',
        progressTimeout: 300,
        sessionLifetime: '1h',
        minDataRate: 500,
        maxConnections: 200,
        clientConnectionLimit: 10,
        clientConnectionRateLimit: 30,
        maxMessagesPerConnection: 100,
      },
      policy: {
        budget: '7500ms',
        idleTimeout: '330s',
        connectionLifetime: '1100s',
        maxConnections: 512,
        maxTransactions: 5000,
        transactionTtl: '1h',
        maxTransactionBytes: 16777216,
        maxRecipientBytes: 131072,
      },
    },
  ],
  [
    'a check in warn mode inline',
    {
      ...D,
      checks: [
        { name: 'dnsbl', action: 'warn' },
        { name: 'helo-fqdn', action: 'greylist', bareIp: 'fail' },
      ],
    },
  ],
  [
    'site settings',
    {
      ...D,
      ourHosts: ['mx.mydomain.org'],
      ourNetworks: ['192.0.2.0/24'],
      trustedForwarders: ['198.51.100.7'],
      helpUrl: 'https://mydomain.org/mail',
      delayReject: false,
    },
  ],
  [
    'address-guessing with its users',
    { ...D, options: { 'address-guessing': { users: ['alice@mydomain.org'] } } },
  ],
];

/**
 * Refused by the loader only: what a JSON Schema cannot see (the meaning of a CIDR or a DNS list
 * spec, a key given in two places, two thresholds in order, a check listed twice).
 */
const LOADER_ONLY: [string, unknown, RegExp][] = [
  [
    'the same option inline and in options',
    { ...D, checks: [{ name: 'dnsbl', threshold: 2 }], options: { dnsbl: { threshold: 3 } } },
    /^config\.options\.dnsbl\.threshold: also given in checks\[0\]; give it in one place$/,
  ],
  ['a CIDR with host bits', { ...D, ourNetworks: ['192.0.2.1/24'] }, /192\.0\.2\.1\/24.*host bits/],
  ['defer above reject', { ...D, checks: [{ name: 'weigh', reject: 5, defer: 9 }] }, /below/],
  ['a bad DNS list spec', { ...D, dnsLists: ['zen.spamhaus.org=127.0.0.999'] }, /^config\.dnsLists\[0\]: /],
  ['a check listed twice', { ...D, checks: ['relay', 'relay'] }, /twice/],
  [
    'a duration with a unit below its least',
    { ...D, gateway: { sessionLifetime: '10s' } },
    /^config\.gateway\.sessionLifetime: 10s is below the least, 1m$/,
  ],
  [
    'a budget with a unit above its most',
    { ...D, policy: { budget: '11m' } },
    /^config\.policy\.budget: 11m is above the most, 10m$/,
  ],
];

describe('the published JSON Schema', () => {
  it('is up to date: schema/mxguard.schema.json is `mxguard config schema`', () => {
    expect(published).toEqual(configJsonSchema());
  });

  it('is a valid draft 2020-12 schema', () => {
    expect(ajv.validateSchema(published)).toBe(true);
  });
});

describe('the config corpus: loader and JSON Schema agree', () => {
  it.each(BAD)('refuses %s', async (_name, config, message) => {
    const error = await loaderError(config);
    expect(error).toBeDefined();
    expect(error?.split('\n')[0]).toMatch(message);
    expect(schemaValid(config)).toBe(false);
  });

  it.each(GOOD)('accepts %s', async (_name, config) => {
    expect(await loaderError(config)).toBeUndefined();
    expect(schemaValid(config), JSON.stringify(schemaValid.errors)).toBe(true);
  });

  it.each(LOADER_ONLY)('the loader alone refuses %s (beyond JSON Schema)', async (_name, config, message) => {
    expect(await loaderError(config)).toMatch(message);
    expect(schemaValid(config)).toBe(true);
  });

  it('reports every issue of a config at once, one line each', async () => {
    const error = await loaderError({ ourDomain: ['x'], delayreject: false, warn: ['helo-fqnd'] });
    expect(error?.split('\n').sort()).toEqual([
      'config.delayreject: unknown key; did you mean "delayReject"?',
      'config.ourDomain: unknown key; did you mean "ourDomains"?',
      'config.warn[0]: unknown check "helo-fqnd"; did you mean "helo-fqdn"?',
    ]);
  });
});

describe('options beside checks', () => {
  it('are applied to the entry of that name, as if written inline', async () => {
    const beside = await load({
      ...D,
      checks: ['sender-domain', 'callout'],
      options: { callout: { domains: ['example.net'] } },
    });
    const inline = await load({
      ...D,
      checks: ['sender-domain', { name: 'callout', domains: ['example.net'] }],
    });
    const callout = (rt: typeof beside) => rt.policy.links.find((l) => l.name === 'callout')?.options;
    expect(callout(beside)).toEqual({ domains: ['example.net'] });
    expect(callout(beside)).toEqual(callout(inline));
  });

  it('warn and options for the recommended chain reach their links', async () => {
    const rt = await load({ ...D, warn: ['helo-fqdn'], options: { 'rdns-dynamic': { action: 'score' } } });
    expect(rt.policy.links.find((l) => l.name === 'helo-fqdn')?.mode).toBe('warn');
    expect(rt.policy.links.find((l) => l.name === 'rdns-dynamic')?.options).toEqual({ action: 'score' });
  });
});

describe('the CLI on a bad config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mxguard-config-'));
  const file = (name: string, config: unknown) => {
    const p = join(dir, name);
    writeFileSync(p, JSON.stringify(config));
    return p;
  };
  const bad = file('bad.json', { ourDomain: ['mydomain.org'] });
  const cli = (args: string[]) =>
    spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', input: '', timeout: 30_000 });

  it.each([
    ['check', ['check', '--offline', '--config', bad]],
    ['serve', ['serve', '--offline', '--listen', '127.0.0.1:0', '--config', bad]],
    ['policy', ['policy', '--offline', '--listen', '127.0.0.1:0', '--config', bad]],
    ['config check', ['config', 'check', bad]],
  ])('%s exits 2 and says where and what was meant', (_name, args) => {
    const r = cli(args);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('config.ourDomain: unknown key; did you mean "ourDomains"?');
  });

  it('config check prints the effective chain link by link, and what is off and why', () => {
    const good = file('good.json', {
      ...D,
      dnsLists: ['zen.spamhaus.org=127.0.0.[2..11]*3'],
      greylist: 'redis://127.0.0.1:6379/0',
      warn: ['helo-fqdn'],
      options: { greylist: { delay: 300 }, 'rdns-dynamic': { action: 'score', score: 3 } },
    });
    const r = cli(['config', 'check', good, '--offline']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`${good}: valid`);
    expect(r.stdout).toMatch(
      /^\s+7\. helo-fqdn\s+warn \(logs what it would do, never refuses\)\s+\(would greylist\)$/m,
    );
    expect(r.stdout).toMatch(
      /^\s+\d+\. dnsbl\s+action default\s+lists: zen\.spamhaus\.org=127\.0\.0\.\[2\.\.11\]\*3\s+\[skipped offline: no DNS\]$/m,
    );
    expect(r.stdout).toMatch(/^\s+\d+\. rdns-dynamic\s+action score\s+options \{"score":3\}$/m);
    expect(r.stdout).toMatch(
      /^\s+\d+\. greylist\s+action default\s+options \{"mode":"selective","delay":300\}\s+store: redis:\/\/127\.0\.0\.1:6379\/0$/m,
    );
    expect(r.stdout).toMatch(/^off:\n {2}address-guessing: needs options\.address-guessing\.users/m);
  });

  it('config schema prints the published schema', () => {
    const r = cli(['config', 'schema']);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(published);
  });
});
