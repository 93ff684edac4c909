import type { Connection } from './connection.js'

/** Decides whether a connection may use a channel or room; a throw counts as a refusal. */
export type Guard = (connection: Connection, name: string) => boolean | Promise<boolean>

interface Rule {
  readonly pattern: string | RegExp
  readonly guard: Guard | undefined
}

/**
 * What clients may reach by themselves: names matched by exact strings or regular
 * expressions, each optionally guarded. Every matching rule must allow, so adding a
 * guarded rule can only narrow access. Guards run on every check (also after a
 * reconnect), never cached.
 */
export class Exposure {
  private readonly rules: Rule[] = []

  constructor(private readonly kind: string) {}

  add(pattern: string | RegExp, guard?: Guard): void {
    if (typeof pattern === 'string' ? pattern.length === 0 : !(pattern instanceof RegExp)) {
      throw new TypeError(`A ${this.kind} pattern must be a non-empty string or a RegExp`)
    }
    if (guard !== undefined && typeof guard !== 'function') throw new TypeError(`A ${this.kind} guard must be a function`)
    // A global or sticky RegExp keeps state between test() calls; a copy without those flags does not.
    const stable = typeof pattern === 'string' ? pattern : new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, ''))
    this.rules.push({ pattern: stable, guard })
  }

  /** Whether any rule matches the name, regardless of guards. */
  matches(name: string): boolean {
    return this.rules.some((rule) => matches(rule, name))
  }

  async allows(connection: Connection, name: string): Promise<boolean> {
    const matching = this.rules.filter((rule) => matches(rule, name))
    if (matching.length === 0) return false
    for (const rule of matching) {
      if (!rule.guard) continue
      try {
        if ((await rule.guard(connection, name)) !== true) return false
      } catch {
        return false
      }
    }
    return true
  }
}

function matches(rule: Rule, name: string): boolean {
  return typeof rule.pattern === 'string' ? rule.pattern === name : rule.pattern.test(name)
}
