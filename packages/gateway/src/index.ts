/**
 * @callm/gateway: an OpenAI-compatible LLM gateway on Node's HTTP server (chat on a plain handler,
 * the other routes on Effect's router), with routes, auth, load shedding, streaming and callm's plugin
 * stack. `callm serve` runs it.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Admission from "./Admission.ts"
/** @since 0.1.0 */
export * as Gateway from "./Gateway.ts"
/** @since 0.1.0 */
export * as GatewayConfig from "./GatewayConfig.ts"
/** @since 0.1.0 */
export * as GatewayError from "./GatewayError.ts"
/** @since 0.2.0 */
export * as Grpc from "./Grpc.ts"
