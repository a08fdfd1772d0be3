import { generateKeyPair, SignJWT, jwtVerify } from 'jose';
const { privateKey, publicKey } = await generateKeyPair('EdDSA');
const secret = await crypto.subtle.importKey('raw', Buffer.alloc(48, 1), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
const claims = { sub: 'x', sid: 'y', typ: 'access' };
const ed = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA' }).setIssuedAt().setExpirationTime('1h').sign(privateKey);
const hs = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('1h').sign(secret);
async function time(name: string, fn: () => Promise<unknown>, n = 20000, conc = 1) {
  for (let i = 0; i < 2000; i++) await fn();
  const t = performance.now();
  for (let i = 0; i < n / conc; i++) await Promise.all(Array.from({ length: conc }, fn));
  const us = ((performance.now() - t) * 1000) / n;
  console.log(name, us.toFixed(1), 'µs/op');
}
for (let r = 0; r < 2; r++) {
  await time('HS256 verify', () => jwtVerify(hs, secret, { algorithms: ['HS256'] }));
  await time('EdDSA verify', () => jwtVerify(ed, publicKey, { algorithms: ['EdDSA'] }));
  await time('HS256 verify x16', () => jwtVerify(hs, secret, { algorithms: ['HS256'] }), 20000, 16);
  await time('EdDSA verify x16', () => jwtVerify(ed, publicKey, { algorithms: ['EdDSA'] }), 20000, 16);
}
