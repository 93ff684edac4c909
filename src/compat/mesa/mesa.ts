import { EventEmitter } from 'node:events'
import { MeshServer, type Connection } from '../../server/index.js'
import { CONFIG_EVENT, resolveMesaOptions, type AdvertisedConfig, type MesaOptions } from './mesa-options.js'
import { toHooks, type Middleware } from './mesa-middleware.js'
import { wireType, type Message } from './message.js'
import { messageOf, ServerClient } from './server-client.js'

/**
 * Mesa's server on meshkit: `new Mesa(config)` starts listening (port 4000 by default),
 * `connection` events give Mesa-shaped clients, `send` addresses authenticated users.
 * Everything else (delivery, authentication, redelivery, replication) is meshkit's
 * `MeshServer`, reachable as `mesa.mesh`.
 */
export class Mesa extends EventEmitter {
  /** The meshkit server doing the work. */
  readonly mesh: MeshServer
  private readonly clients = new Map<string, ServerClient>()
  private readonly advertised: AdvertisedConfig
  private readonly logger: MesaOptions['logger']
  private readonly syncEnabled: boolean

  constructor(options: MesaOptions = {}) {
    super()
    const resolved = resolveMesaOptions(options)
    this.advertised = resolved.advertised
    this.logger = options.logger
    this.syncEnabled = options.sync?.enabled === true
    this.mesh = new MeshServer(resolved.server)
    // Mesa listened from the constructor; a failure to listen is logged by meshkit, and ready() rejects with it.
    this.mesh.ready().catch(() => undefined)
    this.mesh.onConnection((connection) => this.connected(connection))
    this.mesh.onDisconnection((connection) => this.disconnected(connection))
    this.mesh.onMessage('*', (ctx) => {
      const client = this.clientFor(ctx.connection as Connection)
      const message = messageOf(ctx.type, ctx.data)
      this.safeEmit(client, 'message', message)
      this.safeEmit(this, 'message', message, client)
    })
    this.mesh.onAuthenticate((data, connection) => this.clientFor(connection).runAuthentication(data))
  }

  /** Resolves once listening (Mesa had no such call: it listened from the constructor). */
  ready(): Promise<void> {
    return this.mesh.ready()
  }

  /** The port listened on (Mesa's `port`; the real one when configured with 0). */
  get port(): number {
    return this.mesh.port
  }

  /**
   * Sends to every connection of these authenticated users on any instance; `'*'` (the
   * default) is everyone (only the authenticated with `authentication.required`), and
   * `excluding` applies to `'*'` as well (Mesa ignored it there).
   */
  send(message: Message<unknown>, recipients: readonly (string | number)[] = ['*'], excluding: readonly (string | number)[] = []): Promise<void> {
    const type = wireType(message)
    if (!message.options.sync && this.syncEnabled) throw new TypeError('Message option sync: false is not supported by mesa.send on meshkit (see docs/migrating.md)')
    return this.mesh.send(type, message.data, recipients, excluding)
  }

  /** Registers Mesa middleware; returns a function that removes it (Mesa returned nothing). */
  use(middleware: Middleware<this>): () => void {
    if (typeof middleware !== 'function') throw new TypeError('mesa.use expects a function (server) => handlers')
    const { hooks, unsupported } = toHooks(middleware(this), (connection) => this.clientFor(connection))
    for (const name of unsupported) this.warn(`middleware handler ${name} is never called on meshkit`)
    return this.mesh.use(hooks)
  }

  /** Closes every connection (1001: clients that reconnect will) and the server. */
  close(): Promise<void> {
    return this.mesh.close()
  }

  /** The Mesa client of a connection, made on first use. */
  clientFor(connection: Connection): ServerClient {
    let client = this.clients.get(connection.id)
    if (client === undefined) {
      client = new ServerClient(connection)
      // A closed connection's client would never be removed again.
      if (connection.isOpen) this.clients.set(connection.id, client)
    }
    return client
  }

  private connected(connection: Connection): void {
    const client = this.clientFor(connection)
    // Clients assume Mesa's defaults (no reconnect, no stored messages) until told otherwise.
    if (this.advertised.reconnectInterval !== undefined || this.advertised.storeMessages) connection.send(CONFIG_EVENT, this.advertised)
    this.safeEmit(this, 'connection', client)
  }

  private disconnected(connection: Connection): void {
    const client = this.clientFor(connection)
    this.clients.delete(connection.id)
    this.safeEmit(client, 'disconnect', connection.closeCode, connection.closeReason)
    this.safeEmit(this, 'disconnection', connection.closeCode, connection.closeReason, client)
  }

  /** An application listener that throws is logged, never thrown into meshkit's delivery. */
  private safeEmit(target: EventEmitter, event: string, ...args: unknown[]): void {
    try {
      target.emit(event, ...args)
    } catch (error) {
      this.logger?.error?.(`mesa ${event} listener failed`, { error })
    }
  }

  private warn(message: string): void {
    this.logger?.warn?.(message)
  }
}
