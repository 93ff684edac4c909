import { describe, expect, it, onTestFinished } from 'vitest'
import { fuzzSession } from './support/fuzz-frames.js'
import { configureFuzzServer, playSession, WellBehavedClient, type SessionOutcome } from './support/fuzz-run.js'
import { connectClient, eventually, startServer, urlOf } from './support/harness.js'

/** Seeds of the bounded run; a failure names its seed, and `fuzzSession(seed)` replays it. */
const FIRST_SEED = 1
const SESSIONS = 120
const CONCURRENCY = 6

/** Records what would crash a process: unhandled rejections and uncaught exceptions while the test runs. */
function watchProcessFaults(): unknown[] {
  const faults: unknown[] = []
  const onFault = (error: unknown): void => {
    faults.push(error)
  }
  process.on('unhandledRejection', onFault)
  process.on('uncaughtException', onFault)
  onTestFinished(() => {
    process.off('unhandledRejection', onFault)
    process.off('uncaughtException', onFault)
  })
  return faults
}

describe('hostile input', () => {
  it('the generator replays a seed exactly, and covers every kind of junk', () => {
    const kinds = new Set<string>()
    for (let seed = FIRST_SEED; seed < FIRST_SEED + SESSIONS; seed++) {
      for (const message of fuzzSession(seed).messages) kinds.add(message.kind)
    }
    expect([...kinds].sort()).toEqual(['duplicate ids in flight', 'garbage text', 'invalid utf-8 text', 'lying header', 'oversized frame', 'random bytes', 'truncated frame', 'wrong-shaped frame'])
    expect(fuzzSession(42)).toEqual(fuzzSession(42))
    expect(fuzzSession(42)).not.toEqual(fuzzSession(43))
  })

  it('junk from many sockets crashes nothing, leaks no connection, pollutes no prototype, and a well-behaved client sees no failure', async () => {
    const faults = watchProcessFaults()
    const server = await startServer({}, configureFuzzServer)
    const client = new WellBehavedClient(await connectClient(server))
    client.start()

    const outcomes: Record<SessionOutcome, number[]> = { answered: [], closed: [], hung: [] }
    let frames = 0
    let next = FIRST_SEED
    const worker = async (): Promise<void> => {
      while (next < FIRST_SEED + SESSIONS) {
        const seed = next++
        const result = await playSession(urlOf(server), seed)
        outcomes[result.outcome].push(seed)
        frames += result.frames
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
    await client.stop()

    expect(frames).toBe(SESSIONS * 13)
    // Every hostile socket got its probe answered or was closed on purpose; none was left hanging.
    expect(outcomes.hung, 'seeds whose probe was neither answered nor closed').toEqual([])
    expect(outcomes.answered.length).toBeGreaterThan(SESSIONS / 4)
    expect(outcomes.closed.length, 'oversized and non-UTF-8 frames close their socket').toBeGreaterThan(0)
    expect(faults).toEqual([])
    expect(client.failures).toEqual([])
    expect(client.commands).toBeGreaterThan(10)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    // Only the well-behaved client remains once the hostile sockets are gone.
    await eventually(async () => expect(server.connections.size).toBe(1))
  }, 60_000)
})
