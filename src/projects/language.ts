import { franc } from 'franc';
import { rowsOf, type Db } from '../db/client.ts';
import { sql } from 'drizzle-orm';

/**
 * A document's language, as the PostgreSQL text-search configuration that
 * stems it: found by franc (trigram statistics) among the languages
 * PostgreSQL has a configuration for, and `simple` (no stemming, no stop
 * words) when the text is too short to tell or the configuration is missing
 * on this database.
 */

/** franc's ISO 639-3 codes and PostgreSQL's configuration names. */
const CONFIGS: Record<string, string> = {
  eng: 'english',
  deu: 'german',
  fra: 'french',
  spa: 'spanish',
  ita: 'italian',
  por: 'portuguese',
  nld: 'dutch',
  swe: 'swedish',
  dan: 'danish',
  fin: 'finnish',
  hun: 'hungarian',
  ron: 'romanian',
  ell: 'greek',
  gle: 'irish',
  lit: 'lithuanian',
  est: 'estonian',
  nob: 'norwegian',
  cat: 'catalan',
  eus: 'basque',
  tur: 'turkish',
  rus: 'russian',
};

const CANDIDATES = Object.keys(CONFIGS);

/** Characters of a document looked at: enough for a confident guess, cheap on a long one. */
const SAMPLE_CHARS = 4000;

/** The configuration for `text`, or `simple`; `available` is what the database has. */
export function detectLanguage(text: string, available: ReadonlySet<string>): string {
  const sample = text.replace(/\[(?:page|slide) \d+\]/g, ' ').slice(0, SAMPLE_CHARS);
  const code = franc(sample, { only: CANDIDATES, minLength: 20 });
  const config = CONFIGS[code];
  return config !== undefined && available.has(config) ? config : 'simple';
}

const cache = new WeakMap<Db, Promise<Set<string>>>();

/** The text-search configurations of this database (asked once per handle). */
export function textSearchConfigs(db: Db): Promise<Set<string>> {
  let found = cache.get(db);
  if (found === undefined) {
    found = db.execute(sql`select cfgname from pg_ts_config`).then((r) => new Set(rowsOf<{ cfgname: string }>(r).map((x) => x.cfgname)));
    found.catch(() => cache.delete(db));
    cache.set(db, found);
  }
  return found;
}
