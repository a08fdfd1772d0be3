import { describe, expect, it } from 'vitest';
import { uuidv7 } from '../../src/services/ids.ts';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('uuidv7', () => {
  it('makes RFC 9562 version 7 ids carrying the millisecond they were made in', () => {
    const id = uuidv7(Date.UTC(2026, 11, 1));
    expect(id).toMatch(UUID_V7);
    expect(Number.parseInt(id.replaceAll('-', '').slice(0, 12), 16)).toBe(Date.UTC(2026, 11, 1));
  });

  it('sorts in the order ids were made, within one millisecond and when the clock steps back', () => {
    const at = Date.UTC(2027, 0, 1);
    const made = [...Array.from({ length: 5000 }, () => uuidv7(at)), uuidv7(at - 10), uuidv7(at + 5000)];
    for (const id of made) expect(id).toMatch(UUID_V7);
    expect([...made].sort()).toEqual(made);
    expect(new Set(made).size).toBe(made.length);
  });
});
