import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GENESIS_HASH, hashRecord } from '../../../shared/core/audit/auditLog.js';
import { ACTION_MEANINGS } from '../../../shared/core/audit/export/actions.js';
import { escapeCefHeader, escapeCefValue, toCef } from '../../../shared/core/audit/export/cef.js';
import { ChainTracker } from '../../../shared/core/audit/export/chainTracker.js';
import { toJsonLine } from '../../../shared/core/audit/export/jsonl.js';
import { toOcsf } from '../../../shared/core/audit/export/ocsf.js';
import { isSensitiveName, redactDetails } from '../../../shared/core/audit/export/redact.js';
import type { AuditRecord } from '../../../shared/core/ports/StateStore.js';

function record(over: Partial<AuditRecord> = {}, prev = GENESIS_HASH): AuditRecord {
  const base = {
    seq: 1,
    ts: '2026-11-28T10:00:00.000Z',
    actor: 'svc-rotator',
    action: 'key.rotated',
    target: 'aws-kms://arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    details: { previousPrimary: 'v1', primary: 'v2', planId: 'plan-1' },
    prevHash: prev,
    ...over,
  };
  return { ...base, hash: hashRecord(base) };
}

// ---------- OCSF: required attributes of the classes, as the OCSF 1.1 schema defines them ----------
type AttrType = 'integer' | 'string' | 'object' | 'array' | 'timestamp';
const BASE_REQUIRED: Record<string, AttrType> = {
  activity_id: 'integer',
  category_uid: 'integer',
  class_uid: 'integer',
  severity_id: 'integer',
  time: 'timestamp',
  type_uid: 'integer',
  metadata: 'object',
};
const CLASS_REQUIRED: Record<
  number,
  { category: number; activities: number[]; attrs: Record<string, AttrType> }
> = {
  6003: {
    category: 6,
    activities: [0, 1, 2, 3, 4, 99],
    attrs: { actor: 'object', api: 'object', src_endpoint: 'object' },
  },
  3004: {
    category: 3,
    activities: [0, 1, 2, 3, 4, 5, 6, 7, 99],
    attrs: { actor: 'object', entity: 'object' },
  },
};
// Recommended attributes rekey promises to fill as well.
const PROMISED: Record<string, AttrType> = { status_id: 'integer', message: 'string' };

function typeOk(v: unknown, t: AttrType): boolean {
  switch (t) {
    case 'integer':
      return Number.isInteger(v);
    case 'timestamp':
      return Number.isInteger(v) && (v as number) > 1e11; // milliseconds, not seconds
    case 'string':
      return typeof v === 'string' && v.length > 0;
    case 'object':
      return !!v && typeof v === 'object' && !Array.isArray(v);
    case 'array':
      return Array.isArray(v);
  }
}

