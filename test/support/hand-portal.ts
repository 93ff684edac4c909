import { Redis } from 'ioredis'
import { inject, onTestFinished } from 'vitest'
import type { MeshServer, MeshServerOptions } from 'meshkit/server'
import type { Keys } from '../../src/server/store/keys.js'
import { decodeEntry, encodeReply, type CommandBody, type PortalEntry } from '../../src/server/portal/stream-format.js'
import { startServer } from './harness.js'

/**
 * Playing a Portal by hand on the real Redis, for the tests of the server's side:
 * reading the event and command streams, writing announcements, and publishing
 * replies in the documented stream format, without the Portal class.
 */

/** A plain ioredis connection of the test's own, closed when the test ends. */
export function redisClient(url: string = inject('redisUrl')): Redis {
  const redis = new Redis(url)
  onTestFinished(() => redis.quit().then(() => {}, () => redis.disconnect()))
  return redis
}

/** Every entry of a stream, decoded. */
export async function entriesOf(redis: Redis, key: string): Promise<PortalEntry[]> {
  const raw = await redis.xrangeBuffer(key, '-', '+')
  return raw.map(([id, fields]) => decodeEntry(id.toString(), fields)!)
}

async function redisNow(redis: Redis): Promise<number> {
  const [seconds, micros] = await redis.time()
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
}

/** Writes a portal's announcement as a portal's heartbeat does; `liveFor` < 0 makes it one that has expired. */
export async function announce(redis: Redis, keys: Keys, portalId: string, group: string, commands: string[], liveFor = 60_000): Promise<void> {
  const now = await redisNow(redis)
  await redis.zadd(keys.portalLiveness, now + liveFor, portalId)
  await redis.hset(keys.portalRegistry, portalId, JSON.stringify({ group, commands, since: now }))
}

/** Plays one portal of `group` answering calls of `command` with `answer` (which returns the reply after the token). */
export async function answerCalls(keys: Keys, group: string, command: string, answer: (body: CommandBody) => unknown[] | undefined): Promise<PortalEntry[]> {
  const reader = redisClient()
  const key = keys.portalCommands(group, command)
  await reader.xgroup('CREATE', key, group, '0', 'MKSTREAM')
  const seen: PortalEntry[] = []
  let running = true
  onTestFinished(() => {
    running = false
  })
  void (async () => {
    while (running) {
      const reply = (await reader.callBuffer('XREADGROUP', 'GROUP', group, 'me', 'BLOCK', 200, 'STREAMS', key, '>').catch(() => null)) as [Buffer, [Buffer, Buffer[]][]][] | null
      for (const [id, fields] of reply?.[0]?.[1] ?? []) {
        const entry = decodeEntry(id.toString(), fields)!
        seen.push(entry)
        const body = entry.body as CommandBody
        const rest = answer(body)
        if (rest) await reader.publish(keys.portalReplies(entry.instanceId), Buffer.from(encodeReply([body.token, ...rest] as never)))
      }
    }
  })()
  return seen
}

/** A server on the run's Redis; `portal` as given (`undefined`: the option left out). */
export function portalServer(namespace: string, portal: MeshServerOptions['portal'], options: MeshServerOptions = {}): Promise<MeshServer> {
  return startServer({ redis: inject('redisUrl'), namespace, ...(portal === undefined ? {} : { portal }), ...options })
}

