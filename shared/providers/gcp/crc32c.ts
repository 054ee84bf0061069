/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum Cloud KMS uses for its
 * request and response integrity fields. Table-driven, one byte at a time: KMS payloads are
 * small (a DEK, a context), so slicing-by-8 would buy nothing measurable.
 */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C of `data`, as an unsigned 32-bit number. `seed` continues an earlier checksum. */
export function crc32c(data: Uint8Array, seed = 0): number {
  let c = ~seed >>> 0;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * The KMS integrity fields are google.protobuf.Int64Value: the client library hands them over
 * as a number, a string or a Long depending on options. Normalises to a number, or undefined
 * when the field is absent.
 */
export function int64Value(v: unknown): number | undefined {
  if (v === null || v === undefined) return undefined;
  const raw = typeof v === 'object' && 'value' in (v as object) ? (v as { value: unknown }).value : v;
  if (raw === null || raw === undefined) return undefined;
  if (typeof raw === 'number') return raw;
  if (typeof raw === 'string') return Number(raw);
  if (typeof raw === 'bigint') return Number(raw);
  if (typeof raw === 'object' && typeof (raw as { toNumber?: unknown }).toNumber === 'function') {
    return (raw as { toNumber(): number }).toNumber();
  }
  return Number.NaN;
}