/** Every violation of the OCSF class rules in one event; empty when valid. */
function ocsfViolations(e: Record<string, unknown>): string[] {
  const out: string[] = [];
  const need = (obj: Record<string, unknown>, attrs: Record<string, AttrType>, where: string) => {
    for (const [k, t] of Object.entries(attrs)) if (!typeOk(obj[k], t)) out.push(`${where}${k} must be ${t}`);
  };
  need(e, { ...BASE_REQUIRED, ...PROMISED }, '');
  const cls = CLASS_REQUIRED[e.class_uid as number];
  if (!cls) return [...out, `unexpected class_uid ${e.class_uid}`];
  need(e, cls.attrs, '');
  if (e.category_uid !== cls.category) out.push('category_uid does not match class');
  if (!cls.activities.includes(e.activity_id as number)) out.push('activity_id not in the class enum');
  if (e.type_uid !== (e.class_uid as number) * 100 + (e.activity_id as number)) out.push('type_uid');
  if (![0, 1, 2, 3, 4, 5, 6, 99].includes(e.severity_id as number)) out.push('severity_id enum');
  if (![0, 1, 2, 99].includes(e.status_id as number)) out.push('status_id enum');
  const md = e.metadata as Record<string, unknown>;
  if (md) {
    need(md, { version: 'string', product: 'object' }, 'metadata.');
    const p = md.product as Record<string, unknown> | undefined;
    if (p) need(p, { name: 'string', vendor_name: 'string', version: 'string' }, 'metadata.product.');
  }
  const actor = e.actor as Record<string, unknown> | undefined;
  if (actor && !['user', 'process', 'session', 'app_name', 'app_uid', 'invoked_by'].some((k) => k in actor))
    out.push('actor needs one of user, process, session, app_name, app_uid, invoked_by');
  if (actor?.user) need(actor.user as Record<string, unknown>, { name: 'string' }, 'actor.user.');
  if (e.class_uid === 6003) {
    const api = e.api as Record<string, unknown> | undefined;
    if (api) need(api, { operation: 'string' }, 'api.');
    const src = e.src_endpoint as Record<string, unknown> | undefined;
    if (
      src &&
      !['ip', 'hostname', 'name', 'uid', 'svc_name', 'domain'].some((k) => typeof src[k] === 'string')
    )
      out.push('src_endpoint needs an identifying attribute');
  }
  if (e.class_uid === 3004) {
    const ent = e.entity as Record<string, unknown> | undefined;
    if (ent && typeof ent.uid !== 'string' && typeof ent.name !== 'string')
      out.push('entity needs name or uid');
  }
  if (e.cloud !== undefined) need(e.cloud as Record<string, unknown>, { provider: 'string' }, 'cloud.');
  return out;
}

