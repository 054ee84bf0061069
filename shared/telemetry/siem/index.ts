export {
  AUDIT_EXPORT_FORMATS,
  type AuditExportFormat,
  type AuditExportOptions,
  type AuditExportResult,
  exportAudit,
  exportAuditToFile,
  formatRecord,
} from './exportAudit.js';
export {
  HMAC_ALG,
  HmacChainSigner,
  hmacKeyId,
  hmacSignerFromSecrets,
  MIN_HMAC_KEY_BYTES,
} from './hmacSigner.js';
