/**
 * bench/stats.ts decides every benchmark row: a row is the median of its
 * per-round figures, so one noisy round moves the spread but not the verdict;
 * sides alternate call by call and the order rotates each round. Pure
 * arithmetic and call order, no timing asserted.
 */
import { bursts, figuresRow, interleave, latencyRow, median, MIN_ROUNDS, percentile, ratioRow, type Sample } from "../../bench/stats.js";

const sample = (count: number, totalMs: number, ms: number[] = []): Sample => ({ count, totalMs, ms });

describe("bench statistics", () => {
  test("median and nearest-rank percentile", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(Number.isNaN(median([]))).toBe(true);
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(xs, 50)).toBe(50);
    expect(percentile(xs, 99)).toBe(99);
    expect(percentile(xs, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
  });

  test("a ratio row is decided by the median round, one outlier round only widens the spread", () => {
    // Throughput per round: numerator 900/s, 900/s, 100/s (a noisy round); denominator 1000/s throughout.
    const row = ratioRow({
      benchmark: "x",
      numerator: [sample(900, 1000), sample(900, 1000), sample(100, 1000)],
      denominator: [sample(1000, 1000), sample(1000, 1000), sample(1000, 1000)],
      target: { atLeast: 0.85 },
    });
    expect(row.value).toBeCloseTo(0.9);
    expect(row.spread[0]).toBeCloseTo(0.1);
    expect(row.spread[1]).toBeCloseTo(0.9);
    expect(row.pass).toBe(true);
    expect(row.target).toBe("≥ 0.85");
    expect(row.perRound).toHaveLength(3);
  });

  test("rows refuse fewer than three rounds, and sides with different round counts", () => {
    expect(MIN_ROUNDS).toBe(3);
    expect(() => figuresRow({ benchmark: "x", perRound: [1, 1], target: "report", detail: "" })).toThrow(/at least 3/);
    expect(() => ratioRow({ benchmark: "x", numerator: [sample(1, 1)], denominator: [sample(1, 1), sample(1, 1)], target: "report" })).toThrow(/different number of rounds/);
  });

  test("latency and ratio targets: at most and at least, report always passes", () => {
    const slow = latencyRow({ benchmark: "p99", samples: [sample(3, 3, [1, 2, 6]), sample(3, 3, [1, 2, 7]), sample(3, 3, [1, 2, 4])], metric: "p99", target: { atMost: 5 } });
    expect(slow.value).toBe(6);
    expect(slow.pass).toBe(false);
    expect(slow.target).toBe("≤ 5 ms");
    const p50 = ratioRow({
      benchmark: "scale",
      numerator: [sample(1, 1, [2]), sample(1, 1, [2]), sample(1, 1, [2])],
      denominator: [sample(1, 1, [1]), sample(1, 1, [1]), sample(1, 1, [1])],
      metric: "p50",
      target: { atMost: 1.5 },
    });
    expect(p50.value).toBe(2);
    expect(p50.pass).toBe(false);
    expect(figuresRow({ benchmark: "r", perRound: [0.1, 0.1, 0.1], target: "report", detail: "" }).pass).toBe(true);
  });

  test("interleave alternates sides call by call, rotates the order each round, and keeps one sample per round", async () => {
    const calls: string[] = [];
    const side = (name: string) => ({ name, run: async () => void calls.push(name) });
    const s = await interleave(3, [side("a"), side("b"), side("c")], { calls: 2, warmup: 1 });
    expect(calls).toEqual(["a", "b", "c", ...["a", "b", "c", "a", "b", "c"], ...["b", "c", "a", "b", "c", "a"], ...["c", "a", "b", "c", "a", "b"]]);
    for (const name of ["a", "b", "c"]) {
      expect(s[name]).toHaveLength(3);
      for (const round of s[name]!) expect(round.count).toBe(2);
    }
    await expect(interleave(2, [side("a")], { calls: 1 })).rejects.toThrow(/at least 3 rounds/);
    await expect(interleave(3, [side("a"), side("a")], { calls: 1 })).rejects.toThrow(/distinct/);
  });

  test("bursts run each side's before hook ahead of its burst and rotate the order", async () => {
    const log: string[] = [];
    const side = (name: string) => ({ name, run: async () => void log.push(name), before: async () => void log.push(`before ${name}`) });
    const s = await bursts(3, [side("a"), side("b")], { requests: 2, concurrency: 2 });
    expect(log).toEqual(["before a", "a", "a", "before b", "b", "b", "before b", "b", "b", "before a", "a", "a", "before a", "a", "a", "before b", "b", "b"]);
    expect(s.a!.map((x) => x.count)).toEqual([2, 2, 2]);
  });
});
