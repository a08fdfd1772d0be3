import AjvCompiler from '@fastify/ajv-compiler';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';

/**
 * The compilers Fastify turns route schemas into validators and serializers with, shared by every
 * app this process builds. Route schemas are module constants, so the same schema object compiles
 * to the same function whichever app asks: a process that builds many apps (the test suite builds
 * one per test) compiles each schema once instead of once per app, which was about 200 ms of every
 * app's start. A production process builds one app and sees no difference.
 *
 * Bodies are validated strictly (a number is not silently turned into a string password) and
 * report every failure; query strings and params are coerced from their string form.
 */
type ValidatorFactory = ReturnType<typeof AjvCompiler>;
type SerializerFactory = ReturnType<typeof SerializerSelector>;

// One pool for the process: it keeps an Ajv instance per set of shared schemas and options (so the
// meta-schema is compiled once), and Ajv keeps each compiled schema by the schema object.
const validators = AjvCompiler();

export const buildValidator = (externalSchemas: Parameters<ValidatorFactory>[0]): ReturnType<ValidatorFactory> => {
  const body = validators(externalSchemas, { customOptions: { coerceTypes: false, allErrors: true } });
  const other = validators(externalSchemas, { customOptions: { coerceTypes: 'array', allErrors: true } });
  return (route) => (route.httpPart === 'body' ? body(route) : other(route));
};

const serializers = SerializerSelector();
type Serializer = ReturnType<ReturnType<SerializerFactory>>;
/** Per response schema object, per shared schemas and options (as JSON): its serializer. */
const compiled = new WeakMap<object, Map<string, Serializer>>();

export const buildSerializer: SerializerFactory = (externalSchemas, options) => {
  const compile = serializers(externalSchemas, options);
  const context = JSON.stringify([externalSchemas ?? null, options ?? null]);
  return (route) => {
    const { schema } = route;
    if (typeof schema !== 'object' || schema === null) return compile(route);
    let bySchemas = compiled.get(schema);
    if (bySchemas === undefined) compiled.set(schema, (bySchemas = new Map<string, Serializer>()));
    let serializer = bySchemas.get(context);
    if (serializer === undefined) bySchemas.set(context, (serializer = compile(route)));
    return serializer;
  };
};
