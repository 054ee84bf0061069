import fc from 'fast-check';
import type { Duration } from '../../../shared/core/domain/duration.js';
import type { RotationWindow } from '../../../shared/core/policy/types.js';

/**
 * Generators that build a config value as written (`raw`) together with the value the loader
 * must resolve it to (`want`), computed independently of the loader.
 */
export interface Gen<R, W> {
  raw: R;
  want: W;
}

const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });

export function durationArb(opts: { positive?: boolean } = {}): fc.Arbitrary<Gen<string, Duration>> {
  return fc
    .record({
      years: opt(fc.nat(5)),
      months: opt(fc.nat(24)),
      weeks: opt(fc.nat(10)),
      days: opt(fc.nat(400)),
      hours: opt(fc.nat(72)),
      minutes: opt(fc.nat(120)),
      seconds: opt(fc.nat(90)),
    })
    .filter((p) => Object.values(p).some((v) => v !== undefined))
    .filter((p) => !opts.positive || Object.values(p).some((v) => (v ?? 0) > 0))
    .map((p) => {
      const date = `${p.years !== undefined ? `${p.years}Y` : ''}${p.months !== undefined ? `${p.months}M` : ''}${
        p.weeks !== undefined ? `${p.weeks}W` : ''
      }${p.days !== undefined ? `${p.days}D` : ''}`;
      const time = `${p.hours !== undefined ? `${p.hours}H` : ''}${p.minutes !== undefined ? `${p.minutes}M` : ''}${
        p.seconds !== undefined ? `${p.seconds}S` : ''
      }`;
      const text = `P${date}${time ? `T${time}` : ''}`;
      return {
        raw: text,
        want: {
          text,
          years: p.years ?? 0,
          months: p.months ?? 0,
          weeks: p.weeks ?? 0,
          days: p.days ?? 0,
          hours: p.hours ?? 0,
          minutes: p.minutes ?? 0,
          seconds: p.seconds ?? 0,
        },
      };
    });
}

