import { existsSync } from 'node:fs';
import pkcs11js from 'pkcs11js';
import { ConfigError, NotFoundError, ProviderError } from '../../core/errors.js';
import { ckrName, isCkr, PROVIDER, translate } from './errors.js';

export type Pkcs11 = pkcs11js.PKCS11;
export type Handle = Buffer;
export { pkcs11js };

/**
 * One loaded module per path per process. PKCS#11 allows a single C_Initialize per process
 * and shares the login state of a token between every session of the process, so providers
 * on the same module share the handle and the last one out finalizes.
 */
interface LoadedModule {
  p: Pkcs11;
  refs: number;
  /** False when someone else in this process had already initialized the library. */
  ownsInit: boolean;
  /** Providers per slot (hex id): the last one out logs out. */
  slotRefs: Map<string, number>;
}
const modules = new Map<string, LoadedModule>();

function acquireModule(path: string): LoadedModule {
  const known = modules.get(path);
  if (known) {
    known.refs += 1;
    return known;
  }
  if (!existsSync(path)) throw new ConfigError(`PKCS#11 module ${path} does not exist`);
  const p = new pkcs11js.PKCS11();
  try {
    p.load(path);
  } catch (e) {
    throw new ConfigError(`PKCS#11 module ${path} could not be loaded: ${(e as Error).message}`, {
      cause: e,
    });
  }
  let ownsInit = true;
  try {
    // OS locking: several sessions (and threads inside the module) may be in use at once.
    p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (isCkr(e, 'CKR_CRYPTOKI_ALREADY_INITIALIZED')) ownsInit = false;
    else {
      safe(() => p.close());
      throw new ConfigError(
        `PKCS#11 module ${path} failed to initialize: ${ckrName(e) ?? (e as Error).message}`,
        {
          cause: e,
        },
      );
    }
  }
  const m: LoadedModule = { p, refs: 1, ownsInit, slotRefs: new Map() };
  modules.set(path, m);
  return m;
}

function releaseModule(path: string, m: LoadedModule): void {
  m.refs -= 1;
  if (m.refs > 0) return;
  modules.delete(path);
  if (m.ownsInit) safe(() => m.p.C_Finalize());
  safe(() => m.p.close());
}

function safe(fn: () => void): void {
  try {
    fn();
  } catch {
    // Cleanup path: the original error (if any) is the one worth reporting.
  }
}

export interface TokenOptions {
  module: string;
  /** Token label (CKA token label, blank-padded to 32 characters on the token). */
  token: string;
  /** The user PIN. A copy is kept for re-login and zeroed on close. */
  pin: Buffer;
  /** Sessions kept open at most. */
  poolSize: number;
  /** Mechanisms the token must offer, checked before anything else is done. */
  mechanisms: { id: number; name: string }[];
}

// CKS_RO_USER_FUNCTIONS, CKS_RW_USER_FUNCTIONS (pkcs11js exports no CKS_* constants).
const USER_STATES = new Set([1, 3]);

/**
 * A logged-in token and a small pool of read/write sessions on it. Every call into the module
 * is synchronous (the fastest way through pkcs11js), so a session is held only for the length
 * of one synchronous block and the pool rarely grows past one; it exists for the async paths.
 */
export class TokenSession {
  readonly p: Pkcs11;
  readonly slot: Handle;
  readonly slotKey: string;
  readonly tokenInfo: pkcs11js.TokenInfo;
  private readonly idle: Handle[] = [];
  private readonly waiters: ((s: Handle) => void)[] = [];
  private openCount = 0;
  private closed = false;
  /**
   * Bumped on every login and every discarded session. Session objects kept across calls
   * (the provider's key cache) are trusted only while the epoch they were made in lasts:
   * a logout destroys private session objects, a closed session destroys its own.
   */
  private epochValue = 0;

  private constructor(
    private readonly opts: TokenOptions,
    private readonly mod: LoadedModule,
    slot: Handle,
    info: pkcs11js.TokenInfo,
  ) {
    this.p = mod.p;
    this.slot = slot;
    this.slotKey = slot.toString('hex');
    this.tokenInfo = info;
  }

  static open(opts: TokenOptions): TokenSession {
    const mod = acquireModule(opts.module);
    let ts: TokenSession | undefined;
    try {
      const { slot, info } = findToken(mod.p, opts.module, opts.token);
      checkMechanisms(mod.p, slot, opts);
      ts = new TokenSession(opts, mod, slot, info);
      mod.slotRefs.set(ts.slotKey, (mod.slotRefs.get(ts.slotKey) ?? 0) + 1);
      // Log in once now, so a wrong PIN is reported at open rather than on first use.
      const s = ts.openSession();
      ts.idle.push(s);
      return ts;
    } catch (e) {
      if (ts) ts.closeSync();
      else releaseModule(opts.module, mod);
      throw translate(e, `opening token "${opts.token}"`);
    }
  }

