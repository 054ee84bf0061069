import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32c, int64Value } from '../../../shared/providers/gcp/crc32c.js';
import {
  GCP_VERSION_PRICES,
  gcpMonthlySavingPerRetiredVersion,
  gcpMonthlyVersionCost,
  gcpVersionBills,
} from '../../../shared/providers/gcp/pricing.js';

describe('crc32c', () => {
  it('matches the published check value and known vectors', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    // RFC 3720 (iSCSI) B.4 test patterns.
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
  });

  it('continues a checksum across chunks', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(200), (data, cut) => {
        const at = Math.min(cut, data.length);
        expect(crc32c(data.subarray(at), crc32c(data.subarray(0, at)))).toBe(crc32c(data));
      }),
    );
  });

  it('changes when any single bit changes', () => {
    const data = randomBytes(64);
    const base = crc32c(data);
    for (let i = 0; i < data.length * 8; i += 7) {
      const copy = Buffer.from(data);
      copy[i >> 3]! ^= 1 << (i & 7);
      expect(crc32c(copy)).not.toBe(base);
    }
  });

  it('reads Int64Value fields in every shape the client library produces', () => {
    expect(int64Value(null)).toBeUndefined();
    expect(int64Value({ value: null })).toBeUndefined();
    expect(int64Value({ value: '4294967295' })).toBe(4294967295);
    expect(int64Value({ value: 7 })).toBe(7);
    expect(int64Value({ value: { toNumber: () => 9 } })).toBe(9);
    expect(int64Value('12')).toBe(12);
  });
});

describe('gcpMonthlyVersionCost', () => {
  it('prices each active version by protection level and algorithm', () => {
    expect(gcpMonthlyVersionCost('software', 'AES_256', 1)).toBe(0.06);
    expect(gcpMonthlyVersionCost('software', 'AES_256', 3)).toBe(0.18);
    expect(gcpMonthlyVersionCost('hsm', 'AES_256', 1)).toBe(1);
    expect(gcpMonthlyVersionCost('hsm', 'RSA_2048', 4)).toBe(4);
    expect(gcpMonthlyVersionCost('hsm', 'RSA_3072', 1)).toBe(2.5);
    expect(gcpMonthlyVersionCost('hsm', 'EC_P256', 2)).toBe(5);
    expect(gcpMonthlyVersionCost('external', 'AES_256', 2)).toBe(6);
    expect(gcpMonthlyVersionCost('software', 'AES_256', 0)).toBe(0);
  });

  it('drops advanced HSM versions beyond the first 2,000 to $1.00', () => {
    expect(gcpMonthlyVersionCost('hsm', 'EC_P384', 2000)).toBe(5000);
    expect(gcpMonthlyVersionCost('hsm', 'EC_P384', 2001)).toBe(5001);
    expect(gcpMonthlyVersionCost('hsm', 'RSA_4096', 2500)).toBe(5500);
  });

  it('shows why retiring versions matters: a 30-day-rotated HSM key after a year', () => {
    // 1 initial version + 12 rotations, none destroyed.
    expect(gcpMonthlyVersionCost('hsm', 'AES_256', 13)).toBe(13);
    expect(gcpMonthlySavingPerRetiredVersion('hsm', 'AES_256')).toBe(GCP_VERSION_PRICES.hsmStandard);
    expect(gcpMonthlySavingPerRetiredVersion('software', 'AES_256')).toBe(GCP_VERSION_PRICES.software);
  });

  it('bills every state except DESTROYED', () => {
    expect(gcpVersionBills('enabled')).toBe(true);
    expect(gcpVersionBills('disabled')).toBe(true);
    expect(gcpVersionBills('destroy_scheduled')).toBe(true);
    expect(gcpVersionBills('destroyed')).toBe(false);
  });

  it('refuses a count that is not a non-negative integer', () => {
    expect(() => gcpMonthlyVersionCost('software', 'AES_256', -1)).toThrow(RangeError);
    expect(() => gcpMonthlyVersionCost('software', 'AES_256', 1.5)).toThrow(RangeError);
  });
});
