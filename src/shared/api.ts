import type { StandardSchemaV1 } from '@standard-schema/spec'

/**
 * Describes an application's API once, for the server and the client: which commands
 * exist (payload and result), which events the server sends, which messages clients
 * send (`client.send`), and what each channel carries. Written as a type
 * (`interface ChatApi { commands: { echo: { payload: string; result: string } } }`) or
 * as an object of Standard Schemas (zod, valibot, arktype...) made with `defineApi`,
 * from which the types are inferred and against which the server validates payloads.
 *
 * A section left out stays untyped: any name, `unknown` values, as without an API.
 * Names may end in or contain `*`, which stands for any text: `'chat:*'` types every
 * channel whose name starts with `chat:` (a template literal type such as
 * `` [name: `chat:${string}`]: Message `` does the same in a type).
 */
export interface ApiShape {
  commands?: { [name: string]: CommandShape }
  events?: { [event: string]: unknown }
  messages?: { [type: string]: unknown }
  channels?: { [channel: string]: unknown }
}

/** One command: what the client sends and what the handler returns. Either may be left out: no payload, `unknown` result. */
export interface CommandShape {
  payload?: unknown
  result?: unknown
}

/** The API of a server or client given none: every section untyped. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export type UntypedApi = {}

/** The sections of an API. */
export type ApiSection = keyof ApiShape

/** A section of `Api` as a map of names to entries, or `undefined` when `Api` leaves it out (untyped). */
export type SectionOf<Api, S extends ApiSection> = Api extends { readonly [K in S]: infer Map } ? Map : undefined

/** `'chat:*'` → `` `chat:${string}` ``: the names a key stands for. */
export type NamePattern<K extends string> = K extends `${infer Head}*${infer Tail}` ? `${Head}${string}${NamePattern<Tail>}` : K

/** Every name a map's keys allow (`string` for an untyped section). */
export type NamesOf<Map> = Map extends undefined ? string : { [K in keyof Map & string]: NamePattern<K> }[keyof Map & string]

/** The entry for `Name`: the key it matches exactly, else every `*` key it matches (`unknown` for an untyped section). */
export type EntryOf<Map, Name extends string> = Map extends undefined
  ? unknown
  : Name extends keyof Map
    ? Map[Name]
    : { [K in keyof Map & string]: Name extends NamePattern<K> ? Map[K] : never }[keyof Map & string]

/** A Standard Schema's input (what is sent), or the type itself when the entry is a plain type. */
export type InputOf<T> = T extends StandardSchemaV1<infer In, unknown> ? In : T
/** A Standard Schema's output (what a handler receives after validation), or the type itself. */
export type OutputOf<T> = T extends StandardSchemaV1<unknown, infer Out> ? Out : T

// ---- commands ----------------------------------------------------------------------

export type CommandName<Api> = NamesOf<SectionOf<Api, 'commands'>>
type CommandEntry<Api, K extends string> = EntryOf<SectionOf<Api, 'commands'>, K>

/** An entry's field, `Otherwise` when the entry has none (an optional field gives its type with `undefined`). */
type FieldOf<Entry, F extends string, Otherwise> = [Entry] extends [never] ? Otherwise : F extends keyof Entry ? Entry[F] : Otherwise

/** What `client.command(name, payload)` sends: `undefined` for a command declared without `payload`. */
export type CommandPayload<Api, K extends string> =
  SectionOf<Api, 'commands'> extends undefined ? unknown : InputOf<FieldOf<CommandEntry<Api, K>, 'payload', undefined>>
/** What the handler's `ctx.payload` holds: the schema's output once validated. */
export type CommandInput<Api, K extends string> =
  SectionOf<Api, 'commands'> extends undefined ? unknown : OutputOf<FieldOf<CommandEntry<Api, K>, 'payload', undefined>>
/** What the handler returns and `client.command` resolves with (results are not validated). */
export type CommandResult<Api, K extends string> = OutputOf<FieldOf<CommandEntry<Api, K>, 'result', unknown>>
/** The payload and timeout arguments after the name: the payload optional when `undefined` fits it. */
export type CommandArgs<Api, K extends string> =
  undefined extends CommandPayload<Api, K> ? [payload?: CommandPayload<Api, K>, timeout?: number] : [payload: CommandPayload<Api, K>, timeout?: number]

// ---- server events, client messages, channels ----------------------------------------

export type EventName<Api> = NamesOf<SectionOf<Api, 'events'>>
export type EventPayload<Api, E extends string> = OutputOf<EntryOf<SectionOf<Api, 'events'>, E>>
/** The payload argument of sends: optional when `undefined` fits the event's payload. */
export type EventArgs<Api, E extends string> = undefined extends EventPayload<Api, E> ? [payload?: EventPayload<Api, E>] : [payload: EventPayload<Api, E>]

export type MessageType<Api> = NamesOf<SectionOf<Api, 'messages'>>
/** What `client.send(type, data)` sends. */
export type MessageData<Api, T extends string> = InputOf<EntryOf<SectionOf<Api, 'messages'>, T>>
/** What an `onMessage` handler's `ctx.data` holds, once validated. */
export type MessageInput<Api, T extends string> = OutputOf<EntryOf<SectionOf<Api, 'messages'>, T>>
export type MessageArgs<Api, T extends string> = undefined extends MessageData<Api, T> ? [data?: MessageData<Api, T>] : [data: MessageData<Api, T>]

export type ChannelName<Api> = NamesOf<SectionOf<Api, 'channels'>>
export type ChannelMessage<Api, C extends string> = OutputOf<EntryOf<SectionOf<Api, 'channels'>, C>>

/**
 * The `this` type of the overloads that keep the explicit type argument that methods
 * took before APIs were typed (`client.command<R>(name)`): `unknown` (any caller) when
 * `Api` leaves section `S` out, `never` (no caller: the typed overload applies) when it types it.
 */
export type IfUntyped<Api, S extends ApiSection> = SectionOf<Api, S> extends undefined ? unknown : never

// ---- run-time helpers ------------------------------------------------------------------

/**
 * Checks an API object's shape and keeps its literal types:
 * `export const api = defineApi({ commands: { echo: { payload: z.string(), result: z.string() } } })`.
 * The server validates with its schemas (`new MeshServer({ api })`); a client only needs
 * its type (`new MeshClient<typeof api>(url)`, from `import type`).
 */
export function defineApi<const Api extends ApiShape>(api: Api): Api {
  return api
}

/**
 * A schema that accepts anything and types it as `T`: for API object entries that are
 * types only (results, events, channel messages, or payloads trusted as they are).
 */
export function unchecked<T>(): StandardSchemaV1<T, T> {
  return uncheckedSchema as StandardSchemaV1<T, T>
}

const uncheckedSchema: StandardSchemaV1<unknown, unknown> = {
  '~standard': { version: 1, vendor: 'meshkit', validate: (value) => ({ value }) },
}
