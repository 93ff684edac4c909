import { Redis } from 'ioredis'
import { inject, onTestFinished } from 'vitest'
import { deferred } from './harness.js'

/** A raw Redis connection of the test's own, closed when the test ends. */
export async function rawRedis(): Promise<Redis> {
  const redis = new Redis(inject('redisUrl'))
  onTestFinished(() => redis.quit().then(() => undefined))
  return redis
}

/**
 * The commands Redis runs for one namespace's connections, users and rooms while
 * `action` runs, seen with MONITOR (the instances' liveness bookkeeping left out: it
 * runs on timers, whatever is delivered).
 */
export async function commandsDuring(namespace: string, action: () => Promise<unknown>): Promise<string[]> {
  const monitor = await (await rawRedis()).monitor()
  onTestFinished(() => monitor.disconnect())
  const commands: string[] = []
  const fenced = deferred()
  monitor.on('monitor', (_time: string, args: string[]) => {
    if (args[1] === `${namespace}:fence`) fenced.resolve()
    else if ((args[1]?.startsWith(`${namespace}:{inst:`) && args[1].endsWith('}:alive')) || args[1] === `${namespace}:{${namespace}}:instances`) return
    else if (args.some((arg) => arg.includes(namespace))) commands.push(args[0]!.toLowerCase())
  })
  await action()
  // Redis runs commands one at a time: once MONITOR shows this one, it has shown every earlier one.
  await (await rawRedis()).exists(`${namespace}:fence`)
  await fenced.promise
  return commands
}
