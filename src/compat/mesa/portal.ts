import { EventEmitter } from 'node:events'
import { randomUUID } from 'node:crypto'
import { Portal as MeshPortal, type Logger, type PortalContext } from '../../server/index.js'
import { Message } from './message.js'

/** Mesa's Portal configuration. */
export interface PortalOptions {
  /** The servers' namespace. @default 'meshkit' */
  namespace?: string
  /** Report start and close through `logger.info` (meshkit never writes to the console). @default false */
  verbose?: boolean
  /**
   * Receive every event, not a share: this portal gets a portal group of its own
   * (meshkit gives every group every event). Each such portal leaves a consumer group
   * behind in Redis when it closes. @default false
   */
  reportAllEvents?: boolean
  /** Where the portal reports faults (not in Mesa). @default silent */
  logger?: Logger
}

const portalKeys = ['namespace', 'verbose', 'reportAllEvents', 'logger']

/**
 * Mesa's Portal on meshkit's: `connection`, `authentication`, `message` and
 * `disconnection` events with Mesa's arguments (the client id is the authenticated
 * user's id). Each listener also gets meshkit's portal context last, whose
 * `connection.send` replies to the client wherever it is.
 */
export class Portal extends EventEmitter {
  /** The meshkit portal doing the work. */
  readonly mesh: MeshPortal
  private readonly logger: Logger | undefined
  private readonly verbose: boolean

  constructor(redis: ConstructorParameters<typeof MeshPortal>[0], options: PortalOptions = {}) {
    super()
    for (const key of Object.keys(options)) if (!portalKeys.includes(key)) throw new TypeError(`Unknown option "${key}"`)
    this.logger = options.logger
    this.verbose = options.verbose === true
    this.mesh = new MeshPortal(redis, {
      ...(options.namespace !== undefined && { namespace: options.namespace }),
      ...(options.logger !== undefined && { logger: options.logger }),
      group: options.reportAllEvents === true ? `mesa-all-${randomUUID()}` : 'default',
    })
    this.mesh.onConnection((ctx) => this.forward('connection', ctx, ctx.connection.userId))
    this.mesh.onAuthentication((ctx) => this.forward('authentication', ctx, ctx.connection.userId))
    this.mesh.onMessage('*', (ctx) => {
      const message = new Message(0, ctx.data, ctx.type)
      message.clientId = ctx.connection.userId
      this.forward('message', ctx, message, ctx.connection.userId)
    })
    this.mesh.onDisconnection((ctx) => this.forward('disconnection', ctx, ctx.connection.userId))
    // Mesa's portal started from its constructor; ready() gives the outcome to those who wait for it.
    this.ready().catch((error: unknown) => {
      if (this.listenerCount('error') > 0) this.emit('error', error)
    })
  }

  /** Resolves once the portal reads events (rejects with `UNAVAILABLE` without Redis). */
  async ready(): Promise<void> {
    await this.mesh.ready()
    if (this.verbose) this.logger?.info?.('portal ready')
  }

  /** Leaves the pool of portals and closes its Redis connections. */
  async close(): Promise<void> {
    await this.mesh.close()
    if (this.verbose) this.logger?.info?.('portal closed')
  }

  /** A listener that throws is reported by meshkit's portal (logged; the event is still acknowledged). */
  private forward(event: string, ctx: PortalContext, ...args: unknown[]): void {
    this.emit(event, ...args, ctx)
  }
}
