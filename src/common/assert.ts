// Assertions state invariants (docs/style.md S14): a failed assertion is a bug in regiondb, never a
// user error. User errors are RegionDbError values (errors.ts) with stable codes.

export class AssertionError extends Error {
  override name = 'AssertionError';
}

/**
 * `message` is a string, or a function that builds it, called only when the assertion fails: on a
 * path run per write, entry or message, a template literal with values in it costs 100–300 ns on
 * every call even when the condition holds (docs/performance.md, round 7); `() => \`…\`` does not.
 */
export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new AssertionError(typeof message === 'string' ? message : message());
}

export function assertEq<T>(actual: T, expected: T, message: string): void {
  if (actual !== expected) {
    throw new AssertionError(`${message}: expected ${String(expected)}, got ${String(actual)}`);
  }
}

export function assertNever(value: never, message = 'unreachable'): never {
  throw new AssertionError(`${message}: ${JSON.stringify(value)}`);
}

export function assertInt(value: number, message: string): void {
  if (!Number.isSafeInteger(value)) throw new AssertionError(`${message}: not an integer: ${value}`);
}
