export {
  type ApprovalEvent,
  type AuditIntegritySummary,
  buildComplianceReport,
  type ComplianceInput,
  type ComplianceReport,
  type KeyReport,
  type PolicyReport,
  type ReportPeriod,
  type RotationEvent,
  toJson,
  VIOLATION_KINDS,
  type Violation,
  type ViolationKind,
} from './compliance.js';
export { type ComplianceRunOptions, complianceReport, readAuditPeriod } from './gather.js';
export { escapeHtml, toHtml } from './html.js';
export { type ComplianceReference, REFERENCES } from './references.js';
