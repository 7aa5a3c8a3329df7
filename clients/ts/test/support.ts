// Shared by the test files (not a test file itself: `node --test` runs *.test.js only).
import assert from "node:assert/strict";

/** The error a call fails with (the test fails if it succeeds). */
export async function failure(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (caught) {
    return caught;
  }
  assert.fail("the call succeeded");
}
