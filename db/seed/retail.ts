/**
 * The retail part of `npx authhub seed demo --stores N --orders M` (issue 16):
 * stores (the identity seed's store-a and store-b, and more below both
 * sellers, in different time zones and currencies), each with products and
 * their variants, stock, customers, and orders with lines over the last 90
 * days, in realistic proportions (a few large stores and many small ones;
 * mostly paid and fulfilled orders; one to five lines an order, three on
 * average). Set-based SQL throughout, through the tables' own triggers and
 * audit, a bounded number of rows per statement: a million orders with three
 * million lines took 249 s here (two cores, load average 3–5 from other work).
 *
 * Deterministic and idempotent: every row has a natural key made from its
 * position (store code `shop-0007`, product `P-0007-0042`, order
 * `O-0007-000123`), values come from a hash of that position, and rows that
 * exist are left as they are; a rerun with larger sizes adds what is missing.
 * The daily rollups are folded at the end, so they answer at once.
 */
import type pg from "pg";

type Queryable = Pick<pg.PoolClient, "query">;

export interface RetailSeedOptions {
  /** How many stores (at least the identity seed's two). */
  stores: number;
  /** How many orders in all, spread over the stores (a few large, most small). */
  orders: number;
  /** Products per store. */
  productsPerStore?: number;
}

export interface RetailSeedCounts {
  /** Organizations made for stores beyond the identity seed's two. */
  organizations: number;
  stores: number;
  products: number;
  variants: number;
  customers: number;
  orders: number;
  lines: number;
}

/** Time zones and currencies the stores cycle through. */
const LOCALES: readonly (readonly [string, string])[] = [
  ["Europe/Berlin", "EUR"],
  ["America/New_York", "USD"],
  ["Asia/Tokyo", "JPY"],
  ["Europe/London", "GBP"],
  ["Asia/Seoul", "KRW"],
  ["Australia/Sydney", "AUD"],
];

/** Orders written per statement: bounded transition tables for the triggers and the audit. */
const ORDERS_PER_STATEMENT = 50_000;

/**
 * A pseudo-random number in [0, 1) from a key, in SQL: the same key gives the
 * same number on every run and every server.
 */
const rnd = (key: string) => `(('x' || substr(md5(${key}), 1, 8))::bit(32)::bigint / 4294967296.0)`;