  /**
   * Runs `fn` on a logged-in session. A session that lost its login (someone called C_Logout,
   * the token was reset) is logged in again and `fn` re-run once; so is a session the module
   * no longer knows. `fn` must be safe to re-run: it is, when it is synchronous and cleans up
   * its own session objects.
   */
  async run<T>(fn: (s: Handle) => T): Promise<T> {
    const s = await this.acquire();
    let session: Handle | null = s;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return fn(session);
        } catch (e) {
          if (attempt > 0) throw e;
          if (isCkr(e, 'CKR_USER_NOT_LOGGED_IN') || (e instanceof NotFoundError && !this.loggedIn(session))) {
            this.login(session);
            continue;
          }
          if (isCkr(e, 'CKR_SESSION_HANDLE_INVALID', 'CKR_SESSION_CLOSED')) {
            this.discard(session);
            session = null;
            session = this.openSession();
            continue;
          }
          throw e;
        }
      }
    } finally {
      if (session) this.release(session);
    }
  }

  get epoch(): number {
    return this.epochValue;
  }

  private loggedIn(s: Handle): boolean {
    try {
      return USER_STATES.has(this.p.C_GetSessionInfo(s).state);
    } catch {
      return false;
    }
  }

  private login(s: Handle): void {
    this.epochValue += 1;
    try {
      // The PIN becomes a JS string only for this call; pkcs11js takes nothing else.
      this.p.C_Login(s, pkcs11js.CKU_USER, this.opts.pin.toString('utf8'));
    } catch (e) {
      if (isCkr(e, 'CKR_USER_ALREADY_LOGGED_IN')) return;
      throw translate(e, `login to token "${this.opts.token}"`);
    }
  }

  private openSession(): Handle {
    const s = this.p.C_OpenSession(this.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    this.openCount += 1;
    if (!this.loggedIn(s)) {
      try {
        this.login(s);
      } catch (e) {
        this.discard(s);
        throw e;
      }
    }
    return s;
  }

  private discard(s: Handle): void {
    this.epochValue += 1;
    this.openCount -= 1;
    safe(() => this.p.C_CloseSession(s));
  }

  private async acquire(): Promise<Handle> {
    if (this.closed)
      throw new ProviderError(PROVIDER, 'CLOSED', `token "${this.opts.token}": provider is closed`);
    const s = this.idle.pop();
    if (s) return s;
    if (this.openCount < this.opts.poolSize) return this.openSession();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private release(s: Handle): void {
    if (this.closed) {
      this.discard(s);
      return;
    }
    const w = this.waiters.shift();
    if (w) w(s);
    else this.idle.push(s);
  }

  /** Logs out (if last on this token), closes the sessions and finalizes (if last on the module). */
  closeSync(): void {
    if (this.closed) return;
    this.closed = true;
    const left = (this.mod.slotRefs.get(this.slotKey) ?? 1) - 1;
    if (left <= 0) {
      this.mod.slotRefs.delete(this.slotKey);
      const s = this.idle[0];
      if (s) safe(() => this.p.C_Logout(s));
    } else this.mod.slotRefs.set(this.slotKey, left);
    for (const s of this.idle.splice(0)) this.discard(s);
    releaseModule(this.opts.module, this.mod);
    this.opts.pin.fill(0);
  }
}

function findToken(p: Pkcs11, module: string, label: string): { slot: Handle; info: pkcs11js.TokenInfo } {
  const seen: string[] = [];
  for (const slot of p.C_GetSlotList(true)) {
    const info = p.C_GetTokenInfo(slot);
    const l = info.label.replace(/[ \0]+$/, '');
    if (l === label) return { slot, info };
    if (l.length > 0) seen.push(`"${l}"`);
  }
  throw new ConfigError(
    `no token labelled "${label}" in PKCS#11 module ${module} (tokens present: ${seen.join(', ') || 'none'})`,
  );
}

function checkMechanisms(p: Pkcs11, slot: Handle, opts: TokenOptions): void {
  const offered = new Set(p.C_GetMechanismList(slot));
  const missing = opts.mechanisms.filter((m) => !offered.has(m.id)).map((m) => m.name);
  if (missing.length > 0) {
    throw new ProviderError(
      PROVIDER,
      'CKR_MECHANISM_INVALID',
      `token "${opts.token}" does not support ${missing.join(', ')}, which rekey needs`,
    );
  }
}

/** Finds every object matching `template` (bounded search, always finalized). */
export function findAll(p: Pkcs11, s: Handle, template: pkcs11js.Template): Handle[] {
  p.C_FindObjectsInit(s, template);
  try {
    const out: Handle[] = [];
    for (;;) {
      const batch = p.C_FindObjects(s, 256);
      out.push(...batch);
      if (batch.length < 256) return out;
    }
  } finally {
    p.C_FindObjectsFinal(s);
  }
}

/** Destroys a session object; used in finally blocks, so it never throws. */
export function destroyQuietly(p: Pkcs11, s: Handle, h: Handle | null | undefined): void {
  if (h) safe(() => p.C_DestroyObject(s, h));
}
