import { importAwsCur } from './awsCur.js';
import { importAzureAudit } from './azureAudit.js';
import { importAzureCost } from './azureCost.js';
import { importCloudTrail } from './cloudTrail.js';
import type { ImportResult } from './common.js';
import { importGcpAudit } from './gcpAudit.js';
import { importGcpBilling } from './gcpBilling.js';

export { type ImportResult, readText } from './common.js';
export {
  importAwsCur,
  importAzureAudit,
  importAzureCost,
  importCloudTrail,
  importGcpAudit,
  importGcpBilling,
};

/** Importers by format name (for a CLI flag such as `--usage-format aws-cur`). */
export const IMPORTERS: Record<string, (text: string, source?: string) => ImportResult> = {
  'aws-cur': importAwsCur,
  cloudtrail: importCloudTrail,
  'gcp-billing': importGcpBilling,
  'gcp-audit': importGcpAudit,
  'azure-cost': importAzureCost,
  'azure-audit': importAzureAudit,
};
