import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../../shared/core/domain/duration.js';
import { PolicyError } from '../../../shared/core/errors.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { BASE, issuesOf, yaml } from './helpers.js';

describe('loadConfig: a valid file', () => {
  const text = yaml(
    ...BASE,
    '  - name: pci-keks',
    '    match: { provider: [aws-prod, hsm], tags: { data-class: pci }, name: ["orders-*"], protection: [hsm], keys: [local://x] }',
    '    rotate: { every: P90D, window: "Sat 02:00-06:00 UTC" }',
    '    require: { protection: hsm, algorithms: [AES_256] }',
    '    rewrap: { stores: [orders], within: P7D, rate: 500/s, verify: sample(1%), batchSize: 500 }',
    '    retire: { disableAfter: P30D, destroyAfter: P90D, destroyDelay: P30D, approvals: 2 }',
    '    budget: { perKeyMonthly: 5 USD }',
    '  - name: rest',
    '    match: {}',
  );

  it('resolves every field into its typed form', () => {
    const c = loadConfig(text, 'conf/rekey.yaml');
    expect(c.version).toBe(1);
    expect(c.file).toBe('conf/rekey.yaml');
    expect(c.digest).toBe(createHash('sha256').update(text).digest('hex'));
    expect(c.providers['aws-prod']).toEqual({ type: 'aws-kms', regions: ['us-east-1'] });
    expect(c.providers.hsm).toEqual({
      type: 'pkcs11',
      module: '/usr/lib/softhsm/libsofthsm2.so',
      token: 'prod',
      pin: 'env:HSM_PIN',
    });
    expect(c.stores.orders).toEqual({
      type: 'postgres',
      url: 'env:ORDERS_DB',
      table: 'data_keys',
      columns: { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' },
    });
    const [p, rest] = c.policies;
    expect(p).toEqual({
      name: 'pci-keks',
      index: 0,
      match: {
        provider: ['aws-prod', 'hsm'],
        tags: { 'data-class': 'pci' },
        name: ['orders-*'],
        protection: ['hsm'],
        keys: ['local://x'],
      },
      rotate: {
        every: parseDuration('P90D'),
        window: {
          text: 'Sat 02:00-06:00 UTC',
          days: [6],
          startMinute: 120,
          endMinute: 360,
          offsetMinutes: 0,
        },
        mode: 'auto',
      },
      require: { protection: 'hsm', algorithms: ['AES_256'] },
      rewrap: {
        stores: ['orders'],
        within: parseDuration('P7D'),
        rate: { text: '500/s', perSecond: 500 },
        verify: { mode: 'sample', fraction: 0.01 },
        batchSize: 500,
      },
      retire: {
        disableAfter: parseDuration('P30D'),
        destroyAfter: parseDuration('P90D'),
        destroyDelay: parseDuration('P30D'),
        approvals: 2,
      },
      budget: { perKeyMonthly: { amount: 5, currency: 'USD' } },
    });
    expect(rest).toEqual({ name: 'rest', index: 1, match: {} });
  });

  it('applies defaults: local provider, store columns, rotate mode, verify, batch size, retire', () => {
    const c = loadConfig(
      yaml(
        'version: 1',
        'providers:',
        '  local-dev: { type: local }',
        'stores:',
        '  app: { type: sqlite, path: app.db, columns: { wrapped: blob } }',
        'policies:',
        '  - name: p',
        '    match: {}',
        '    rotate: { every: P1Y }',
        '    rewrap: { stores: [app] }',
        '    retire: {}',
      ),
      'local.yaml',
    );
    expect(c.providers['local-dev']).toEqual({
      type: 'local',
      keystore: 'kms.db',
      masterKey: 'file:master.key',
    });
    expect(c.stores.app).toEqual({
      type: 'sqlite',
      path: 'app.db',
      table: 'data_keys',
      columns: { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'blob', context: 'aad' },
    });
    const p = c.policies[0]!;
    expect(p.rotate?.mode).toBe('auto');
    expect(p.rewrap).toEqual({ stores: ['app'], verify: { mode: 'full' }, batchSize: 1000 });
    expect(p.retire).toEqual({ destroyDelay: parseDuration('P30D'), approvals: 0 });
  });

  it('canonicalises key refs in match.keys', () => {
    const c = loadConfig(
      yaml(...BASE, '  - name: p', '    match: { keys: ["azure-kv://PROD.vault.azure.net/keys/k1"] }'),
      'f.yaml',
    );
    expect(c.policies[0]!.match.keys).toEqual(['azure-kv://prod.vault.azure.net/keys/k1']);
  });

  it('treats stores and policies as optional', () => {
    const c = loadConfig(yaml('version: 1', 'providers:', '  l: { type: local }'), 'f.yaml');
    expect(c.stores).toEqual({});
    expect(c.policies).toEqual([]);
  });
});

describe('loadConfig: malformed files', () => {
  it('reports YAML syntax errors at their position', () => {
    expect(issuesOf(yaml('version: 1', 'providers: [', ''), 'bad.yaml')).toEqual([
      expect.objectContaining({ file: 'bad.yaml', line: 4, column: 1, path: '' }),
    ]);
    const dup = issuesOf(yaml('version: 1', 'version: 1'));
    expect(dup).toEqual([
      { file: 'rekey.yaml', line: 2, column: 1, path: '', message: expect.stringMatching(/unique/) },
    ]);
    const tab = issuesOf(yaml('version: 1', 'providers:', '\tx: 1'));
    expect(tab[0]).toMatchObject({ line: 3, column: 1 });
  });

  it('reports an alias to a missing anchor at the alias', () => {
    expect(issuesOf(yaml('version: 1', 'providers: *nothing'))).toEqual([
      expect.objectContaining({ line: 2, column: 12, message: expect.stringMatching(/alias/i) }),
    ]);
  });

  it('rejects mapping keys that are not plain scalars, at the key', () => {
    expect(issuesOf(yaml('version: 1', 'providers:', '  ? [a, b]', '  : { type: local }'))).toEqual([
      { file: 'rekey.yaml', line: 3, column: 5, path: '', message: 'mapping keys must be plain strings' },
    ]);
  });

  it('rejects several documents in one file', () => {
    expect(issuesOf(yaml('version: 1', '---', 'version: 1'))[0]).toMatchObject({ line: 2, column: 1 });
  });

  it('rejects an empty file, a comment-only file and a non-mapping root', () => {
    for (const text of ['', '   \n', '# nothing here\n', '~\n']) {
      expect(issuesOf(text)).toEqual([
        { file: 'rekey.yaml', line: 1, column: 1, path: '', message: expect.stringMatching(/empty/) },
      ]);
    }
    expect(issuesOf('- version: 1\n')).toEqual([
      {
        file: 'rekey.yaml',
        line: 1,
        column: 1,
        path: '',
        message: expect.stringMatching(/mapping.*not a list/),
      },
    ]);
    expect(issuesOf('\n\n  just text\n')).toEqual([
      {
        file: 'rekey.yaml',
        line: 3,
        column: 3,
        path: '',
        message: expect.stringMatching(/not a single value/),
      },
    ]);
  });

  it('requires version 1', () => {
    expect(issuesOf(yaml('providers:', '  l: { type: local }'))).toEqual([
      {
        file: 'rekey.yaml',
        line: 1,
        column: 1,
        path: 'version',
        message: expect.stringMatching(/missing.*version/),
      },
    ]);
    // A different version is reported alone: the rest was written against another schema.
    expect(issuesOf(yaml('providers: 3', 'version: 2', 'bogus: 1'))).toEqual([
      {
        file: 'rekey.yaml',
        line: 2,
        column: 10,
        path: 'version',
        message: expect.stringMatching(/unsupported version 2/),
      },
    ]);
    expect(issuesOf(yaml('version: "1"', 'providers:', '  l: { type: local }'))[0]).toMatchObject({
      line: 1,
      column: 10,
      path: 'version',
    });
  });

  it('reports unknown fields at their key, everywhere', () => {
    const issues = issuesOf(
      yaml(
        'version: 1',
        'extra: true',
        'providers:',
        '  aws-prod: { type: aws-kms, regions: [us-east-1], region: x }',
        'stores:',
        '  s: { type: sqlite, path: a.db, columns: { idd: x } }',
        'policies:',
        '  - name: p',
        '    match: { providers: [aws-prod] }',
        '    rotate:',
        '      every: P1D',
        '      evry: P2D',
        '    colour: blue',
      ),
    );
    expect(issues).toEqual([
      { file: 'rekey.yaml', line: 2, column: 1, path: 'extra', message: 'unknown field "extra"' },
      {
        file: 'rekey.yaml',
        line: 4,
        column: 52,
        path: 'providers.aws-prod.region',
        message: 'unknown field "region"',
      },
      {
        file: 'rekey.yaml',
        line: 6,
        column: 45,
        path: 'stores.s.columns.idd',
        message: 'unknown field "idd"',
      },
      {
        file: 'rekey.yaml',
        line: 9,
        column: 14,
        path: 'policies[0].match.providers',
        message: 'unknown field "providers"',
      },
      {
        file: 'rekey.yaml',
        line: 12,
        column: 7,
        path: 'policies[0].rotate.evry',
        message: 'unknown field "evry"',
      },
      {
        file: 'rekey.yaml',
        line: 13,
        column: 5,
        path: 'policies[0].colour',
        message: 'unknown field "colour"',
      },
    ]);
  });

  it('reports bad durations at the value', () => {
    const issues = issuesOf(
      yaml(
        ...BASE,
        '  - name: p',
        '    match: {}',
        '    rotate: { every: 90 days }',
        '    rewrap: { stores: [orders], within: P7 }',
        '    retire: { disableAfter: P30D, destroyAfter: P90D, destroyDelay: PT12H }',
        '  - name: q',
        '    match: {}',
        '    rotate: { every: PT0S }',
      ),
    );
    expect(issues).toEqual([
      {
        file: 'rekey.yaml',
        line: 10,
        column: 22,
        path: 'policies[0].rotate.every',
        message: expect.stringMatching(/"90 days" is not an ISO-8601 duration/),
      },
      {
        file: 'rekey.yaml',
        line: 11,
        column: 41,
        path: 'policies[0].rewrap.within',
        message: expect.stringMatching(/"P7" is not an ISO-8601 duration/),
      },
      {
        file: 'rekey.yaml',
        line: 12,
        column: 69,
        path: 'policies[0].retire.destroyDelay',
        message: 'must be between P1D and P120D',
      },
      {
        file: 'rekey.yaml',
        line: 15,
        column: 22,
        path: 'policies[1].rotate.every',
        message: 'must be longer than zero',
      },
    ]);
  });

  it('requires destroyAfter >= disableAfter and destroyDelay within P1D..P120D', () => {
    const issues = issuesOf(
      yaml(
        ...BASE,
        '  - name: p',
        '    match: {}',
        '    retire: { disableAfter: P30D, destroyAfter: P10D, destroyDelay: P121D }',
      ),
    );
    expect(issues).toEqual([
      {
        file: 'rekey.yaml',
        line: 10,
        column: 49,
        path: 'policies[0].retire.destroyAfter',
        message: 'destroyAfter (P10D) must not be shorter than disableAfter (P30D)',
      },
      expect.objectContaining({ line: 10, column: 69, path: 'policies[0].retire.destroyDelay' }),
    ]);
    for (const ok of ['P1D', 'P120D', 'PT24H', 'P4W']) {
      expect(() =>
        loadConfig(yaml(...BASE, '  - name: p', '    match: {}', `    retire: { destroyDelay: ${ok} }`), 'f'),
      ).not.toThrow();
    }
    expect(
      issuesOf(yaml(...BASE, '  - name: p', '    match: {}', '    retire: { destroyDelay: PT23H }')),
    ).toHaveLength(1);
  });

  it('reports unknown provider and store ids at the list element', () => {
    const issues = issuesOf(
      yaml(
        ...BASE,
        '  - name: p',
        '    match:',
        '      provider:',
        '        - aws-prod',
        '        - gcp-prod',
        '    rewrap: { stores: [orders, billing] }',
      ),
    );
    expect(issues).toEqual([
      {
        file: 'rekey.yaml',
        line: 12,
        column: 11,
        path: 'policies[0].match.provider[1]',
        message: 'unknown provider "gcp-prod" (configured: aws-prod, hsm)',
      },
      {
        file: 'rekey.yaml',
        line: 13,
        column: 32,
        path: 'policies[0].rewrap.stores[1]',
        message: 'unknown store "billing" (configured: orders)',
      },
    ]);
    const noStores = issuesOf(
      yaml(
        'version: 1',
        'providers: { l: { type: local } }',
        'policies:',
        '  - { name: p, match: {}, rewrap: { stores: [app] } }',
      ),
    );
    expect(noStores).toEqual([
      expect.objectContaining({
        line: 4,
        column: 46,
        message: 'unknown store "app" (no stores are configured)',
      }),
    ]);
  });

  it('reports unparsable key refs at the list element', () => {
    const issues = issuesOf(
      yaml(
        ...BASE,
        '  - name: p',
        '    match: { keys: [local://ok, "aws-kms://arn:aws:kms:us-east-1:1:key/x", ftp://k] }',
      ),
    );
    expect(issues).toEqual([
      {
        file: 'rekey.yaml',
        line: 9,
        column: 33,
        path: 'policies[0].match.keys[1]',
        message: expect.stringMatching(/^invalid key ref "aws-kms:\/\/arn:aws:kms:us-east-1:1:key\/x"/),
      },
      {
        file: 'rekey.yaml',
        line: 9,
        column: 76,
        path: 'policies[0].match.keys[2]',
        message: expect.stringMatching(/unknown scheme "ftp"/),
      },
    ]);
  });

  it('refuses literal secrets without repeating them', () => {
    const text = yaml(
      'version: 1',
      'providers:',
      '  hsm: { type: pkcs11, module: /m.so, token: t, pin: "12345678" }',
      '  hsm2: { type: pkcs11, module: /m.so, token: t, pin: 87654321 }',
      '  dev: { type: local, masterKey: c2VjcmV0LWtleS1tYXRlcmlhbA== }',
      'stores:',
      '  db: { type: postgres, url: "postgres://app:hunter2@db/app" }',
      '  db2: { type: postgres, url: "env:1BAD" }',
      '  db3: { type: postgres, url: "file:" }',
    );
    let err: unknown;
    try {
      loadConfig(text, 'rekey.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyError);
    const e = err as PolicyError;
    expect(e.issues.map((i) => [i.line, i.column, i.path])).toEqual([
      [3, 54, 'providers.hsm.pin'],
      [4, 55, 'providers.hsm2.pin'],
      [5, 34, 'providers.dev.masterKey'],
      [7, 30, 'stores.db.url'],
      [8, 31, 'stores.db2.url'],
      [9, 31, 'stores.db3.url'],
    ]);
    expect(e.issues[0]!.message).toMatch(/literal secret is refused.*env:NAME or file:PATH/);
    expect(e.issues[4]!.message).toMatch(/variable name/);
    expect(e.issues[5]!.message).toMatch(/path/);
    for (const secret of ['12345678', '87654321', 'c2VjcmV0', 'hunter2', '1BAD']) {
      expect(e.message).not.toContain(secret);
    }
  });

  it('checks provider types and their fields', () => {
    const issues = issuesOf(
      yaml(
        'version: 1',
        'providers:',
        '  a: { type: aws, regions: [us-east-1] }',
        '  b: { regions: [us-east-1] }',
        '  c: { type: aws-kms, regions: [] }',
        '  d: { type: aws-kms, regions: [Europe] , endpoint: "ftp://x" }',
        '  e: { type: gcp-kms, projects: [p] }',
        '  "bad id": { type: local }',
        '  f: local',
      ),
    );
    expect(issues).toEqual([
      {
        file: 'rekey.yaml',
        line: 3,
        column: 14,
        path: 'providers.a.type',
        message: 'unknown type "aws": expected one of local, aws-kms, gcp-kms, azure-kv, pkcs11',
      },
      {
        file: 'rekey.yaml',
        line: 4,
        column: 6,
        path: 'providers.b.type',
        message: 'missing required field "type" (one of local, aws-kms, gcp-kms, azure-kv, pkcs11)',
      },
      {
        file: 'rekey.yaml',
        line: 5,
        column: 32,
        path: 'providers.c.regions',
        message: 'must list at least 1 item(s)',
      },
      {
        file: 'rekey.yaml',
        line: 6,
        column: 33,
        path: 'providers.d.regions[0]',
        message: 'must be an AWS region such as us-east-1',
      },
      {
        file: 'rekey.yaml',
        line: 6,
        column: 53,
        path: 'providers.d.endpoint',
        message: 'must be an http(s) URL',
      },
      {
        file: 'rekey.yaml',
        line: 7,
        column: 6,
        path: 'providers.e.locations',
        message: 'missing required field "locations"',
      },
      {
        file: 'rekey.yaml',
        line: 8,
        column: 3,
        path: 'providers["bad id"]',
        message: expect.stringMatching(/^invalid id "bad id": provider ids are/),
      },
      {
        file: 'rekey.yaml',
        line: 9,
        column: 6,
        path: 'providers.f',
        message: 'expected a mapping, got a string',
      },
    ]);
  });

  it('checks store tables and columns are plain identifiers', () => {
    const issues = issuesOf(
      yaml(
        ...BASE.slice(0, 5),
        '  s: { type: sqlite, path: a.db, table: "keys; drop table x" }',
        '  p: { type: postgres, url: env:DB, table: app.keys, columns: { id: "id-1" } }',
      ),
    );
    expect(issues.map((i) => [i.line, i.column, i.path, i.message])).toEqual([
      [6, 41, 'stores.s.table', 'must be a plain SQL identifier (letters, digits, _)'],
      [7, 69, 'stores.p.columns.id', 'must be a plain SQL identifier (letters, digits, _)'],
    ]);
  });

  it('checks windows, rates, verify modes, money, enums and numbers', () => {
    const issues = issuesOf(
      yaml(
        ...BASE,
        '  - name: p',
        '    match: { protection: [hsm, quantum] }',
        '    rotate: { every: P1D, window: "Sat 02:00-06:00 CET", mode: manual }',
        '    require: { algorithms: [AES_512] }',
        '    rewrap: { stores: [orders], rate: 10/day, verify: sample(101%), batchSize: 0 }',
        '    retire: { approvals: -1 }',
        '    budget: { perKeyMonthly: 5 EUROS }',
      ),
    );
    expect(issues.map((i) => [i.line, i.column, i.path])).toEqual([
      [9, 32, 'policies[0].match.protection[1]'],
      [10, 35, 'policies[0].rotate.window'],
      [10, 64, 'policies[0].rotate.mode'],
      [11, 29, 'policies[0].require.algorithms[0]'],
      [12, 39, 'policies[0].rewrap.rate'],
      [12, 55, 'policies[0].rewrap.verify'],
      [12, 80, 'policies[0].rewrap.batchSize'],
      [13, 26, 'policies[0].retire.approvals'],
      [14, 30, 'policies[0].budget.perKeyMonthly'],
    ]);
    const m = issues.map((i) => i.message);
    expect(m[0]).toBe('must be one of software, hsm, external');
    expect(m[1]).toMatch(/time zone "CET" must be UTC/);
    expect(m[2]).toBe('must be one of auto, native, rekey');
    expect(m[4]).toMatch(/"10\/day" is not a rate/);
    expect(m[5]).toMatch(/at most 100/);
    expect(m[6]).toBe('must be at least 1');
    expect(m[7]).toBe('must be at least 0');
    expect(m[8]).toMatch(/"5 EUROS" is not an amount of money/);
  });

  it('checks name and tag globs', () => {
    const issues = issuesOf(
      yaml(...BASE, '  - name: p', '    match: { name: ["ok-*", "bad-["], tags: { team: "a(b", env: "" } }'),
    );
    expect(issues).toEqual([
      expect.objectContaining({
        line: 9,
        column: 29,
        path: 'policies[0].match.name[1]',
        message: expect.stringMatching(/not a valid glob/),
      }),
      expect.objectContaining({
        line: 9,
        column: 53,
        path: 'policies[0].match.tags.team',
        message: expect.stringMatching(/not a valid glob/),
      }),
      expect.objectContaining({
        line: 9,
        column: 65,
        path: 'policies[0].match.tags.env',
        message: 'a glob cannot be empty',
      }),
    ]);
  });

  it('requires unique policy names and reports the duplicate', () => {
    const issues = issuesOf(
      yaml(...BASE, '  - { name: a, match: {} }', '  - { name: b, match: {} }', '  - { name: a, match: {} }'),
    );
    expect(issues).toEqual([
      {
        file: 'rekey.yaml',
        line: 10,
        column: 13,
        path: 'policies[2].name',
        message: 'duplicate policy name "a" (also policies[0])',
      },
    ]);
  });

  it('points a missing field at the nearest enclosing node', () => {
    const issues = issuesOf(
      yaml(...BASE, '  - match: {}', '    rotate:', '      window: daily 01:00-02:00 UTC', '  - name:'),
    );
    expect(issues).toEqual([
      {
        file: 'rekey.yaml',
        line: 8,
        column: 5,
        path: 'policies[0].name',
        message: 'missing required field "name"',
      },
      {
        file: 'rekey.yaml',
        line: 10,
        column: 7,
        path: 'policies[0].rotate.every',
        message: 'missing required field "every"',
      },
      {
        file: 'rekey.yaml',
        line: 11,
        column: 5,
        path: 'policies[1].match',
        message: 'missing required field "match"',
      },
      // An empty value is located where the value should have been written.
      {
        file: 'rekey.yaml',
        line: 11,
        column: 10,
        path: 'policies[1].name',
        message: 'expected a string, got an empty value',
      },
    ]);
  });

  it('reports all problems at once, sorted by position, in the error message too', () => {
    let err: PolicyError | undefined;
    try {
      loadConfig(
        yaml(
          'version: 1',
          'providers: { a: { type: local, x: 1 } }',
          'policies: [{ name: p, match: { provider: [b] } }]',
        ),
        'c.yaml',
      );
    } catch (e) {
      err = e as PolicyError;
    }
    expect(err).toBeInstanceOf(PolicyError);
    expect(err!.code).toBe('POLICY_INVALID');
    expect(err!.message).toBe(
      [
        'c.yaml:2:32: providers.a.x: unknown field "x"',
        'c.yaml:3:43: policies[0].match.provider[0]: unknown provider "b" (configured: a)',
      ].join('\n'),
    );
  });
});
