import { describe, expect, it } from 'vitest';
import { uuidv7, uuidv7Maker } from '../../../src/platform/db/ids.ts';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const millisecondOf = (id: string) => Number.parseInt(id.replaceAll('-', '').slice(0, 12), 16);

describe('uuidv7', () => {
  it('makes RFC 9562 version 7 ids carrying the millisecond they were made in', () => {
    const id = uuidv7Maker()(Date.UTC(2026, 11, 1));
    expect(id).toMatch(UUID_V7);
    expect(millisecondOf(id)).toBe(Date.UTC(2026, 11, 1));
  });

  it('sorts in the order ids were made, within one millisecond and when the clock steps back', () => {
    const make = uuidv7Maker();
    const at = Date.UTC(2027, 0, 1);
    const made = [...Array.from({ length: 5000 }, () => make(at)), make(at - 10), make(at + 5000)];
    for (const id of made) expect(id).toMatch(UUID_V7);
    expect([...made].sort()).toEqual(made);
    expect(new Set(made).size).toBe(made.length);
  });

  it("keeps a maker's clock to itself: another maker's future ids do not move the application's on", () => {
    uuidv7Maker()(Date.UTC(2100, 0, 1));
    const before = Date.now();
    const id = uuidv7();
    expect(millisecondOf(id)).toBeGreaterThanOrEqual(before);
    expect(millisecondOf(id)).toBeLessThan(Date.UTC(2100, 0, 1));
  });
});
