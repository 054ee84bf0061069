/** rekey's version, as published (kept in step with package.json by a test). */
export const REKEY_VERSION = '0.1.0';
