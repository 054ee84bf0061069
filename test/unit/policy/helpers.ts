import { PolicyError, type PolicyIssue } from '../../../shared/core/errors.js';
import { loadConfig } from '../../../shared/core/policy/load.js';

/** Joins lines into a YAML document (keeps line numbers in tests easy to read). */
export const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

/** The issues a load reports; fails the test if the text loads. */
export function issuesOf(text: string, file = 'rekey.yaml'): PolicyIssue[] {
  try {
    loadConfig(text, file);
  } catch (e) {
    if (e instanceof PolicyError) return e.issues;
    throw e;
  }
  throw new Error('expected a PolicyError, but the config loaded');
}

/** A minimal valid config; tests append to or replace its lines. */
export const BASE = [
  'version: 1',
  'providers:',
  '  aws-prod: { type: aws-kms, regions: [us-east-1] }',
  '  hsm: { type: pkcs11, module: /usr/lib/softhsm/libsofthsm2.so, token: prod, pin: env:HSM_PIN }',
  'stores:',
  '  orders: { type: postgres, url: env:ORDERS_DB }',
  'policies:',
];
