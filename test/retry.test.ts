import { describe, expect, it } from 'vitest';
import { isLockTimeout, isRetryableDatabaseError } from '../src/db/index.ts';

// As node-pg reports them (code, routine and message from Postgres's error fields).
const lockTimeout = {
  code: '55P03',
  routine: 'ProcessInterrupts',
  message: 'annulation de la requête à cause du délai écoulé pour l’obtention des verrous',
};
const nowait = {
  code: '55P03',
  routine: 'heap_lock_tuple',
  message: 'could not obtain lock on row in relation "job"',
};

describe('which database errors a transaction runs again after', () => {
  it('does not retry a lock_timeout, whatever the language of the server’s messages', () => {
    expect(isLockTimeout(lockTimeout)).toBe(true);
    expect(isRetryableDatabaseError(lockTimeout)).toBe(false);
    expect(isLockTimeout({ code: '55P03', message: 'canceling statement due to lock timeout' })).toBe(true);
  });

  it('retries a NOWAIT that found the row taken, a deadlock and a lost connection', () => {
    expect(isLockTimeout(nowait)).toBe(false);
    expect(isRetryableDatabaseError(nowait)).toBe(true);
    expect(isRetryableDatabaseError({ code: '40P01' })).toBe(true);
    expect(isRetryableDatabaseError({ code: 'ECONNRESET' })).toBe(true);
    expect(isRetryableDatabaseError({ code: '23505' })).toBe(false);
  });
});
