/**
 * A connection's state that stays at its defaults for most connections all their life
 * (a drain, a slow reader, client messages behind async middleware, an authentication,
 * the close): apart from the connection, so that each idle one carries a single field
 * for it instead of thirteen (about 100 bytes).
 */
export class SeldomState {
  closingTimer: ReturnType<typeof setTimeout> | undefined = undefined
  /** Made on the first read of `signal`: connections whose handlers never look cost nothing. */
  abortController: AbortController | undefined = undefined
  slowConsumer = false
  messageTail: Promise<void> | undefined = undefined
  waitingMessages = 0
  messageRefused = false
  closeCode: number | undefined = undefined
  closeReason: string | undefined = undefined
  draining = false
  onIdle: (() => void) | undefined = undefined
  authenticating = false
  authRefused = false
  claimedUserId: string | undefined = undefined
}
