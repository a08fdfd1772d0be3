import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { RequestTimeoutError, UnsupportedMediaTypeError, ValidationError } from '../errors/index.ts';

export interface BodyParsingOptions {
  /** Routes under these prefixes get `smallBodyLimitBytes` (their bodies are under 2 KB). */
  readonly smallBodyPrefixes: readonly string[];
  readonly smallBodyLimitBytes: number;
  /** A body must have fully arrived this long after its headers, or the request gets 408. */
  readonly bodyTimeoutMs: number;
}

/** Arrays and objects nested deeper than this are refused before JSON.parse spends anything on them. */
export const MAX_JSON_DEPTH = 32;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The one JSON body parser, strict where the default is lenient:
 *
 * - `application/json` only (text/plain and every other media type: 415), and only UTF-8
 *   (`charset=latin1`, `charset=utf-7`: 415);
 * - bytes that are not valid UTF-8 are a 400, never replaced by U+FFFD; so are strings with lone
 *   surrogates (`"\ud800"`), which would otherwise be compared as something they are not;
 * - nesting is bounded by a cheap scan before parsing (`[[[[…` of 1 MB costs no parse);
 * - a `__proto__` key is reported as such (400 naming it), not as "invalid JSON";
 * - an object with the same property name twice is a 400 (JSON.parse would keep the last one, and
 *   a proxy or another parser in front of us may have read the first).
 *
 * It also bounds bodies on the small routes (`/auth`: 16 KiB) and in time (a body trickling in a
 * byte at a time gets 408 once `bodyTimeoutMs` has passed since the request started).
 */
export default fp<BodyParsingOptions>(
  async (app, opts) => {
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
      try {
        done(null, parseJsonBody(request, body as Buffer));
      } catch (error) {
        done(error as Error, undefined);
      }
    });
    // Anything else that carries a body: 415 in the error shape (Fastify's own answer has no request id path).
    app.addContentTypeParser('*', (_request, _payload, done) => {
      done(new UnsupportedMediaTypeError(), undefined);
    });

    app.addHook('onRoute', (route) => {
      if (opts.smallBodyPrefixes.some((prefix) => route.url.startsWith(prefix))) {
        route.bodyLimit = Math.min(route.bodyLimit ?? opts.smallBodyLimitBytes, opts.smallBodyLimitBytes);
      }
    });

    app.addHook('preParsing', async (request, reply, payload) => {
      if (!hasBody(request)) return payload;
      const timer = setTimeout(() => {
        if (request.raw.complete || payload.listenerCount('error') === 0) return;
        // Closing after the answer: the rest of a trickling body is not worth reading.
        reply.header('connection', 'close');
        payload.emit('error', new RequestTimeoutError());
      }, opts.bodyTimeoutMs);
      timer.unref();
      const clear = () => {
        clearTimeout(timer);
      };
      payload.once('end', clear);
      reply.raw.once('close', clear);
      return payload;
    });
  },
  { name: 'body-parsing' },
);

/**
 * Parses a JSON body under the rules above.
 *
 * @throws {UnsupportedMediaTypeError} for a charset other than UTF-8.
 * @throws {ValidationError} for invalid UTF-8, too deep nesting, invalid JSON, lone surrogates, `__proto__`,
 * a duplicate property name.
 */
export function parseJsonBody(request: FastifyRequest, body: Buffer): unknown {
  const charset = charsetOf(request.headers['content-type']);
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    throw new UnsupportedMediaTypeError(`Unsupported charset "${charset}"; send UTF-8 JSON`);
  }
  if (body.length === 0) {
    throw new ValidationError('Body must not be empty when content-type is application/json');
  }
  let text: string;
  try {
    text = utf8.decode(body);
  } catch (error) {
    throw new ValidationError('Body is not valid UTF-8', { cause: error });
  }
  const members = scanStructure(text);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ValidationError('Body is not valid JSON', { cause: error });
  }
  // Every member of every object in the text has its colon; fewer properties parsed than colons
  // means a name came twice. Counting costs nothing extra on a normal body: only a body that has
  // a duplicate pays for finding out which name it was.
  if (assertClean(value, '') !== members) throw duplicateKey(text);
  return value;
}

function hasBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function charsetOf(contentType: string | undefined): string | undefined {
  const match = /;\s*charset\s*=\s*"?([^";\s]*)"?/i.exec(contentType ?? '');
  return match?.[1]?.toLowerCase();
}

/**
 * Counts brackets outside strings (linear, no allocation, stops at the first level too deep) and
 * returns the number of colons outside strings: in valid JSON, one per object member.
 */
function scanStructure(text: string): number {
  let depth = 0;
  let colons = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_JSON_DEPTH) {
        throw new ValidationError(`Body is nested more than ${MAX_JSON_DEPTH} levels deep`);
      }
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    } else if (c === 0x3a) {
      colons++;
    }
  }
  return colons;
}

/**
 * The error for a body with a repeated property name, naming the first one repeated: a second,
 * slower pass that runs only once the count showed there is one.
 */
function duplicateKey(text: string): ValidationError {
  const open: (Set<string> | undefined)[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b) open.push(new Set());
    else if (c === 0x5b) open.push(undefined);
    else if (c === 0x7d || c === 0x5d) open.pop();
    else if (c === 0x22) {
      let end = i + 1;
      while (end < text.length && text.charCodeAt(end) !== 0x22) end += text.charCodeAt(end) === 0x5c ? 2 : 1;
      let next = end + 1;
      while (/[ \t\n\r]/.test(text.charAt(next))) next++;
      const names = open.at(-1);
      if (text.charCodeAt(next) === 0x3a && names !== undefined) {
        const name = JSON.parse(text.slice(i, end + 1)) as string;
        if (names.has(name)) return new ValidationError(`Body has the property "${name}" more than once`);
        names.add(name);
      }
      i = end;
    }
  }
  return new ValidationError('Body has a property name more than once');
}

/**
 * Lone surrogates in any string or key, and prototype keys, anywhere in the parsed value.
 *
 * @returns the number of object properties in the value, at every depth.
 */
function assertClean(value: unknown, path: string): number {
  if (typeof value === 'string') {
    if (!value.isWellFormed()) {
      // `path` is a JSON pointer ('' for the body itself); a pointer to an empty key names no field.
      const field = path.slice(1);
      throw new ValidationError(
        `${field === '' ? 'A string in the body' : field} is not well-formed Unicode (lone surrogate)`,
        field === '' ? {} : { field },
      );
    }
    return 0;
  }
  if (typeof value !== 'object' || value === null) return 0;
  let properties = 0;
  if (Array.isArray(value)) {
    value.forEach((item, index) => {
      properties += assertClean(item, `${path}/${index}`);
    });
    return properties;
  }
  for (const [key, item] of Object.entries(value)) {
    properties++;
    const itemPath = `${path}/${key}`;
    if (key === '__proto__' || (key === 'constructor' && typeof item === 'object' && item !== null)) {
      throw new ValidationError(`Body must not contain a "${key}" property`, { field: itemPath.slice(1) });
    }
    if (!key.isWellFormed()) throw new ValidationError('A property name is not well-formed Unicode (lone surrogate)');
    properties += assertClean(item, itemPath);
  }
  return properties;
}
