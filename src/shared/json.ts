/**
 * Whether JSON text holds an escaped NUL character (\u0000), which Postgres's jsonb refuses;
 * an escaped backslash followed by "u0000" is not one.
 */
export function hasEscapedNul(json: string): boolean {
  // includes() first: the look-behind test runs only on the rare text that might have one.
  return json.includes('\\u0000') && /(?<!\\)(?:\\\\)*\\u0000/.test(json);
}
