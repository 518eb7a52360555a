/**
 * The benchmarks' one statistics module: how calls are timed, how sides are
 * interleaved, and how a row is decided. Every bench module uses it, so every
 * row means the same thing:
 *
 * - A row compares sides measured in the same rounds. Each round gives one
 *   ratio (or one value, for the absolute p99 rows); the row reports the
 *   **median of the per-round figures** and their **spread** (min–max), and
 *   passes or fails on the median. One noisy round moves the spread, not the
 *   verdict. At least three rounds (MIN_ROUNDS).
 * - Within a round, sides alternate call by call (`interleave`), or burst by
 *   burst at a shared concurrency (`bursts`); the order of the sides rotates
 *   from round to round, so neither always runs first after a pause.
 *
 * Use from another module:
 *
 * ```ts
 * import { interleave, ratioRow } from "./stats.js";
 * const s = await interleave(rounds, [
 *   { name: "rls", run: () => rlsPage() },
 *   { name: "explicit", run: () => explicitPage() },
 * ], { calls: 300, warmup: 50 });
 * rows.push(ratioRow({ benchmark: "…", numerator: s.rls, denominator: s.explicit, target: { atLeast: 0.85 } }));
 * ```
 */

/** One side's timings in one round. */
export interface Sample {
  /** Each call's latency. */
  ms: number[];
  /** Wall time the calls took (for throughput: count ÷ totalMs). */
  totalMs: number;
  count: number;
}

export const emptySample = (): Sample => ({ ms: [], totalMs: 0, count: 0 });

/** Fewest rounds a row may be decided on. */
export const MIN_ROUNDS = 3;

/** The p-th percentile (nearest rank) of `xs`; NaN when empty. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** The median of `xs` (the mean of the middle two for an even count); NaN when empty. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Calls per second. */
export const throughput = (s: Sample): number => (s.count / s.totalMs) * 1000;

/** Rounds pooled into one sample (for the detail line's absolute figures). */
export function pooled(samples: readonly Sample[]): Sample {
  return { ms: samples.flatMap((s) => s.ms), totalMs: samples.reduce((t, s) => t + s.totalMs, 0), count: samples.reduce((t, s) => t + s.count, 0) };
}

/** Times one call into `into`. */
export async function timed<T>(into: Sample, fn: () => Promise<T>): Promise<T> {
  const t = performance.now();
  const result = await fn();
  const ms = performance.now() - t;
  into.ms.push(ms);
  into.totalMs += ms;
  into.count++;
  return result;
}

/** `n` calls of `fn` by `concurrency` concurrent callers; throughput is over the wall time of all of them. */
export async function timeConcurrent(n: number, concurrency: number, fn: () => Promise<unknown>, into: Sample): Promise<void> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        const t = performance.now();
        await fn();
        into.ms.push(performance.now() - t);
      }
    }),
  );
  into.totalMs += performance.now() - started;
  into.count += n;
}

/** A contender: a name and one call of what it measures. */
export interface Side {
  name: string;
  run: () => Promise<unknown>;
  /** `bursts` only: run before each of this side's bursts, untimed (switch a trigger on, sign the burst's requests…). */
  before?: () => Promise<void>;
}

/** Per side name, one Sample per round. */
export type RoundSamples = Record<string, Sample[]>;

/** The sides in the order round `round` runs them: rotated by one each round. */
function rotation<T>(sides: readonly T[], round: number): T[] {
  const k = round % sides.length;
  return [...sides.slice(k), ...sides.slice(0, k)];
}

function check(rounds: number, sides: readonly Side[]) {
  if (rounds < MIN_ROUNDS) throw new Error(`a row needs at least ${MIN_ROUNDS} rounds, got ${rounds}`);
  if (new Set(sides.map((s) => s.name)).size !== sides.length) throw new Error("side names must be distinct");
}

