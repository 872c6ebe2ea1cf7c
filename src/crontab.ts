// Celery's crontab schedule (`celery.schedules.crontab`), pure: fields minute, hour, day_of_week,
// day_of_month, month_of_year, each '*', 'n', 'a-b', '*/n', 'a-b/n' or a comma list of those; day of
// week 0-6 from Sunday (or sun..sat). Times are UTC. When both day_of_month and day_of_week are
// restricted, a day matches if both do (Celery's behaviour, unlike Vixie cron's "either").

import { ConfigError } from './errors.js';

export interface CrontabSpec {
  minute?: string | number;
  hour?: string | number;
  day_of_week?: string | number;
  day_of_month?: string | number;
  month_of_year?: string | number;
}

export interface Crontab {
  minutes: ReadonlySet<number>;
  hours: ReadonlySet<number>;
  daysOfWeek: ReadonlySet<number>;
  daysOfMonth: ReadonlySet<number>;
  months: ReadonlySet<number>;
}

const DAYS: Record<string, number> = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };

function field(where: string, text: string | number | undefined, min: number, max: number, names: Record<string, number> = {}): Set<number> {
  const spec = String(text ?? '*').trim().toLowerCase();
  const value = (part: string): number => {
    const n = names[part.slice(0, 3)] ?? (/^\d+$/.test(part) ? Number(part) : Number.NaN);
    if (!(n >= min && n <= max)) throw new ConfigError(where, `'${part}' is not in ${min}-${max}`);
    return n;
  };
  const out = new Set<number>();
  for (const item of spec.split(',')) {
    const [range, stepText] = item.split('/');
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!(Number.isInteger(step) && step > 0) || range === undefined || range === '') throw new ConfigError(where, `cannot read '${item}'`);
    let lo: number;
    let hi: number;
    if (range === '*') [lo, hi] = [min, max];
    else if (range.includes('-')) [lo, hi] = range.split('-').map(value) as [number, number];
    else [lo, hi] = [value(range), stepText === undefined ? value(range) : max];
    if (lo > hi) throw new ConfigError(where, `empty range '${range}'`);
    for (let n = lo; n <= hi; n += step) out.add(n);
  }
  return out;
}

/** Validates and expands a crontab; `where` names it in errors. */
export function parseCrontab(spec: CrontabSpec, where: string): Crontab {
  return {
    minutes: field(`${where}.minute`, spec.minute, 0, 59),
    hours: field(`${where}.hour`, spec.hour, 0, 23),
    daysOfWeek: field(`${where}.day_of_week`, spec.day_of_week, 0, 6, DAYS),
    daysOfMonth: field(`${where}.day_of_month`, spec.day_of_month, 1, 31),
    months: field(`${where}.month_of_year`, spec.month_of_year, 1, 12),
  };
}

const MINUTE = 60_000;

function dayMatches(c: Crontab, d: Date): boolean {
  return c.months.has(d.getUTCMonth() + 1) && c.daysOfMonth.has(d.getUTCDate()) && c.daysOfWeek.has(d.getUTCDay());
}

/** The latest time (epoch ms, on a minute) at or before `nowMs` that the crontab fires, or null within a year back. */
export function lastFire(c: Crontab, nowMs: number): number | null {
  let t = Math.floor(nowMs / MINUTE) * MINUTE;
  const limit = t - 366 * 24 * 60 * MINUTE;
  while (t > limit) {
    const d = new Date(t);
    if (!dayMatches(c, d)) {
      // Skip to the last minute of the previous day.
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) - MINUTE;
      continue;
    }
    if (!c.hours.has(d.getUTCHours())) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours()) - MINUTE;
      continue;
    }
    if (c.minutes.has(d.getUTCMinutes())) return t;
    t -= MINUTE;
  }
  return null;
}
