import { describe, expect, it } from 'vitest'
import type { MeshServer } from 'meshkit/server'
import { collect, fence } from './support/cluster.js'
import { connectClient, deferred, eventually, nextEvent, startServer } from './support/harness.js'

/** A server whose clients may join rooms starting with "lobby", except "lobby-vip"; the guard records who asked for what. */
async function lobbyServer(port = 0): Promise<{ server: MeshServer; asked: string[] }> {
  const asked: string[] = []
  // Exposed before the server accepts anyone: clients reconnecting to a restarted server rejoin at once.
  const server = await startServer({ port }, (created) =>
    created.exposeRoom(/^lobby/, async (connection, room) => {
      asked.push(`${connection.id} ${room}`)
      if (room === 'lobby-boom') throw new Error('guard failed')
      return room !== 'lobby-vip'
    }),
  )
  return { server, asked }
}

describe('rooms clients join themselves', () => {
  it('joinRoom: true for an exposed room the guard allows, false otherwise; broadcastRoom reaches members only', async () => {
    const { server, asked } = await lobbyServer()
    const [member, outsider] = [await connectClient(server), await connectClient(server)]
    const inbox = { member: collect(member, 'msg'), outsider: collect(outsider, 'msg') }
    expect(await member.joinRoom('lobby')).toBe(true)
    expect(asked).toEqual([`${member.id} lobby`])
    for (const room of ['lobby-vip', 'lobby-boom', 'kitchen']) expect(await outsider.joinRoom(room)).toBe(false)
    // The guard runs for exposed rooms only, and for every join.
    expect(asked.slice(1)).toEqual([`${outsider.id} lobby-vip`, `${outsider.id} lobby-boom`])
    expect(await member.joinRoom('lobby')).toBe(true)
    expect(asked).toHaveLength(4)

    expect(await server.isInRoom('lobby', member.id!)).toBe(true)
    expect(await server.isInRoom('lobby', outsider.id!)).toBe(false)
    for (const room of ['lobby-vip', 'lobby-boom', 'kitchen']) expect(await server.getRoomMembers(room)).toEqual([])
    expect(await server.getRoomMembers('lobby')).toEqual([member.id])

    await server.broadcastRoom('lobby', 'msg', 'hello lobby')
    for (const room of ['lobby-vip', 'lobby-boom', 'kitchen']) await server.broadcastRoom(room, 'msg', `hello ${room}`)
    await fence(server, [member, outsider])
    expect(inbox).toEqual({ member: ['hello lobby'], outsider: [] })
  })

  it('leaveRoom: true if the client was in the room, false otherwise; then broadcasts stop', async () => {
    const { server } = await lobbyServer()
    const client = await connectClient(server)
    const inbox = collect(client, 'msg')
    expect(await client.joinRoom('lobby')).toBe(true)
    await server.broadcastRoom('lobby', 'msg', 'before')
    expect(await client.leaveRoom('lobby')).toBe(true)
    expect(await server.isInRoom('lobby', client.id!)).toBe(false)
    expect(await client.leaveRoom('lobby')).toBe(false)
    expect(await client.leaveRoom('lobby-never')).toBe(false)
    // Not exposed: clients cannot leave it, even when the server put them there.
    await server.addToRoom('kitchen', client.id!)
    expect(await client.leaveRoom('kitchen')).toBe(false)
    expect(await server.isInRoom('kitchen', client.id!)).toBe(true)
    await server.broadcastRoom('lobby', 'msg', 'after')
    await fence(server, [client])
    expect(inbox).toEqual(['before'])
  })

  it('rejoins the rooms it joined itself after the server restarts on the same port, not the ones it left', async () => {
    const first = await lobbyServer()
    const client = await connectClient(first.server, { reconnectInterval: 20 })
    expect(await client.joinRoom('lobby')).toBe(true)
    expect(await client.joinRoom('lobby-2')).toBe(true)
    expect(await client.joinRoom('lobby-left')).toBe(true)
    expect(await client.leaveRoom('lobby-left')).toBe(true)
    expect(await client.joinRoom('lobby-vip')).toBe(false)
    const oldId = client.id
    const port = first.server.port
    const reconnected = nextEvent(client, 'reconnect')
    await first.server.close()
    const { server, asked } = await lobbyServer(port)
    await reconnected
    expect(client.id).not.toBe(oldId)
    await eventually(async () => {
      expect(await server.isInRoom('lobby', client.id!)).toBe(true)
      expect(await server.isInRoom('lobby-2', client.id!)).toBe(true)
    })
    // Requests are dispatched in order and the guard is called on dispatch: once this join
    // is answered, every rejoin the client sent before it has been put to the guard.
    expect(await client.joinRoom('lobby-3')).toBe(true)
    expect([...asked].sort()).toEqual(['lobby', 'lobby-2', 'lobby-3'].map((room) => `${client.id} ${room}`))
    expect((await server.getRoomMembers('lobby-left'))).toEqual([])
    const inbox = collect(client, 'msg')
    await server.broadcastRoom('lobby', 'msg', 'welcome back')
    await fence(server, [client])
    expect(inbox).toEqual(['welcome back'])
  })
})

describe('a join still deciding when its client leaves', () => {
  it('is cancelled by the leave: the late guard answer puts no one in the room', async () => {
    const asked = deferred()
    const answer = deferred<boolean>()
    const server = await startServer({}, (created) => created.exposeRoom('lobby', async () => (asked.resolve(), answer.promise)))
    const client = await connectClient(server)
    const joining = client.joinRoom('lobby')
    await asked.promise
    expect(await client.leaveRoom('lobby')).toBe(true)
    answer.resolve(true)
    expect(await joining).toBe(false)
    expect(await server.getRoomMembers('lobby')).toEqual([])
  })

  it('is undone by the join itself when the leave came while the store was writing it', async () => {
    const server = await startServer({}, (created) => created.exposeRoom('lobby'))
    const client = await connectClient(server)
    // The join's store write waits until the leave has been answered.
    const [writing, left] = [deferred(), deferred()]
    const write = server.store.addToRoom.bind(server.store)
    server.store.addToRoom = async (...args) => {
      writing.resolve()
      await left.promise
      return write(...args)
    }
    const joining = client.joinRoom('lobby')
    await writing.promise
    expect(await client.leaveRoom('lobby')).toBe(true)
    left.resolve()
    expect(await joining).toBe(false)
    expect(await server.getRoomMembers('lobby')).toEqual([])
  })
})
