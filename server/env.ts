/**
 * Imported first by every entry point: Grafast reads GRAPHILE_ENV when it loads,
 * so it must be set from NODE_ENV before anything imports PostGraphile.
 */
process.env.GRAPHILE_ENV ??= process.env.NODE_ENV === "production" ? "production" : "development";
