import type { StandardSchemaV1 } from '@standard-schema/spec'
import type { ApiShape } from '../shared/api.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import { requireKnownKeys, type OptionKeys } from '../shared/options.js'
import { isThenable } from './compose.js'

/** One issue as the client gets it in a `BAD_REQUEST`'s `data.issues`. */
export interface PayloadIssue {
  message: string
  /** Keys from the payload's root to the offending value; absent for the payload itself. */
  path?: (string | number)[]
}

/** A schema's verdict on one payload: its output, or why it was refused. */
export type Verdict = { readonly valid: true; readonly value: unknown } | { readonly valid: false; readonly issues: PayloadIssue[] }

/** Validates one payload; may return a promise (async schemas), and may throw (a broken schema: a fault, not a refusal). */
export type PayloadCheck = (value: unknown) => Verdict | Promise<Verdict>

/** Issues sent back at most: a payload of 100 000 bad items must not become a reply of 100 000 issues. */
export const MAX_REPORTED_ISSUES = 20

const apiKeys: OptionKeys<ApiShape> = { commands: true, events: true, messages: true, channels: true }

/**
 * The Standard Schemas of the `api` option, ready to check payloads: built once at
 * construction (where a bad `api` throws), then asked once per request, only by a
 * server that has some. Results, events and channel messages are types only: the
 * server writes them, so there is nothing from outside to check.
 */
export class ApiSchemas {
  private readonly commands = new Names()
  private readonly messages = new Names()

  /** The schemas of `api`, or `undefined` when it validates nothing (no `api`, or types and `unchecked()` only): then nothing is asked per request. */
  static from(api: ApiShape | undefined): ApiSchemas | undefined {
    if (api === undefined) return undefined
    const schemas = new ApiSchemas(api)
    return schemas.commands.empty && schemas.messages.empty ? undefined : schemas
  }

  private constructor(api: ApiShape) {
    requireKnownKeys(api, apiKeys, 'api.')
    for (const section of ['events', 'channels'] as const) requireSection(api, section)
    for (const [name, entry] of Object.entries(requireSection(api, 'commands'))) {
      if (typeof entry !== 'object' || entry === null) throw new TypeError(`api.commands.${name} must be an object ({ payload?, result? })`)
      const payload = (entry as { payload?: unknown }).payload
      if (payload !== undefined) this.commands.add(name, requireSchema(payload, `api.commands.${name}.payload`))
    }
    for (const [type, schema] of Object.entries(requireSection(api, 'messages'))) this.messages.add(type, requireSchema(schema, `api.messages.${type}`))
  }

  /** The check of a command's payload, or `undefined` when it has no schema. */
  command(name: string): PayloadCheck | undefined {
    return this.commands.check(name)
  }

  /** The check of a client message's data, or `undefined` when its type has no schema. */
  message(type: string): PayloadCheck | undefined {
    return this.messages.check(type)
  }
}

/** The `BAD_REQUEST` of a payload a schema refused; `data.issues` as documented in docs/protocol.md. */
export function invalidPayload(issues: PayloadIssue[], data: Record<string, unknown> = {}): MeshError {
  return new MeshError(ErrorCode.BAD_REQUEST, 'Invalid payload', { data: { ...data, issues } })
}

/** Schemas by name: exact names first, then `*` patterns in the order written (as `EntryOf` types them). */
class Names {
  private readonly exact = new Map<string, PayloadCheck>()
  private readonly patterns: { readonly test: RegExp; readonly schema: StandardSchemaV1 }[] = []

  get empty(): boolean {
    return this.exact.size === 0 && this.patterns.length === 0
  }

  add(name: string, schema: StandardSchemaV1 | undefined): void {
    if (schema === undefined) return
    if (name.includes('*')) this.patterns.push({ test: patternOf(name), schema })
    else this.exact.set(name, (value) => validate(schema, value))
  }

  check(name: string): PayloadCheck | undefined {
    const exact = this.exact.get(name)
    if (exact !== undefined || this.patterns.length === 0) return exact
    const matching = this.patterns.filter((pattern) => pattern.test.test(name)).map((pattern) => pattern.schema)
    if (matching.length === 0) return undefined
    // Several patterns type the name as the union of their entries: a payload any of them accepts is valid.
    return (value) => firstValid(matching, value, 0, undefined)
  }
}

function firstValid(schemas: readonly StandardSchemaV1[], value: unknown, start: number, refused: Verdict | undefined): Verdict | Promise<Verdict> {
  for (let index = start; index < schemas.length; index++) {
    const verdict = validate(schemas[index]!, value)
    if (isThenable(verdict)) return verdict.then((settled) => (settled.valid ? settled : firstValid(schemas, value, index + 1, refused ?? settled)))
    if (verdict.valid) return verdict
    refused ??= verdict
  }
  return refused!
}

function validate(schema: StandardSchemaV1, value: unknown): Verdict | Promise<Verdict> {
  const result = schema['~standard'].validate(value)
  return isThenable(result) ? Promise.resolve(result).then(verdictOf) : verdictOf(result)
}

/** A result that is not one (a broken schema) throws: the caller reports it as a fault, never as the client's mistake. */
function verdictOf(result: StandardSchemaV1.Result<unknown>): Verdict {
  if (typeof result !== 'object' || result === null) throw new TypeError('A schema\'s validate returned no result object')
  if (!result.issues) return { valid: true, value: result.value }
  if (!Array.isArray(result.issues)) throw new TypeError('A schema\'s validate returned issues that are not an array')
  return { valid: false, issues: result.issues.slice(0, MAX_REPORTED_ISSUES).map(issueOf) }
}

function issueOf(issue: StandardSchemaV1.Issue): PayloadIssue {
  const message = typeof issue?.message === 'string' ? issue.message : 'Invalid value'
  if (!Array.isArray(issue?.path) || issue.path.length === 0) return { message }
  return { message, path: issue.path.map(keyOf) }
}

/** Segments are keys or `{ key }`; anything else a library puts there (a symbol, a Map's key) goes as text, so that every codec can send it. */
function keyOf(segment: PropertyKey | StandardSchemaV1.PathSegment): string | number {
  const key: unknown = typeof segment === 'object' && segment !== null ? segment.key : segment
  if (typeof key === 'string' || typeof key === 'number') return key
  return typeof key === 'symbol' ? (key.description ?? '') : String(key)
}

function requireSection(api: ApiShape, section: keyof ApiShape): Record<string, unknown> {
  const entries = api[section]
  if (entries === undefined) return {}
  if (typeof entries !== 'object' || entries === null || Array.isArray(entries)) throw new TypeError(`api.${section} must be an object`)
  return entries as Record<string, unknown>
}

/** A Standard Schema, `undefined` for `unchecked()` (it accepts anything, so checking would only cost time). */
function requireSchema(value: unknown, where: string): StandardSchemaV1 | undefined {
  const props = (value as { '~standard'?: Partial<StandardSchemaV1.Props> } | null)?.['~standard']
  if (typeof props !== 'object' || props === null || props.version !== 1 || typeof props.validate !== 'function') {
    throw new TypeError(`${where} must be a Standard Schema (zod, valibot, arktype..., or unchecked<T>())`)
  }
  return props.vendor === 'meshkit' ? undefined : (value as StandardSchemaV1)
}

/** `'chat:*'` → /^chat:.*$/s: `*` stands for any text, everything else for itself. */
function patternOf(name: string): RegExp {
  const source = name.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')
  return new RegExp(`^${source}$`, 's')
}
