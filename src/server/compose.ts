import type { CommandHandler, MeshContext, Middleware } from './context.js'

/**
 * Runs middleware in order, then the handler. Stays synchronous while every step
 * is, so a command with no I/O costs no promise; the first thenable switches to
 * async for the rest. A throw or rejection anywhere stops the chain.
 */
export function runChain(
  chain: readonly Middleware[],
  handler: CommandHandler,
  ctx: MeshContext,
  start = 0,
): unknown {
  for (let index = start; index < chain.length; index++) {
    const step = chain[index]!(ctx)
    if (isThenable(step)) return step.then(() => runChain(chain, handler, ctx, index + 1))
  }
  return handler(ctx)
}

export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as PromiseLike<unknown>).then === 'function'
}