describe('OCSF', () => {
  it('the validator itself rejects an event missing what the class requires', () => {
    const good = toOcsf(record(), { productVersion: '0.1.0' });
    expect(ocsfViolations(good)).toEqual([]);
    const { entity: _e, time: _t, ...bad } = good;
    expect(ocsfViolations({ ...bad, time: 1764324000 })).toEqual(
      expect.arrayContaining(['time must be timestamp', 'entity must be object']),
    );
  });

  it('every known action maps to a valid event of the class it belongs to', () => {
    for (const action of Object.keys(ACTION_MEANINGS)) {
      const e = toOcsf(record({ action }), { productVersion: '0.1.0' });
      expect(ocsfViolations(e), action).toEqual([]);
    }
    expect(toOcsf(record({ action: 'key.rotated' }), { productVersion: '1' })).toMatchObject({
      class_uid: 3004,
      category_uid: 3,
      activity_id: 3,
      type_uid: 300403,
      time: Date.parse('2026-11-28T10:00:00.000Z'),
      entity: { type: 'Encryption Key', version: 'v2' },
      cloud: { provider: 'AWS', region: 'eu-west-1' },
      metadata: { product: { name: 'rekey', vendor_name: 'rekey', version: '1' }, correlation_uid: 'plan-1' },
    });
    expect(
      toOcsf(record({ action: 'plan.created', target: 'plan-1' }), { productVersion: '1' }),
    ).toMatchObject({
      class_uid: 6003,
      type_uid: 600301,
      api: { operation: 'plan.created' },
    });
  });

  it('failures carry status Failure and the error text', () => {
    const e = toOcsf(record({ action: 'action.failed', details: { error: 'AccessDenied' } }), {
      productVersion: '1',
    });
    expect(e).toMatchObject({
      status_id: 2,
      status: 'Failure',
      status_detail: 'AccessDenied',
      severity_id: 3,
    });
    const partial = toOcsf(record({ action: 'apply.finished', details: { status: 'partial' } }), {
      productVersion: '1',
    });
    expect(partial.status_id).toBe(2);
  });

  it('any record, known action or not, gives a valid event (property)', () => {
    const actions = fc.oneof(fc.constantFrom(...Object.keys(ACTION_MEANINGS)), fc.string());
    fc.assert(
      fc.property(
        actions,
        fc.string(),
        fc.option(fc.string()),
        fc.integer({ min: 1, max: 1e9 }),
        fc.date({ min: new Date('2001-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }),
        (action, actor, target, seq, at) => {
          const e = toOcsf(record({ action, actor, target, seq, ts: at.toISOString() }), {
            productVersion: '0.1.0',
          });
          expect(ocsfViolations(e)).toEqual([]);
          expect(e.time).toBe(at.getTime());
        },
      ),
    );
  });
});

// ---------- CEF ----------
const unescapeHeader = (s: string) => s.replace(/\\([\\|])/g, '$1');
const unescapeValue = (s: string) =>
  s.replace(/\\([\\=nr])/g, (_m, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : c));

/** An independent reader: splits on unescaped `|` and `=` the way a SIEM parser does. */
function parseCef(line: string): { header: string[]; ext: Record<string, string> } {
  const header: string[] = [];
  let i = 0;
  let cur = '';
  while (header.length < 7) {
    const c = line[i]!;
    if (c === '\\') {
      cur += c + line[i + 1];
      i += 2;
    } else if (c === '|') {
      header.push(unescapeHeader(cur));
      cur = '';
      i++;
    } else {
      cur += c;
      i++;
    }
  }
  const rest = line.slice(i);
  const segs: string[] = [];
  cur = '';
  for (let j = 0; j < rest.length; j++) {
    const c = rest[j]!;
    if (c === '\\') {
      cur += c + rest[j + 1];
      j++;
    } else if (c === '=') {
      segs.push(cur);
      cur = '';
    } else cur += c;
  }
  segs.push(cur);
  const ext: Record<string, string> = {};
  let key = segs[0]!;
  for (let k = 1; k < segs.length; k++) {
    const s = segs[k]!;
    const last = k === segs.length - 1;
    const cut = last ? s.length : s.lastIndexOf(' ');
    ext[key] = unescapeValue(s.slice(0, cut));
    key = s.slice(cut + 1);
  }
  return { header, ext };
}

describe('CEF', () => {
  it('has the header layout and the extensions SIEMs key on', () => {
    const line = toCef(record(), { productVersion: '0.1.0', chainValid: true });
    const { header, ext } = parseCef(line);
    expect(header).toEqual(['CEF:0', 'rekey', 'rekey', '0.1.0', 'key.rotated', 'Key rotated', '1']);
    expect(ext).toMatchObject({
      rt: String(Date.parse('2026-11-28T10:00:00.000Z')),
      suser: 'svc-rotator',
      act: 'key.rotated',
      outcome: 'success',
      cs1Label: 'target',
      cs5: 'true',
      cs6: 'plan-1',
      cn1: '1',
    });
    expect(JSON.parse(ext.cs4!)).toEqual({ planId: 'plan-1', previousPrimary: 'v1', primary: 'v2' });
  });

  it('escapes pipes and backslashes in the header, equals and line breaks in values', () => {
    expect(escapeCefHeader('a|b\\c\nd')).toBe('a\\|b\\\\c d');
    expect(escapeCefValue('a=b\\c\nd\re|f')).toBe('a\\=b\\\\c\\nd\\re|f');
  });

  it('round-trips any actor, action, target and version through an independent parser (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary' }),
        fc.string({ unit: 'binary' }),
        fc.option(fc.string({ unit: 'binary' }), { nil: null }),
        fc.string({ unit: 'binary' }),
        fc.string(),
        (actor, action, target, version, note) => {
          const r = record({ actor, action, target, details: { note } });
          const line = toCef(r, { productVersion: version });
          expect(line).not.toMatch(/[\r\n]/);
          const { header, ext } = parseCef(line);
          expect(header[3]).toBe(version.replace(/\r\n|\r|\n/g, ' '));
          expect(header[4]).toBe(action.replace(/\r\n|\r|\n/g, ' '));
          expect(ext.suser).toBe(actor.replace(/\r\n/g, '\n'));
          expect(ext.act).toBe(action.replace(/\r\n/g, '\n'));
          expect(ext.cs1).toBe((target ?? '').replace(/\r\n/g, '\n'));
          expect(Object.keys(ext)).toContain('cs4');
        },
      ),
    );
  });

  it('actions named like Object.prototype members are plain unknown actions', () => {
    for (const action of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      const { header, ext } = parseCef(toCef(record({ action }), { productVersion: '1' }));
      expect(header.slice(4), action).toEqual([action, action, '1']);
      expect(ext.act).toBe(action);
      expect(toOcsf(record({ action }), { productVersion: '1' })).toMatchObject({
        class_uid: 6003,
        activity_id: 99,
      });
    }
  });

  it('a failure is outcome=failure with a higher severity', () => {
    const { header, ext } = parseCef(toCef(record({ action: 'action.failed' }), { productVersion: '1' }));
    expect(ext.outcome).toBe('failure');
    expect(Number(header[6])).toBeGreaterThan(1);
  });
});

