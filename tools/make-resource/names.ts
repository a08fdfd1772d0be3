/** Every spelling of a resource's name the generated files use, derived from one plural name. */
export interface ResourceNames {
  /** Folder, file prefix, URL path and OpenAPI tag: `project-notes`. */
  readonly kebab: string;
  /** Table: `project_notes`. */
  readonly table: string;
  /** Type and class prefix, singular: `ProjectNote`. */
  readonly Singular: string;
  /** Plural type prefix: `ProjectNotes` (the db-types interface of the table). */
  readonly Plural: string;
  /** Variables, singular and plural: `projectNote`, `projectNotes`. */
  readonly singular: string;
  readonly plural: string;
  /** Words for summaries and messages: `project note`, `project notes`. */
  readonly words: string;
  readonly pluralWords: string;
}

/** Plural kebab or snake case, 2 to 37 characters (its longest index name stays within PostgreSQL's 63). */
const NAME = /^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$/;
const MAX_LENGTH = 37;

/** The singular of the last word: `projects` → `project`, `categories` → `category`, `boxes` → `box`. */
function singularOf(word: string): string {
  if (/[^aeiou]ies$/.test(word)) return `${word.slice(0, -3)}y`;
  if (/(?:s|x|z|ch|sh)es$/.test(word)) return word.slice(0, -2);
  if (/[^s]s$/.test(word)) return word.slice(0, -1);
  return word;
}

const capital = (word: string) => `${word.charAt(0).toUpperCase()}${word.slice(1)}`;

/**
 * The spellings of `name`, or a message saying what is wrong with it.
 *
 * @example
 * ```ts
 * resourceNames('project-notes'); // { kebab: 'project-notes', table: 'project_notes', Singular: 'ProjectNote', … }
 * ```
 */
export function resourceNames(name: string): ResourceNames | string {
  if (!NAME.test(name)) {
    return `${JSON.stringify(name)} is not a plural name in kebab-case or snake_case (a-z, 0-9, - or _ between words, starting with a letter), e.g. projects or project-notes`;
  }
  if (name.length < 2 || name.length > MAX_LENGTH) {
    return `${JSON.stringify(name)} must be 2 to ${MAX_LENGTH} characters (PostgreSQL truncates index names past 63)`;
  }
  const words = name.split(/[-_]/);
  const last = words.at(-1) ?? name;
  const singularWords = [...words.slice(0, -1), singularOf(last)];
  if (singularWords.join('') === words.join('')) {
    return `${JSON.stringify(name)} should be plural (the table and the URL name the collection), e.g. ${name}s`;
  }
  const pascal = (list: readonly string[]) => list.map(capital).join('');
  const camel = (list: readonly string[]) => {
    const joined = pascal(list);
    return `${joined.charAt(0).toLowerCase()}${joined.slice(1)}`;
  };
  return {
    kebab: words.join('-'),
    table: words.join('_'),
    Singular: pascal(singularWords),
    Plural: pascal(words),
    singular: camel(singularWords),
    plural: camel(words),
    words: singularWords.join(' '),
    pluralWords: words.join(' '),
  };
}