/**
 * One call at a time: in each of `rounds` rounds, `calls` calls of every side,
 * alternating call by call (a, b, c, a, b, c, …) so drift and noise land on all
 * sides alike; the order rotates each round. `warmup` calls of each side first,
 * not recorded. Throughput of a side is calls ÷ the time its own calls took.
 */
export async function interleave(rounds: number, sides: readonly Side[], options: { calls: number; warmup?: number }): Promise<RoundSamples> {
  check(rounds, sides);
  for (let i = 0; i < (options.warmup ?? 0); i++) for (const side of sides) await side.run();
  const out: RoundSamples = Object.fromEntries(sides.map((s) => [s.name, [] as Sample[]]));
  for (let round = 0; round < rounds; round++) {
    const order = rotation(sides, round);
    const samples = order.map(() => emptySample());
    for (let i = 0; i < options.calls; i++) {
      for (let k = 0; k < order.length; k++) await timed(samples[k]!, order[k]!.run);
    }
    order.forEach((side, k) => out[side.name]!.push(samples[k]!));
  }
  return out;
}

/**
 * At a shared concurrency: in each round, a burst of `requests` calls of each
 * side in turn (throughput over the burst's wall time); the order rotates each
 * round. `warmup` calls of each side first, not recorded. A side's `before`
 * runs before each of its bursts (warm-up included), outside the clock.
 */
export async function bursts(rounds: number, sides: readonly Side[], options: { requests: number; concurrency: number; warmup?: number }): Promise<RoundSamples> {
  check(rounds, sides);
  if (options.warmup) {
    for (const side of sides) {
      await side.before?.();
      await timeConcurrent(options.warmup, options.concurrency, side.run, emptySample());
    }
  }
  const out: RoundSamples = Object.fromEntries(sides.map((s) => [s.name, [] as Sample[]]));
  for (let round = 0; round < rounds; round++) {
    for (const side of rotation(sides, round)) {
      await side.before?.();
      const sample = emptySample();
      await timeConcurrent(options.requests, options.concurrency, side.run, sample);
      out[side.name]!.push(sample);
    }
  }
  return out;
}

/** What a row's median must meet; "report" rows always pass. */
export type Target = { atLeast: number } | { atMost: number } | "report";

export const targetText = (t: Target, unit = ""): string => (t === "report" ? "report" : "atLeast" in t ? `≥ ${t.atLeast}${unit}` : `≤ ${t.atMost}${unit}`);
export const meets = (value: number, t: Target): boolean => (t === "report" ? true : "atLeast" in t ? value >= t.atLeast : value <= t.atMost);

/** One line of the results table. */
export interface Row {
  benchmark: string;
  /** The median of the per-round figures. */
  value: number;
  /** "ratio", or the unit of an absolute row ("ms"). */
  unit: string;
  /** Lowest and highest per-round figure. */
  spread: [number, number];
  perRound: number[];
  target: string;
  pass: boolean;
  detail: string;
}

/** What can be read off a side's sample. */
export type Metric = "throughput" | "p50" | "p99";

export const metricOf = (s: Sample, m: Metric): number => (m === "throughput" ? throughput(s) : percentile(s.ms, m === "p50" ? 50 : 99));

/** `name 1234/s p50 0.61 ms p99 1.20 ms`, over all rounds pooled (throughput: the median round's). */
export function describe(name: string, samples: readonly Sample[]): string {
  const all = pooled(samples);
  const rate = median(samples.map(throughput));
  return `${name} ${rate.toFixed(0)}/s p50 ${fmtMs(percentile(all.ms, 50))} p99 ${fmtMs(percentile(all.ms, 99))}`;
}

export const fmtMs = (ms: number): string => `${ms < 1 ? ms.toFixed(3) : ms.toFixed(2)} ms`;

function decided(benchmark: string, perRound: number[], unit: string, target: Target, detail: string, targetUnit = ""): Row {
  if (perRound.length < MIN_ROUNDS) throw new Error(`${benchmark}: ${perRound.length} rounds, at least ${MIN_ROUNDS} needed`);
  const value = median(perRound);
  return { benchmark, value, unit, spread: [Math.min(...perRound), Math.max(...perRound)], perRound, target: targetText(target, targetUnit), pass: meets(value, target), detail };
}

