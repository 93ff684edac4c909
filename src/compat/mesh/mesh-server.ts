import { MeshServer as CoreMeshServer, type MeshServerOptions as CoreMeshServerOptions } from '../../server/index.js'

/**
 * Mesh's server options: meshkit's, which already carry Mesh's names (`redisOptions`,
 * `pingInterval`, `latencyInterval`, `maxMissedPongs`), with one default changed.
 */
export interface MeshServerOptions extends CoreMeshServerOptions {
  /**
   * Send the message of a thrown `Error` to the client, as Mesh did: its client
   * resolved `{ error: "Something went wrong" }`. meshkit's own server hides it.
   * @default true
   */
  exposeErrors?: boolean
}

/** The defaults this facade sets on top of meshkit's `serverDefaults`. */
export const meshServerDefaults = {
  exposeErrors: true,
} as const satisfies Partial<MeshServerOptions>

/**
 * Mesh's `MeshServer` on meshkit: `import { MeshServer } from 'meshkit/mesh/server'`.
 * It is meshkit's server (same wire protocol, same Redis layout) with Mesh's error
 * exposure by default and the method names Mesh's README used.
 */
export class MeshServer extends CoreMeshServer {
  constructor(options: MeshServerOptions = {}) {
    super({ ...meshServerDefaults, ...options })
  }

  /**
   * Mesh's name for `writeChannel`: publishes to every subscriber on every instance
   * and keeps the newest `history` messages (0: none).
   */
  async publishToChannel(channel: string, message: unknown, history = 0): Promise<void> {
    await this.writeChannel(channel, message, history)
  }
}
