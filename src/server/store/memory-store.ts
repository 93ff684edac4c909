import type { MeshStore } from './types.js'

/** State for a single instance, kept in this process. The default when no `redis` option is given. */
export class MemoryStore implements MeshStore {
  private readonly owners = new Map<string, string>()
  private readonly byInstance = new Map<string, Set<string>>()

  async addConnection(connectionId: string, instanceId: string): Promise<void> {
    await this.removeConnection(connectionId)
    this.owners.set(connectionId, instanceId)
    let set = this.byInstance.get(instanceId)
    if (!set) this.byInstance.set(instanceId, (set = new Set()))
    set.add(connectionId)
  }

  async removeConnection(connectionId: string): Promise<void> {
    const instanceId = this.owners.get(connectionId)
    if (instanceId === undefined) return
    this.owners.delete(connectionId)
    const set = this.byInstance.get(instanceId)
    set?.delete(connectionId)
    if (set?.size === 0) this.byInstance.delete(instanceId)
  }

  async getConnectionInstance(connectionId: string): Promise<string | undefined> {
    return this.owners.get(connectionId)
  }

  async getInstanceConnections(instanceId: string): Promise<string[]> {
    return [...(this.byInstance.get(instanceId) ?? [])]
  }

  async close(): Promise<void> {
    this.owners.clear()
    this.byInstance.clear()
  }
}
