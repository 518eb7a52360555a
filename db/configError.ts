/**
 * A setting that is missing or invalid, its message naming the variable. Here,
 * below server/ and worker/, because both server/config.ts (reading the
 * environment) and db/database.ts (refusing a DATABASE_URL that does not log in
 * as the owner) throw it; the entry points print its message without a stack.
 */
export class ConfigError extends Error {
  constructor(variable: string, problem: string) {
    super(`Invalid configuration: ${variable} ${problem}`);
    this.name = "ConfigError";
  }
}
