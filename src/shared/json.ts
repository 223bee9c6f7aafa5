// Postgres refuses two things JavaScript strings may hold: the NUL character (in text and in
// jsonb) and, in jsonb, unpaired UTF-16 surrogates. Whatever comes from outside (a message, a
// handler's output, a machine's context) is checked before it reaches a statement, so that it
// fails on its own instead of failing the batch it would have been written with.

/** In JSON.stringify's output, which escapes exactly these (paired surrogates stay raw). */
const UNSTORABLE_ESCAPE = /(?<!\\)(?:\\\\)*\\u(0000|d[89a-f][0-9a-f]{2})/i;

/**
 * What in `json` (JSON.stringify output) Postgres cannot store, in words, or undefined when
 * nothing is. An escaped backslash followed by "u0000" is text, not a NUL.
 */
export function unstorableInJson(json: string): string | undefined {
  // includes() first: the look-behind test runs only on the rare text with an escape.
  if (!json.includes('\\u')) return undefined;
  const found = UNSTORABLE_ESCAPE.exec(json);
  if (!found) return undefined;
  return found[1] === '0000'
    ? 'a NUL character (\\u0000)'
    : `an unpaired UTF-16 surrogate (\\u${found[1]!.toLowerCase()})`;
}

/**
 * The value `produce` gives, as JSON text Postgres can store, or what is wrong with it:
 * `notJson` (producing or serialising it threw: a BigInt, a cycle) or `unstorable` (a NUL or
 * an unpaired surrogate, in words).
 */
export function storableJson(
  produce: () => unknown,
): { text: string } | { notJson: Error } | { unstorable: string } {
  let text: string;
  try {
    text = JSON.stringify(produce());
  } catch (error) {
    return { notJson: error as Error };
  }
  const unstorable = unstorableInJson(text);
  return unstorable ? { unstorable } : { text };
}

/** Whether a string holds a NUL or an unpaired surrogate. */
export function hasUnstorableChars(text: string): boolean {
  return text.includes('\u0000') || !text.isWellFormed();
}

/** The string with each NUL or unpaired surrogate replaced by U+FFFD, for keeping it on record. */
export function storableText(text: string): string {
  return text.toWellFormed().replaceAll('\u0000', '\ufffd');
}
