/**
 * Spans to an OpenTelemetry collector when the standard variable `OTEL_EXPORTER_OTLP_ENDPOINT` names
 * one, for `run` and `serve` (the edge of the app is where the environment is read). The exporter is
 * loaded only then, so a command without it loads none of `@callm/observability`.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * The tracer layer for the environment: empty when no endpoint is set.
 *
 * @since 0.3.0
 * @category layers
 */
export const fromEnvironment = (env: NodeJS.ProcessEnv = process.env) => {
  const url = env.OTEL_EXPORTER_OTLP_ENDPOINT
  return url === undefined || url === ""
    ? Layer.empty
    : Layer.unwrap(
        Effect.map(
          Effect.promise(() => import("@callm/observability")),
          ({ Tracing }) => Tracing.layerOtlp({ url })
        )
      )
}