export async function seedRetail(client: Queryable, tenantId: string, options: RetailSeedOptions): Promise<RetailSeedCounts> {
  const storeCount = Math.max(2, Math.floor(options.stores));
  const orderCount = Math.max(0, Math.floor(options.orders));
  const productsPerStore = Math.max(1, Math.floor(options.productsPerStore ?? 40));
  const before = await counts(client, tenantId);
  await client.query("select set_config('jwt.claims.tenant_id', $1, true)", [tenantId]);
  // Large estimates would JIT-compile every batch and every trigger statement: more time than it saves here.
  await client.query("set local jit = off");

  // Stores: store-a and store-b of seller-one, then shop-0003… alternately below seller-one and seller-two.
  await client.query(
    `insert into authhub.organizations (tenant_id, slug, name, parent_id)
     select $1, 'shop-' || lpad(g::text, 4, '0'), 'Shop ' || g,
            (select o.id from authhub.organizations o where o.tenant_id = $1 and o.slug = case when g % 2 = 0 then 'seller-one' else 'seller-two' end)
     from generate_series(3, $2::int) g
     on conflict (tenant_id, slug) do nothing`,
    [tenantId, storeCount],
  );
  await client.query(
    `insert into retail.stores (tenant_id, id, name, timezone, currency)
     select o.tenant_id, o.id, o.name, l.tz, l.cur
     from authhub.organizations o
     cross join lateral (select (array[${LOCALES.map(([tz]) => `'${tz}'`).join(", ")}])[1 + (abs(hashtext(o.slug)) % ${LOCALES.length})] as tz,
                                (array[${LOCALES.map(([, cur]) => `'${cur}'`).join(", ")}])[1 + (abs(hashtext(o.slug)) % ${LOCALES.length})] as cur) l
     where o.tenant_id = $1 and (o.slug in ('store-a', 'store-b') or o.slug like 'shop-%')
     on conflict (tenant_id, id) do nothing`,
    [tenantId],
  );
  // The stores, numbered for the keys below (1 and 2: store-a, store-b).
  await client.query(
    `create temp table seed_stores on commit drop as
     select s.id, s.currency, row_number() over (order by case s.code when 'store-a' then 0 when 'store-b' then 1 else 2 end, s.code)::int as n
     from retail.stores s where s.tenant_id = $1::uuid and (s.code in ('store-a', 'store-b') or s.code like 'shop-%')`,
    [tenantId],
  );

  // Products with two variants each, priced 1 to ~100 in the store's currency (JPY and KRW have no minor unit), and their stock.
  await client.query(
    `insert into retail.products (tenant_id, store_id, external_id, title, status, published, attributes)
     select $1, s.id, 'P-' || lpad(s.n::text, 4, '0') || '-' || lpad(p::text, 4, '0'), 'Product ' || p,
            case when ${rnd("s.n || '/' || p || '/status'")} < 0.85 then 'active' when ${rnd("s.n || '/' || p || '/status'")} < 0.95 then 'draft' else 'archived' end,
            ${rnd("s.n || '/' || p || '/published'")} < 0.9,
            jsonb_build_object('color', (array['red', 'green', 'blue', 'black'])[1 + (p % 4)])
     from seed_stores s, generate_series(1, $2::int) p
     on conflict (tenant_id, store_id, external_id) do nothing`,
    [tenantId, productsPerStore],
  );
  await client.query(
    `insert into retail.variants (tenant_id, store_id, product_id, sku, title, price_minor, currency)
     select p.tenant_id, p.store_id, p.id, 'SKU-' || substr(p.external_id, 3) || '-' || v, case v when 1 then 'Standard' else 'Large' end,
            case when s.currency in ('JPY', 'KRW') then 1 else 100 end * (100 + floor(${rnd("p.external_id || '/' || v")} * 9900))::bigint / 100,
            s.currency
     from retail.products p join seed_stores s on s.id = p.store_id, generate_series(1, 2) v
     where p.tenant_id = $1
     on conflict (tenant_id, store_id, sku) do nothing`,
    [tenantId],
  );
  await client.query(
    `insert into retail.inventory_levels (tenant_id, store_id, sku, on_hand)
     select v.tenant_id, v.store_id, v.sku, floor(${rnd("v.sku || '/stock'")} * 60)::int - 5
     from retail.variants v join seed_stores s on s.id = v.store_id
     where v.tenant_id = $1
     on conflict (tenant_id, store_id, sku, location) do nothing`,
    [tenantId],
  );

  // Orders per store: a Zipf-like share (store n gets weight 1/n), customers one per five orders.
  const { rows: plan } = await client.query<{ id: string; n: number; currency: string; orders: number }>(
    `select s.id, s.n, s.currency, ceil($1::numeric * (1.0 / s.n) / sum(1.0 / s.n) over ())::int as orders from seed_stores s order by s.n`,
    [orderCount],
  );
  const statistics = new Statistics(client);
  let remaining = orderCount;
  for (const store of plan) {
    const orders = Math.min(store.orders, remaining);
    remaining -= orders;
    if (orders <= 0) continue;
    const storeKey = String(store.n).padStart(4, "0");
    const customers = await client.query(
      `insert into retail.customers (tenant_id, store_id, external_id, email, name)
       select $1, $2, 'C-' || $3 || '-' || lpad(c::text, 6, '0'), 'customer' || c || '@shop' || $3 || '.example', 'Customer ' || c
       from generate_series(1, greatest(1, $4::int / 5)) c
       on conflict (tenant_id, store_id, external_id) do nothing`,
      [tenantId, store.id, storeKey, orders],
    );
    await statistics.wrote("retail.customers", customers.rowCount ?? 0);
    for (let from = 1; from <= orders; from += ORDERS_PER_STATEMENT) {
      const to = Math.min(orders, from + ORDERS_PER_STATEMENT - 1);
      await seedOrders(client, statistics, tenantId, store.id, storeKey, from, to, Math.max(1, Math.floor(orders / 5)));
    }
  }
  // Statistics first: the tables were filled in this transaction, and without them
  // the planner takes them for empty (the folding below ran in nested loops for minutes).
  await client.query("analyze retail.orders, retail.order_lines, retail.customers, retail.variants, retail_private.rollup_dirty");
  // The rollups answer at once (the worker would fold the marked days within a second).
  while ((await client.query<{ n: number }>("select retail_private.fold_rollups($1, 5000) as n", [tenantId])).rows[0]!.n > 0);
  const after = await counts(client, tenantId);
  return {
    organizations: after.organizations - before.organizations,
    stores: after.stores - before.stores,
    products: after.products - before.products,
    variants: after.variants - before.variants,
    customers: after.customers - before.customers,
    orders: after.orders - before.orders,
    lines: after.lines - before.lines,
  };
}

/**
 * Orders from..to of a store with their lines, in two statements: the orders
 * with their totals computed here from the lines they will have (so the lines'
 * trigger finds nothing to correct), then the lines. Statuses: 70% paid, 15%
 * fulfilled, 8% pending, 5% cancelled, 2% refunded; placed over the last 90
 * days, more towards the recent ones.
 */
