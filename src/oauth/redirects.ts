/**
 * Whether `redirectTo` may receive a callback's code: an absolute http(s) URL whose origin is
 * exactly one of `origins` (scheme, host and port), with no credentials in it. Relative and
 * scheme-relative URLs (`//evil.example`), other schemes (`javascript:`), userinfo tricks
 * (`https://app.example.com@evil.example`) and backslashes browsers read as slashes are refused.
 *
 * @example
 * ```ts
 * isAllowedRedirect('https://app.example.com/signed-in', ['https://app.example.com']); // true
 * isAllowedRedirect('https://app.example.com.evil.example/', ['https://app.example.com']); // false
 * ```
 */
export function isAllowedRedirect(redirectTo: string, origins: readonly string[]): boolean {
  if (redirectTo.length > 2048 || /[\\\s]/.test(redirectTo) || hasControlCharacter(redirectTo)) return false;
  if (!/^https?:\/\//i.test(redirectTo)) return false;
  let url: URL;
  try {
    url = new URL(redirectTo);
  } catch {
    return false;
  }
  if (url.username !== '' || url.password !== '') return false;
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return false;
  return origins.includes(url.origin);
}

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}
