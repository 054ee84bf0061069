import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/**
 * A throwaway certificate authority and a server certificate for 127.0.0.1 and localhost,
 * made with the system's openssl in a temp dir. The Key Vault emulator serves HTTPS with it
 * (the Azure SDK insists on https), and clients trust the CA through their TLS options or
 * NODE_EXTRA_CA_CERTS.
 */
export interface TestCertificates {
  dir: string;
  caPath: string;
  certPath: string;
  keyPath: string;
  ca: string;
  cert: string;
  key: string;
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`openssl ${args[0]} failed (is openssl installed? apt-get install openssl): ${stderr}`);
  }
}

export function makeTestCertificates(dir?: string): TestCertificates {
  const where = dir ?? mkdtempSync(join(tmpdir(), 'rekey-azure-cert-'));
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    [
      'req',
      '-x509',
      ...ecKey,
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '7',
      '-subj',
      '/CN=rekey test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    where,
  );
  openssl(['req', ...ecKey, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], where);
  writeFileSync(
    join(where, 'server.ext'),
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '',
    ].join('\n'),
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'server.pem',
      '-days',
      '7',
      '-extfile',
      'server.ext',
    ],
    where,
  );
  const caPath = join(where, 'ca.pem');
  const certPath = join(where, 'server.pem');
  const keyPath = join(where, 'server.key');
  return {
    dir: where,
    caPath,
    certPath,
    keyPath,
    ca: readFileSync(caPath, 'utf8'),
    cert: readFileSync(certPath, 'utf8'),
    key: readFileSync(keyPath, 'utf8'),
    cleanup: () => rmSync(where, { recursive: true, force: true }),
  };
}

/**
 * NODE_EXTRA_CA_CERTS for a child process that must trust the test CA: the CA file added to
 * whatever the environment already names, never replacing it. Node reads one file, so when a
 * value is already set the two are concatenated into a new bundle in `dir`.
 */
export function extraCaCertsEnv(certs: TestCertificates, env = process.env): string {
  const existing = env.NODE_EXTRA_CA_CERTS;
  if (!existing) return certs.caPath;
  const parts = existing.split(delimiter).filter(Boolean);
  const bundle = join(certs.dir, 'extra-ca-bundle.pem');
  const pems = parts.map((p) => {
    try {
      return readFileSync(p, 'utf8');
    } catch {
      return '';
    }
  });
  writeFileSync(bundle, [...pems, certs.ca].filter(Boolean).join('\n'));
  return bundle;
}
