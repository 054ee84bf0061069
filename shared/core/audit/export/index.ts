export { ACTION_MEANINGS, type ActionMeaning, meaningOf } from './actions.js';
export { CEF_MAX_STRING, type CefOptions, escapeCefHeader, escapeCefValue, toCef } from './cef.js';
export { ChainTracker } from './chainTracker.js';
export { type ExportContext, toJsonLine } from './jsonl.js';
export { OCSF_CLASSES, OCSF_VERSION, type OcsfEvent, type OcsfOptions, toOcsf } from './ocsf.js';
export { isSensitiveName, redactDetails } from './redact.js';
