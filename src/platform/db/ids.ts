import { randomBytes } from 'node:crypto';

/**
 * A maker of UUID version 7 ids (RFC 9562): 48 bits of Unix milliseconds, then a 12-bit counter,
 * then random bits. The ids one maker makes sort in the order they were made, even within one
 * millisecond (the counter; past 4096 in one millisecond, the timestamp is moved on by one) and
 * when the clock steps back (the last millisecond is kept), so rows keyed by (time, id) at
 * millisecond precision keep the order they were written in.
 *
 * The application uses the one {@link uuidv7}; a maker of its own starts with no history, so what
 * it is given (a test's fixed clock) does not move the application's ids on.
 */
export function uuidv7Maker(): (now?: number) => string {
  let lastMs = 0;
  let counter = 0;
  return (now = Date.now()) => {
    if (now > lastMs) {
      lastMs = now;
      counter = 0;
    } else if (++counter > 0xfff) {
      lastMs++;
      counter = 0;
    }
    const bytes = randomBytes(16);
    bytes.writeUIntBE(lastMs, 0, 6);
    bytes[6] = 0x70 | (counter >> 8);
    bytes[7] = counter & 0xff;
    bytes[8] = 0x80 | ((bytes[8] ?? 0) & 0x3f);
    const hex = bytes.toString('hex');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  };
}

/**
 * A UUID version 7 of this process's one maker ({@link uuidv7Maker}).
 *
 * @example
 * ```ts
 * const id = uuidv7(); // '01938f4e-9c2a-7000-8a3b-…'
 * ```
 */
export const uuidv7: (now?: number) => string = uuidv7Maker();