/**
 * A ratio row: per round, `metric(numerator) ÷ metric(denominator)` (default
 * throughput, so higher is better for the numerator); the row is the median of
 * those ratios, with their min–max, decided against `target`.
 */
export function ratioRow(options: {
  benchmark: string;
  numerator: readonly Sample[];
  denominator: readonly Sample[];
  target: Target;
  metric?: Metric;
  /** Names for the detail line (default "a" and "b"). */
  names?: [string, string];
  /** Appended to the detail line. */
  note?: string;
}): Row {
  const { numerator, denominator, metric = "throughput", names = ["a", "b"] } = options;
  if (numerator.length !== denominator.length) throw new Error(`${options.benchmark}: sides ran a different number of rounds`);
  const perRound = numerator.map((n, i) => metricOf(n, metric) / metricOf(denominator[i]!, metric));
  // Beside a throughput ratio, the same comparison of typical calls (p50 b ÷ p50 a, higher is better
  // alike): a mean is moved by other processes' preemptions, a median much less.
  const typical = metric === "throughput" ? `; p50 ratio ${median(numerator.map((n, i) => percentile(denominator[i]!.ms, 50) / percentile(n.ms, 50))).toFixed(3)}` : "";
  const detail = `${describe(names[0], numerator)}; ${describe(names[1], denominator)}${typical}${options.note ? `; ${options.note}` : ""}`;
  return decided(options.benchmark, perRound, "ratio", options.target, detail);
}

/** A row from figures already computed per round (a ratio of rates that are not Samples, say). */
export function figuresRow(options: { benchmark: string; perRound: number[]; unit?: string; target: Target; detail: string }): Row {
  const unit = options.unit ?? "ratio";
  return decided(options.benchmark, options.perRound, unit, options.target, options.detail, unit === "ratio" ? "" : ` ${unit}`);
}

/** An absolute latency row: per round, the side's p50 or p99 in ms; decided on their median. */
export function latencyRow(options: { benchmark: string; samples: readonly Sample[]; metric: "p50" | "p99"; target: Target; note?: string; name?: string }): Row {
  const perRound = options.samples.map((s) => metricOf(s, options.metric));
  const detail = `${describe(options.name ?? "calls", options.samples)}${options.note ? `; ${options.note}` : ""}`;
  return decided(options.benchmark, perRound, "ms", options.target, detail, " ms");
}

const fmtValue = (v: number, unit: string) => (unit === "ratio" ? v.toFixed(3) : `${v.toFixed(2)} ${unit}`);

/** The results table as printed (and as bench/README.md copies it). */
export function printRows(rows: readonly Row[]): void {
  console.table(
    rows.map((r) => ({
      benchmark: r.benchmark,
      median: fmtValue(r.value, r.unit),
      "spread (min–max)": `${fmtValue(r.spread[0], r.unit)}–${fmtValue(r.spread[1], r.unit)}`,
      rounds: r.perRound.length,
      target: r.target,
      pass: r.pass ? "yes" : "NO",
    })),
  );
  for (const r of rows) console.log(`- ${r.benchmark}: ${r.detail}`);
}

/** The same table in Markdown, for bench/README.md. */
export function markdownTable(rows: readonly Row[]): string {
  const lines = ["| Row | Median | Spread (min–max) | Rounds | Target | Pass |", "|---|---|---|---|---|---|"];
  for (const r of rows) {
    lines.push(
      `| ${r.benchmark} | ${fmtValue(r.value, r.unit)} | ${fmtValue(r.spread[0], r.unit)}–${fmtValue(r.spread[1], r.unit)} | ${r.perRound.length} | ${r.target} | ${r.pass ? "yes" : "**no**"} |`,
    );
  }
  return lines.join("\n");
}
