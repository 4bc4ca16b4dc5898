/**
 * Every scenario, in the order the suite runs them.
 */
import type { Scenario } from "../Scenario.ts"
import { scenario as cache } from "./cache.ts"
import { scenario as clientOverhead } from "./clientOverhead.ts"
import { scenario as embeddings } from "./embeddings.ts"
import { scenario as gatewayOverhead } from "./gatewayOverhead.ts"
import { scenario as grpc } from "./grpc.ts"
import { scenario as memory } from "./memory.ts"
import { scenario as mockCapacity } from "./mockCapacity.ts"
import { scenario as modes } from "./modes.ts"
import { scenario as overload } from "./overload.ts"
import { scenario as redisLoss } from "./redisLoss.ts"
import { scenario as runnerMemory } from "./runnerMemory.ts"
import { scenario as startup } from "./startup.ts"
import { scenario as streaming } from "./streaming.ts"

export const scenarios: ReadonlyArray<Scenario> = [
  mockCapacity,
  embeddings,
  grpc,
  modes,
  clientOverhead,
  gatewayOverhead,
  overload,
  redisLoss,
  streaming,
  cache,
  memory,
  runnerMemory,
  startup
]
