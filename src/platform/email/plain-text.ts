/** Making user-typed values safe in an email's text and HTML parts. */

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** `value` as HTML text: the five characters that could open markup or end an attribute, escaped. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (char) => HTML_ESCAPES[char] ?? char);
}

/** Names are at most 100 characters (credentials.ts); older rows are cut there too. */
const NAME_MAX = 100;
export const EMAIL_MAX = 254;

/**
 * A user-typed value as one plain line: control, format (bidi overrides, zero-width) and line or
 * paragraph separator characters become spaces, runs of white space one space, and the length is
 * capped. Input rules refuse most of these already; this holds for rows written before them.
 */
export function plainText(value: string, max = NAME_MAX): string {
  const line = value
    .replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, ' ')
    .replace(/\s+/gu, ' ')
    .trim();
  return Array.from(line).slice(0, max).join('');
}

/**
 * A name that cannot be read as a link: mail clients turn `https://…`, `www.…` and bare host names
 * into links even in plain text, so a name like "Support https://evil.example/reset" would put a
 * working fake link into our email. URL schemes are dropped and a dot between word characters
 * becomes U+2024 (one dot leader), which looks the same and links nothing.
 */
export function withoutLinks(name: string): string {
  return name.replace(/[a-z][a-z0-9+.-]*:\/\//giu, '').replace(/(?<=[\p{L}\p{N}])\.(?=[\p{L}\p{N}])/gu, '\u2024');
}