async function seedOrders(client: Queryable, statistics: Statistics, tenantId: string, storeId: string, storeKey: string, from: number, to: number, customers: number) {
  await client.query(
    `create temp table if not exists seed_lines (n int, line_no int, sku text, quantity int, unit_price_minor bigint) on commit drop;
     truncate seed_lines;`,
  );
  // The lines first, in a scratch table: one to five an order (three on average), each a
  // variant of the store's picked by a hash, one to three of it.
  await client.query(
    `with v as (
       select array_agg(sku::text order by sku) as skus, array_agg(price_minor order by sku) as prices, count(*)::int as n
       from retail.variants where tenant_id = $1 and store_id = $2
     )
     insert into seed_lines (n, line_no, sku, quantity, unit_price_minor)
     select o, l, v.skus[p.i], p.quantity, v.prices[p.i]
     from v, generate_series($3::int, $4::int) o
     cross join lateral generate_series(1, 1 + floor(${rnd("$5 || '/' || o || '/lines'")} * 5)::int) l
     cross join lateral (select 1 + floor(${rnd("$5 || '/' || o || '/' || l || '/sku'")} * v.n)::int as i,
                                1 + floor(${rnd("$5 || '/' || o || '/' || l || '/qty'")} * 3)::int as quantity) p
     where v.n > 0`,
    [tenantId, storeId, from, to, storeKey],
  );
  await client.query("analyze seed_lines");
  const written = await client.query(
    `insert into retail.orders (tenant_id, store_id, external_id, number, status, currency, placed_at, customer_id, customer_external_id,
                                subtotal_minor, discount_minor, tax_minor, total_minor)
     select $1, $2, 'O-' || $5 || '-' || lpad(o::text, 7, '0'), $5 || '-' || o,
            case when r < 0.70 then 'paid' when r < 0.85 then 'fulfilled' when r < 0.93 then 'pending' when r < 0.98 then 'cancelled' else 'refunded' end,
            (select s.currency from retail.stores s where s.tenant_id = $1 and s.id = $2),
            now() - make_interval(secs => (90 * 86400 * power(${rnd("$5 || '/' || o || '/at'")}, 2))::int),
            c.id, c.external_id, t.subtotal, 0, 0, t.subtotal
     from generate_series($3::int, $4::int) o
     cross join lateral (select ${rnd("$5 || '/' || o || '/status'")} as r) st
     join (select l.n, sum(l.quantity * l.unit_price_minor)::bigint as subtotal from seed_lines l group by l.n) t on t.n = o
     left join retail.customers c on c.tenant_id = $1 and c.store_id = $2
       and c.external_id = 'C-' || $5 || '-' || lpad((1 + floor(${rnd("$5 || '/' || o || '/customer'")} * $6::int))::int::text, 6, '0')
     on conflict (tenant_id, store_id, external_id) do nothing`,
    [tenantId, storeId, from, to, storeKey, customers],
  );
  // Statistics of the orders just written, before the lines: the foreign key checks and the
  // lines' triggers plan against them (planned on a table taken for empty, each of the
  // lines' key checks scanned every order: minutes for a batch).
  await statistics.wrote("retail.orders", written.rowCount ?? 0);
  await client.query(
    `insert into retail.order_lines (tenant_id, store_id, order_id, line_no, sku, title, quantity, unit_price_minor)
     select $1, $2, o.id, l.line_no, l.sku, null, l.quantity, l.unit_price_minor
     from seed_lines l
     join retail.orders o on o.tenant_id = $1 and o.store_id = $2 and o.external_id = 'O-' || $3 || '-' || lpad(l.n::text, 7, '0')
     on conflict (tenant_id, store_id, order_id, line_no) do nothing`,
    [tenantId, storeId, storeKey],
  );
}

/**
 * ANALYZE of the tables the seed fills, when they need it: the first time a table holds
 * enough rows to matter, then each time it has grown by half since. Plans go wrong when a
 * table goes from empty to large, not when it grows by a batch; once per store instead
 * (2,000 ANALYZEs for a 1,000-store tenant) was most of such a seed's time.
 */
class Statistics {
  private readonly known = new Map<string, { rows: number; since: number }>();
  constructor(private readonly client: Queryable) {}

  async wrote(table: string, rows: number): Promise<void> {
    let state = this.known.get(table);
    if (!state) {
      const { rows: found } = await this.client.query<{ n: number }>("select greatest(reltuples, 0)::float8 as n from pg_class where oid = $1::regclass", [table]);
      state = { rows: found[0]!.n, since: 0 };
      this.known.set(table, state);
    }
    state.since += rows;
    if (state.since < Math.max(1000, state.rows / 2)) return;
    await this.client.query(`analyze ${table}`);
    state.rows += state.since;
    state.since = 0;
  }
}

async function counts(client: Queryable, tenantId: string): Promise<RetailSeedCounts> {
  const { rows } = await client.query<RetailSeedCounts>(
    `select (select count(*)::int from authhub.organizations where tenant_id = $1) as organizations,
            (select count(*)::int from retail.stores where tenant_id = $1) as stores,
            (select count(*)::int from retail.products where tenant_id = $1) as products,
            (select count(*)::int from retail.variants where tenant_id = $1) as variants,
            (select count(*)::int from retail.customers where tenant_id = $1) as customers,
            (select count(*)::int from retail.orders where tenant_id = $1) as orders,
            (select count(*)::int from retail.order_lines where tenant_id = $1) as lines`,
    [tenantId],
  );
  return rows[0]!;
}
