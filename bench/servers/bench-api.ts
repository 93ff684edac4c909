// The API of the validation bench (workload 10): the RPC workload's `echo` payload,
// `{ user, action, values, at }`, as a zod and as a valibot schema. Loaded only by a
// server started with BENCH_API, so that the untyped server is the one of workload 1.
import * as v from 'valibot'
import { z } from 'zod'
import { defineApi } from 'meshkit'

export const benchApis = {
  zod: defineApi({
    commands: {
      echo: { payload: z.object({ user: z.string(), action: z.string(), values: z.array(z.number()), at: z.number() }) },
    },
  }),
  valibot: defineApi({
    commands: {
      echo: { payload: v.object({ user: v.string(), action: v.string(), values: v.array(v.number()), at: v.number() }) },
    },
  }),
}
