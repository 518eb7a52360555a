/** Every Open API route and schema, from the modules that declare them (the router and the OpenAPI document read this). */
import { identityRoutes, identitySchemas, type JsonSchema, type Route } from "./resources.js";
import { syncRoutes, syncSchemas } from "./sync.js";

export const routes: Route[] = [...identityRoutes, ...syncRoutes];
export const schemas: Record<string, JsonSchema> = { ...identitySchemas, ...syncSchemas };
