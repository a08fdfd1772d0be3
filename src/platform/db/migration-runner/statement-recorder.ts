import type {
  Kysely,
  KyselyPlugin,
  PluginTransformQueryArgs,
  PluginTransformResultArgs,
  QueryResult,
  RootOperationNode,
  UnknownRow,
} from 'kysely';

/**
 * Remembers the query in flight, so a failure can name its SQL: Kysely reports a failed query's
 * text only to a log hook, which a Kysely handed to us (kysely-ctl's) may not have.
 */
export class StatementRecorder implements KyselyPlugin {
  #inFlight: PluginTransformQueryArgs | undefined;

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    this.#inFlight = args;
    return args.node;
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    this.#inFlight = undefined;
    return args.result;
  }

  failedStatement(db: Kysely<unknown>): string | undefined {
    if (this.#inFlight === undefined) return undefined;
    return db.getExecutor().compileQuery(this.#inFlight.node, this.#inFlight.queryId).sql.replace(/\s+/g, ' ').trim();
  }
}
