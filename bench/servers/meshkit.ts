// meshkit on the in-memory default, answering `echo`.
import { MeshServer } from 'meshkit/server'

const server = new MeshServer({ host: '127.0.0.1', port: 0 })
server.registerCommand('echo', (ctx) => ctx.payload)
await server.ready()
console.log(`PORT ${server.port}`)