const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const hhmm = (m: number) =>
  `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;

export const windowArb: fc.Arbitrary<Gen<string, RotationWindow>> = fc
  .record({
    days: fc.uniqueArray(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 7 }),
    daily: fc.boolean(),
    start: fc.integer({ min: 0, max: 1439 }),
    end: fc.integer({ min: 1, max: 1440 }),
    offset: fc.integer({ min: -840, max: 840 }),
  })
  .filter((w) => w.start !== w.end)
  .map((w) => {
    const all = w.days.length === 7;
    const daySpec = all && w.daily ? 'daily' : w.days.map((d) => DAY_NAMES[d]).join(',');
    const abs = Math.abs(w.offset);
    const tz = w.offset === 0 ? 'UTC' : `UTC${w.offset < 0 ? '-' : '+'}${hhmm(abs)}`;
    const text = `${daySpec} ${hhmm(w.start)}-${hhmm(w.end)} ${tz}`;
    return {
      raw: text,
      want: {
        text,
        days: [...w.days].sort((a, b) => a - b),
        startMinute: w.start,
        endMinute: w.end,
        offsetMinutes: w.offset,
      },
    };
  });

/** A first character from `first`, then up to `max` from `rest` (cheaper than fc.stringMatching). */
const word = (first: string, rest: string, max: number) =>
  fc
    .tuple(fc.constantFrom(...first), fc.array(fc.constantFrom(...rest), { maxLength: max }))
    .map(([a, b]) => a + b.join(''));
const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const DIGITS = '0123456789';

const idArb = word(LOWER, `${LOWER}${DIGITS}-`, 8);

const secretArb = fc.oneof(
  word(`${LOWER.toUpperCase()}_`, `${LOWER.toUpperCase()}${DIGITS}_`, 10).map((n) => `env:${n}`),
  word(`${LOWER}${DIGITS}/._-`, `${LOWER}${DIGITS}/._-`, 19).map((p) => `file:${p}`),
);

const COLUMN_DEFAULTS = {
  id: 'id',
  key: 'kek_ref',
  version: 'kek_version',
  wrapped: 'wrapped_dek',
  context: 'aad',
};
const ident = word(`${LOWER}_`, `${LOWER}${DIGITS}_`, 12);

type Raw = Record<string, unknown>;
/** Drops undefined fields so the YAML has no `null`s for fields that were left out. */
const compact = (o: Raw): Raw => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

const providerArb: fc.Arbitrary<Gen<Raw, Raw>> = fc.oneof(
  fc
    .record({ keystore: opt(word(LOWER, `${LOWER}${DIGITS}./_-`, 15)), masterKey: opt(secretArb) })
    .map((p) => ({
      raw: compact({ type: 'local', ...p }),
      want: { type: 'local', keystore: p.keystore ?? 'kms.db', masterKey: p.masterKey ?? 'file:master.key' },
    })),
  fc
    .record({
      regions: fc.uniqueArray(fc.constantFrom('us-east-1', 'eu-west-1', 'ap-southeast-2', 'us-gov-west-1'), {
        minLength: 1,
      }),
      endpoint: opt(fc.constantFrom('http://127.0.0.1:4566', 'https://kms.example.com')),
      profile: opt(idArb),
    })
    .map((p) => ({ raw: compact({ type: 'aws-kms', ...p }), want: compact({ type: 'aws-kms', ...p }) })),
  fc
    .record({
      projects: fc.array(idArb, { minLength: 1, maxLength: 3 }),
      locations: fc.array(fc.constantFrom('global', 'europe-west1', 'us-central1'), {
        minLength: 1,
        maxLength: 2,
      }),
      keyRings: opt(fc.array(idArb, { minLength: 1, maxLength: 2 })),
      endpoint: opt(fc.constant('127.0.0.1:7443')),
    })
    .map((p) => ({ raw: compact({ type: 'gcp-kms', ...p }), want: compact({ type: 'gcp-kms', ...p }) })),
  fc
    .array(
      idArb.map((v) => `${v}.vault.azure.net`),
      { minLength: 1, maxLength: 3 },
    )
    .map((vaults) => ({ raw: { type: 'azure-kv', vaults }, want: { type: 'azure-kv', vaults } })),
  fc
    .record({ module: fc.constant('/usr/lib/softhsm/libsofthsm2.so'), token: idArb, pin: secretArb })
    .map((p) => ({ raw: { type: 'pkcs11', ...p }, want: { type: 'pkcs11', ...p } })),
);

const storeArb: fc.Arbitrary<Gen<Raw, Raw>> = fc
  .record({
    type: fc.constantFrom('sqlite', 'postgres'),
    path: word(LOWER, `${LOWER}${DIGITS}._/-`, 15),
    url: secretArb,
    table: opt(ident),
    columns: opt(
      fc.record(
        { id: ident, key: ident, version: ident, wrapped: ident, context: ident },
        { requiredKeys: [] },
      ),
    ),
  })
  .map((s) => {
    const where = s.type === 'sqlite' ? { path: s.path } : { url: s.url };
    return {
      raw: compact({ type: s.type, ...where, table: s.table, columns: s.columns }),
      want: {
        type: s.type,
        ...where,
        table: s.table ?? 'data_keys',
        columns: { ...COLUMN_DEFAULTS, ...s.columns },
      },
    };
  });

const KEY_REFS = [
  'local://orders-1',
  'aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
  'gcp-kms://projects/my-project/locations/global/keyRings/r1/cryptoKeys/k1',
  'azure-kv://prod.vault.azure.net/keys/k1',
  'pkcs11:token=prod;object=kek1',
];
const GLOBS = ['*', 'pci', 'orders-*', 'a?c', 'team/{a,b}*', '!(tmp)*'];

function subset<T>(items: T[]): fc.Arbitrary<T[] | undefined> {
  return items.length === 0
    ? fc.constant(undefined)
    : opt(fc.uniqueArray(fc.constantFrom(...items), { minLength: 1, maxLength: items.length }));
}

function policyArb(providerIds: string[], storeIds: string[]): fc.Arbitrary<Gen<Raw, Raw>> {
  const day = (n: number) => ({
    raw: `P${n}D`,
    want: { text: `P${n}D`, years: 0, months: 0, weeks: 0, days: n, hours: 0, minutes: 0, seconds: 0 },
  });
  return fc
    .record({
      match: fc.record(
        {
          provider: subset(providerIds),
          tags: fc.dictionary(word(LOWER, `${LOWER}-`, 8), fc.constantFrom(...GLOBS), { maxKeys: 3 }),
          name: fc.uniqueArray(fc.constantFrom(...GLOBS), { minLength: 1, maxLength: 3 }),
          protection: fc.uniqueArray(fc.constantFrom('software', 'hsm', 'external'), { minLength: 1 }),
          keys: fc.uniqueArray(fc.constantFrom(...KEY_REFS), { minLength: 1, maxLength: 3 }),
        },
        { requiredKeys: [] },
      ),
      rotate: opt(
        fc.record({
          every: durationArb({ positive: true }),
          window: opt(windowArb),
          mode: opt(fc.constantFrom('auto', 'native', 'rekey')),
        }),
      ),
      require: opt(
        fc.record(
          {
            protection: fc.constantFrom('software', 'hsm', 'external'),
            algorithms: fc.uniqueArray(fc.constantFrom('AES_256', 'AES_128', 'RSA_2048', 'HMAC_256'), {
              minLength: 1,
            }),
          },
          { requiredKeys: [] },
        ),
      ),
      rewrap:
        storeIds.length === 0
          ? fc.constant(undefined)
          : opt(
              fc.record({
                stores: fc.uniqueArray(fc.constantFrom(...storeIds), { minLength: 1 }),
                within: opt(durationArb()),
                rate: opt(
                  fc.tuple(
                    fc.integer({ min: 1, max: 100_000 }),
                    fc.constantFrom(['s', 1], ['min', 60], ['h', 3600] as const),
                  ),
                ),
                verify: opt(fc.oneof(fc.constantFrom('full', 'none'), fc.integer({ min: 1, max: 100 }))),
                batchSize: opt(fc.integer({ min: 1, max: 100_000 })),
              }),
            ),
      retire: opt(
        fc.record({
          a: opt(fc.nat(400)),
          b: opt(fc.nat(400)),
          destroyDelay: opt(fc.integer({ min: 1, max: 120 })),
          approvals: opt(fc.integer({ min: 0, max: 10 })),
        }),
      ),
      budget: opt(
        fc.record(
          {
            perKeyMonthly: fc.tuple(
              fc.integer({ min: 0, max: 100_000 }),
              fc.constantFrom('USD', 'EUR', 'JPY', 'CHF'),
            ),
          },
          { requiredKeys: [] },
        ),
      ),
    })
    .map((p) => {
      const raw: Raw = { match: compact(p.match as Raw) };
      const want: Raw = { match: compact(p.match as Raw) };
      if (p.rotate) {
        const r = p.rotate;
        raw.rotate = compact({ every: r.every.raw, window: r.window?.raw, mode: r.mode });
        want.rotate = compact({ every: r.every.want, window: r.window?.want, mode: r.mode ?? 'auto' });
      }
      if (p.require) {
        raw.require = p.require;
        want.require = p.require;
      }
      if (p.rewrap) {
        const r = p.rewrap;
        const verify =
          r.verify === undefined
            ? undefined
            : typeof r.verify === 'number'
              ? { raw: `sample(${r.verify}%)`, want: { mode: 'sample', fraction: r.verify / 100 } }
              : { raw: r.verify, want: { mode: r.verify } };
        const rate = r.rate && {
          raw: `${r.rate[0]}/${r.rate[1][0]}`,
          want: { text: `${r.rate[0]}/${r.rate[1][0]}`, perSecond: r.rate[0] / r.rate[1][1] },
        };
        raw.rewrap = compact({
          stores: r.stores,
          within: r.within?.raw,
          rate: rate?.raw,
          verify: verify?.raw,
          batchSize: r.batchSize,
        });
        want.rewrap = compact({
          stores: r.stores,
          within: r.within?.want,
          rate: rate?.want,
          verify: verify?.want ?? { mode: 'full' },
          batchSize: r.batchSize ?? 1000,
        });
      }
      if (p.retire) {
        const r = p.retire;
        // destroyAfter is never shorter than disableAfter.
        const [lo, hi] =
          r.a !== undefined && r.b !== undefined ? [Math.min(r.a, r.b), Math.max(r.a, r.b)] : [r.a, r.b];
        const delay = day(r.destroyDelay ?? 30);
        raw.retire = compact({
          disableAfter: lo === undefined ? undefined : day(lo).raw,
          destroyAfter: hi === undefined ? undefined : day(hi).raw,
          destroyDelay: r.destroyDelay === undefined ? undefined : delay.raw,
          approvals: r.approvals,
        });
        want.retire = compact({
          disableAfter: lo === undefined ? undefined : day(lo).want,
          destroyAfter: hi === undefined ? undefined : day(hi).want,
          destroyDelay: delay.want,
          approvals: r.approvals ?? 0,
        });
      }
      if (p.budget) {
        const m = p.budget.perKeyMonthly;
        raw.budget = compact({ perKeyMonthly: m && `${(m[0] / 100).toFixed(2)} ${m[1]}` });
        want.budget = compact({ perKeyMonthly: m && { amount: m[0] / 100, currency: m[1] } });
      }
      return { raw, want };
    });
}

/** A whole valid config as written, with the RekeyConfig fields the loader must produce. */
export const configArb: fc.Arbitrary<Gen<Raw, { providers: Raw; stores: Raw; policies: Raw[] }>> = fc
  .record({
    providers: fc.dictionary(idArb, providerArb, { minKeys: 1, maxKeys: 4 }),
    stores: opt(fc.dictionary(idArb, storeArb, { maxKeys: 3 })),
  })
  .chain(({ providers, stores }) =>
    fc
      .array(policyArb(Object.keys(providers), Object.keys(stores ?? {})), { maxLength: 4 })
      .map((policies) => {
        const named = policies.map((p, i) => ({ name: `policy-${i}`, ...p }));
        const map = <T>(o: Record<string, Gen<Raw, Raw>>, k: 'raw' | 'want') =>
          Object.fromEntries(Object.entries(o).map(([id, g]) => [id, g[k]])) as T;
        const raw = compact({
          version: 1,
          providers: map<Raw>(providers, 'raw'),
          stores: stores && map<Raw>(stores, 'raw'),
          policies: named.length > 0 ? named.map((p, i) => ({ name: `policy-${i}`, ...p.raw })) : undefined,
        });
        return {
          raw,
          want: {
            providers: map<Raw>(providers, 'want'),
            stores: map<Raw>(stores ?? {}, 'want'),
            policies: named.map((p, i) => ({ name: `policy-${i}`, index: i, ...p.want })),
          },
        };
      }),
  );
