import AjvCompiler from '@fastify/ajv-compiler';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';

/**
 * The compilers Fastify turns route schemas into validators and serializers with, shared by every
 * app this process builds. A schema compiles once per process, keyed by its JSON and the shared
 * schemas and options it was compiled against. The routes build their schemas inline, so each app
 * holds new but equal objects: keyed by object, 17 of an app's 24 validators and 14 of its 19
 * serializers were compiled again for every app, and a warm buildApp took 34-38 ms where it takes
 * 13-15 ms keyed by JSON (six builds in a loop). The suite builds an app per test; a production process
 * builds one and sees no difference. Ajv and fast-json-stringify read nothing of a schema but its
 * JSON, so equal JSON compiles to an equivalent function.
 *
 * Bodies are validated strictly (a number is not silently turned into a string password) and
 * report every failure; query strings and params are coerced from their string form.
 */
type ValidatorFactory = ReturnType<typeof AjvCompiler>;
type SerializerFactory = ReturnType<typeof SerializerSelector>;
type Validator = ReturnType<ReturnType<ValidatorFactory>>;
type Serializer = ReturnType<ReturnType<SerializerFactory>>;

/** `compile`, remembered in `cache` under the schema's JSON in `context`. */
function remembered<F>(cache: Map<string, F>, context: string, schema: unknown, compile: () => F): F {
  const key = `${context}\u0000${JSON.stringify(schema)}`;
  let compiled = cache.get(key);
  if (compiled === undefined) cache.set(key, (compiled = compile()));
  return compiled;
}

// One pool for the process: it keeps an Ajv instance per set of shared schemas and options (so the
// meta-schema is compiled once).
const validators = AjvCompiler();
const compiledValidators = new Map<string, Validator>();

export const buildValidator = (externalSchemas: Parameters<ValidatorFactory>[0]): ReturnType<ValidatorFactory> => {
  const body = validators(externalSchemas, { customOptions: { coerceTypes: false, allErrors: true } });
  const other = validators(externalSchemas, { customOptions: { coerceTypes: 'array', allErrors: true } });
  const shared = JSON.stringify(externalSchemas);
  return (route) => {
    const part = route.httpPart === 'body' ? 'body' : 'other';
    return remembered(compiledValidators, `${part}\u0000${shared}`, route.schema, () =>
      part === 'body' ? body(route) : other(route),
    );
  };
};

const serializers = SerializerSelector();
const compiledSerializers = new Map<string, Serializer>();

export const buildSerializer: SerializerFactory = (externalSchemas, options) => {
  const compile = serializers(externalSchemas, options);
  const context = JSON.stringify([externalSchemas ?? null, options ?? null]);
  return (route) => remembered(compiledSerializers, context, route.schema, () => compile(route));
};