// ---------- JSON lines, redaction, chain tracking ----------
describe('JSON lines', () => {
  it('keeps the record as stored so its hash can be recomputed, plus chainValid', () => {
    const r = record();
    const line = JSON.parse(toJsonLine(r, { chainValid: true, signed: false }));
    expect(line).toMatchObject({ ...r, chainValid: true, signed: false });
    const { chainValid: _c, signed: _s, ...asStored } = line;
    const { hash, ...rest } = asStored;
    expect(hashRecord(rest)).toBe(hash);
  });
});

describe('redaction of secret-looking detail fields', () => {
  it('drops material/plaintext/pin/secret fields at any depth, in every format, and says so', () => {
    const r = record({
      details: {
        keyMaterial: 'LEAK-1',
        nested: { plaintext: 'LEAK-2', list: [{ pin_source: 'LEAK-3', ok: 1 }], clientSecret: 'LEAK-4' },
        'private-key': 'LEAK-5',
        spinner: 'kept',
        primary: 'v2',
      },
    });
    const json = toJsonLine(r, { chainValid: true });
    expect(json).not.toContain('LEAK');
    const parsed = JSON.parse(json);
    expect(parsed.details).toEqual({ nested: { list: [{ ok: 1 }] }, spinner: 'kept', primary: 'v2' });
    // Names of what was dropped are listed; values never are.
    expect(parsed.redacted).toEqual([
      'keyMaterial',
      'nested.plaintext',
      'nested.list[0].pin_source',
      'nested.clientSecret',
      'private-key',
    ]);
    const ocsf = toOcsf(r, { productVersion: '1' });
    expect(JSON.stringify(ocsf)).not.toContain('LEAK');
    expect((ocsf.unmapped as { details: unknown }).details).toEqual(parsed.details);
    const cef = toCef(r, { productVersion: '1' });
    expect(cef).not.toContain('LEAK');
    expect(cef).toContain('spinner');
  });

  it('matches whole words, not substrings', () => {
    for (const n of [
      'pin',
      'PIN',
      'hsmPin',
      'userPIN',
      'secret_ref',
      'PlainText',
      'key.material',
      'privateKey',
    ])
      expect(isSensitiveName(n), n).toBe(true);
    for (const n of ['spinner', 'opinion', 'pinned', 'materials', 'secretary', 'primary', 'version'])
      expect(isSensitiveName(n), n).toBe(false);
    expect(redactDetails({ a: { b: 1 } })).toEqual({ value: { a: { b: 1 } }, removed: [] });
    const hostile = JSON.parse('{"__proto__":{"secret":"LEAK","x":1}}');
    const { value } = redactDetails(hostile);
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(JSON.stringify(value)).toBe('{"__proto__":{"x":1}}');
  });
});

describe('ChainTracker', () => {
  it('stays valid along a good chain and turns invalid from the first bad record on', () => {
    const r1 = record({ seq: 1 });
    const r2 = record({ seq: 2 }, r1.hash);
    const r3 = record({ seq: 3 }, r2.hash);
    const good = new ChainTracker();
    expect([r1, r2, r3].map((r) => good.push(r))).toEqual([true, true, true]);
    const t = new ChainTracker();
    expect([r1, { ...r2, actor: 'mallory' }, r3].map((r) => t.push(r))).toEqual([true, false, false]);
    expect(t.firstBad).toMatchObject({ seq: 2, reason: expect.stringContaining('modified') });
    const gap = new ChainTracker();
    expect([r1, r3].map((r) => gap.push(r))).toEqual([true, false]);
    expect(gap.firstBad?.reason).toContain('missing');
  });
});
