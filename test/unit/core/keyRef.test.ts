import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { ValidationError } from '../../../shared/core/errors.js';

describe('parseKeyRef', () => {
  it.each([
    ['aws-kms://arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab', 'aws-kms'],
    ['aws-kms://arn:aws:kms:eu-west-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab', 'aws-kms'],
    ['aws-kms://arn:aws-us-gov:kms:us-gov-west-1:123456789012:alias/orders', 'aws-kms'],
    ['gcp-kms://projects/my-project/locations/europe-west1/keyRings/prod/cryptoKeys/orders', 'gcp-kms'],
    ['azure-kv://prod-vault.vault.azure.net/keys/orders-kek', 'azure-kv'],
    ['azure-kv://prod-hsm.managedhsm.azure.net/keys/orders-kek', 'azure-kv'],
    ['pkcs11:token=prod;object=orders-kek', 'pkcs11'],
    [
      'pkcs11:token=My%20Token;object=orders;type=secret-key?module-path=/usr/lib/softhsm/libsofthsm2.so',
      'pkcs11',
    ],
    ['local://payments-kek', 'local'],
  ])('accepts %s', (input, type) => {
    const r = parseKeyRef(input);
    expect(r.type).toBe(type);
    expect(parseKeyRef(r.uri).uri).toBe(r.uri);
  });

  it('decodes RFC 7512 percent-encoding and re-encodes canonically', () => {
    const r = parseKeyRef('pkcs11:object=a%20b;token=t%2Fx');
    expect(r.type === 'pkcs11' && r.attributes).toEqual({ token: 't/x', object: 'a b' });
    expect(r.uri).toBe('pkcs11:token=t%2Fx;object=a%20b');
  });

  it('normalises the Azure host to lower case and accepts a trailing slash', () => {
    expect(parseKeyRef('azure-kv://Prod-Vault.vault.azure.net/keys/k/').uri).toBe(
      'azure-kv://prod-vault.vault.azure.net/keys/k',
    );
  });

  it.each([
    ['', 'empty'],
    ['orders', 'expected <scheme>'],
    ['s3://bucket/key', 'unknown scheme'],
    ['aws-kms://arn:aws:kms:us-east-1:12345:key/abc', 'aws-kms://arn'],
    ['aws-kms://arn:aws:kms:us-east-1:123456789012:alias/aws/ebs', 'AWS managed'],
    ['gcp-kms://projects/p/locations/l/keyRings/r', 'gcp-kms://projects'],
    [
      'gcp-kms://projects/my-project/locations/eu/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1',
      'gcp-kms://projects',
    ],
    ['azure-kv://evil.example.com/keys/k', 'not a Key Vault'],
    ['azure-kv://vault1.vault.azure.net/keys/k/0123456789abcdef', 'names the key, not a version'],
    ['pkcs11:object=k', 'token attribute is required'],
    ['pkcs11:token=t', 'object or id attribute'],
    ['pkcs11:token=t;object=k;token=u', 'appears twice'],
    ['pkcs11:token=t;object=k;colour=red', 'unknown path attribute'],
    ['pkcs11:token=t;object=k?pin-value=1234', 'pin-value is refused'],
    ['pkcs11:token=t;object=a b', 'whitespace'],
    ['pkcs11:token=t;object=%zz', 'bad %XX escape'],
    ['local://Upper', 'local key names'],
    ['local://', 'local key names'],
  ])('rejects %j with a message naming the problem', (input, fragment) => {
    expect(() => parseKeyRef(input)).toThrow(ValidationError);
    expect(() => parseKeyRef(input)).toThrow(fragment);
  });

  it('never throws anything but ValidationError, and canonical forms are fixed points', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string().map((s) => `pkcs11:${s}`),
          fc.string().map((s) => `local://${s}`),
          fc.string().map((s) => `azure-kv://${s}`),
        ),
        (s) => {
          try {
            const r = parseKeyRef(s);
            expect(parseKeyRef(r.uri).uri).toBe(r.uri);
          } catch (e) {
            expect(e).toBeInstanceOf(ValidationError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('round-trips any pkcs11 attribute values through percent-encoding', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), (token, object) => {
        const enc = (s: string) =>
          encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16)}`);
        const r = parseKeyRef(`pkcs11:token=${enc(token)};object=${enc(object)}`);
        expect(r.type === 'pkcs11' && r.attributes).toEqual({ token, object });
      }),
    );
  });
});
