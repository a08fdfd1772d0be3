import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { clientErrorHandler, toAppError } from '../../src/platform/http/error-handler.ts';

/** The server side of a client connection: what the handler writes is kept, nothing is read. */
class CapturedSocket extends Duplex {
  written = '';
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    this.written += chunk.toString('utf8');
    callback();
  }
}

function clientError(code: string): Error & { code: string } {
  return Object.assign(new Error(code), { code });
}

function response(text: string): { statusLine: string; headers: Map<string, string>; body: unknown } {
  const [head = '', body = ''] = text.split('\r\n\r\n');
  const [statusLine = '', ...headerLines] = head.split('\r\n');
  const headers = new Map(
    headerLines.map((line) => [
      line.slice(0, line.indexOf(':')).toLowerCase(),
      line.slice(line.indexOf(':') + 1).trim(),
    ]),
  );
  return { statusLine, headers, body: JSON.parse(body) };
}

describe('clientErrorHandler', () => {
  it.each([
    [
      'ERR_HTTP_REQUEST_TIMEOUT',
      'HTTP/1.1 408 Request Timeout',
      'RequestTimeoutError',
      'REQUEST_TIMEOUT',
      'The request took too long to arrive',
    ],
    [
      'HPE_HEADER_OVERFLOW',
      'HTTP/1.1 431 Request Header Fields Too Large',
      'RequestHeadersTooLargeError',
      'REQUEST_HEADERS_TOO_LARGE',
      'Request headers are too large',
    ],
    [
      'HPE_INVALID_METHOD',
      'HTTP/1.1 400 Bad Request',
      'ValidationError',
      'VALIDATION_FAILED',
      'Malformed HTTP request',
    ],
  ])(
    'answers %s with "%s" in the one error shape, then closes the connection',
    (code, statusLine, type, appCode, message) => {
      const socket = new CapturedSocket();
      clientErrorHandler(clientError(code), socket);

      const answer = response(socket.written);
      expect(answer.statusLine).toBe(statusLine);
      expect(answer.headers.get('connection')).toBe('close');
      expect(answer.headers.get('content-type')).toBe('application/json; charset=utf-8');
      expect(Number(answer.headers.get('content-length'))).toBe(
        Buffer.byteLength(socket.written.split('\r\n\r\n')[1] ?? ''),
      );
      const requestId = answer.headers.get('x-request-id');
      expect(answer.body).toEqual({
        error: { type, message, statusCode: Number(statusLine.split(' ')[1]), code: appCode, requestId },
      });
      expect(socket.destroyed).toBe(true);
    },
  );

  it('writes nothing to a connection the client reset', () => {
    const socket = new CapturedSocket();
    clientErrorHandler(clientError('ECONNRESET'), socket);
    expect(socket.written).toBe('');
  });

  it('writes nothing to a connection already destroyed', () => {
    const socket = new CapturedSocket();
    socket.destroy();
    clientErrorHandler(clientError('HPE_INVALID_METHOD'), socket);
    expect(socket.written).toBe('');
  });

  it('does not write to a connection that can no longer be written, but still closes it', () => {
    const socket = new CapturedSocket();
    socket.end();
    clientErrorHandler(clientError('HPE_INVALID_METHOD'), socket);
    expect(socket.written).toBe('');
    expect(socket.destroyed).toBe(true);
  });
});

describe('toAppError: schema failures', () => {
  it('names an unexpected property in the path, and gives a failure without message a generic one', () => {
    const error = toAppError(
      Object.assign(new Error('invalid'), {
        validationContext: 'body',
        validation: [
          { params: { additionalProperty: 'isAdmin' }, message: 'must NOT have additional properties' },
          { instancePath: '/name' },
        ],
      }),
    );
    expect(error).toMatchObject({ statusCode: 400, code: 'VALIDATION_FAILED', message: 'Request is invalid' });
    expect(error.details).toEqual([
      { path: '/body/isAdmin', message: 'must NOT have additional properties' },
      { path: '/body/name', message: 'is invalid' },
    ]);
  });
});
