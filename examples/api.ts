// The example application's API, shared by the server (examples/app.ts), the example
// client (examples/client.ts) and the demo page (examples/demo/app.js). The server
// validates payloads with these zod schemas before any middleware runs; the clients
// import only the type (`import type`), so no schema code reaches them.
import { defineApi, unchecked } from 'meshkit'
import { z } from 'zod'

/** A chat message as the channel `chat:<room>` carries it. */
export interface ChatMessage {
  /** The sender's connection id. */
  from: string
  name: string
  text: string
  /** Milliseconds since the epoch, by the server's clock. */
  at: number
}

/** Chat rooms: a name in the page's URL hash, a presence room `room:<name>` and a channel `chat:<name>`. */
export const ROOM_NAME = /^[a-z0-9-]{1,24}$/

export const exampleApi = defineApi({
  commands: {
    echo: { payload: unchecked<string>(), result: unchecked<string>() },
    whoami: { payload: z.object({ token: z.string().max(64).optional() }), result: unchecked<string>() },
    shout: { payload: z.object({ text: z.string().max(500) }), result: unchecked<string>() },
    join: { payload: z.object({ room: z.string().min(1).max(64).default('lobby') }), result: unchecked<string[]>() },
    say: {
      payload: z.object({
        room: z.string().regex(ROOM_NAME),
        name: z.string().trim().max(32).optional(),
        text: z.string().trim().min(1).max(500),
      }),
      // The channel offset the message got.
      result: unchecked<number>(),
    },
  },
  events: {
    welcome: unchecked<{ id: string }>(),
    shouted: unchecked<{ by: string; text: string }>(),
    joined: unchecked<{ id: string; room: string }>(),
    noted: unchecked<{ text: string; by: string }>(),
  },
  messages: { note: z.string().max(500) },
  channels: { 'chat:*': unchecked<ChatMessage>() },
})

export type ExampleApi = typeof exampleApi
