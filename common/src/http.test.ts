/** Transport failures in words (pure). */
import { describe, expect, it } from 'vitest';
import { transportText } from './http.js';

describe('transportText', () => {
  it("says which of got's limits passed", () => {
    expect(transportText(new Error("Timeout awaiting 'request' for 2000ms"))).toBe('no complete answer within 2 s (whole-request deadline)');
    expect(transportText(new Error("Timeout awaiting 'socket' for 90000ms"))).toBe('nothing received for 90 s (stall timeout)');
    expect(transportText(new Error("Timeout awaiting 'connect' for 500ms"))).toBe('could not connect within 0.5 s');
    expect(transportText(new Error("Timeout awaiting 'response' for 1000ms"))).toBe('timed out after 1 s (response)');
  });
  it('keeps any other message', () => {
    expect(transportText(new Error('connect ECONNREFUSED 127.0.0.1:1'))).toBe('connect ECONNREFUSED 127.0.0.1:1');
  });
});
