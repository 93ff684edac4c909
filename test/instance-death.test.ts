import { describe, expect, it } from 'vitest'
import { startInstances, uniqueNamespace } from './support/cluster.js'
import { childInstance } from './support/child-instance.js'
import { connectClient, eventually } from './support/harness.js'
import { sharedRedisEnv } from './support/shared-redis.js'

describe('an instance that dies without closing', () => {
  it('is cleaned up by a survivor: rooms, metadata and routing to it are gone within the TTL bound', { timeout: 30_000 }, async () => {
    const namespace = uniqueNamespace('death')
    const instanceTtl = 600
    const [survivor] = await startInstances(1, { namespace, instanceTtl })
    const doomed = await childInstance({ ...sharedRedisEnv(), NAMESPACE: namespace, INSTANCE_TTL: String(instanceTtl) })
    const onDoomed = await connectClient(`ws://127.0.0.1:${doomed.port}`, { shouldReconnect: false })
    const onSurvivor = await connectClient(survivor!)
    await onDoomed.command('join', { room: 'lobby', metadata: { userId: 'doomed' } })
    await survivor!.addToRoom('lobby', onSurvivor.id!)
    const doomedId = onDoomed.id!
    expect((await survivor!.getRoomMembers('lobby')).sort()).toEqual([doomedId, onSurvivor.id].sort())
    expect(await survivor!.connectionManager.getMetadata(doomedId)).toEqual({ userId: 'doomed' })

    await doomed.kill()
    const killedAt = Date.now()
    await eventually(async () => {
      expect(await survivor!.getRoomMembers('lobby')).toEqual([onSurvivor.id])
      expect(await survivor!.connectionManager.getMetadata(doomedId)).toBeNull()
    })
    // Liveness TTL plus one sweep period, with slack for a loaded machine.
    expect(Date.now() - killedAt).toBeLessThan(instanceTtl * 1.5 + 2_000)
    expect(await survivor!.store.getConnectionInstances([doomedId])).toEqual([undefined])
    // Delivery to the dead connection is skipped, not an error; the living still receive.
    const delivered = new Promise((resolve) => onSurvivor.once('msg', resolve))
    await survivor!.sendTo([doomedId, onSurvivor.id!], 'msg', 'still here')
    expect(await delivered).toBe('still here')
  })
})
