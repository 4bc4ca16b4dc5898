/**
 * `callm jobs --cluster postgres://...`: the cluster's jobs and their progress (lines in all, done,
 * failed, workers alive), newest first, from the tables `callm run --cluster` keeps.
 *
 * @since 0.3.0
 */
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as FlagKinds from "./FlagKinds.ts"
import * as Handler from "./Handler.ts"

/**
 * The flags of `callm jobs`.
 *
 * @since 0.3.0
 * @category flags
 */
export const flags = {
  cluster: Flag.String("cluster").pipe(
    Flag.withDescription("PostgreSQL URL of the cluster (as given to callm run --cluster)")
  ),
  job: FlagKinds.optionalText("job", "Only this job"),
  json: FlagKinds.off("json", "One JSON object a job")
}

/**
 * The parsed flags of `callm jobs`.
 *
 * @since 0.3.0
 * @category flags
 */
export type Flags = Command.Command.Config.Infer<typeof flags>

/**
 * The `jobs` command. Its handler (`Jobs.ts`) and the PostgreSQL client are loaded when it runs.
 *
 * @since 0.3.0
 * @category commands
 */
export const command = Handler.command("jobs", flags, () => import("./Jobs.ts")).pipe(
  Command.withDescription(
    "List the jobs of a cluster (callm run --cluster) with their progress: lines, done, failed, workers alive/ever"
  )
)
