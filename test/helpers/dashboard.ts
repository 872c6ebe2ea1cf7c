// The shipped Grafana dashboard as the tests read it: its panels (rows unfolded), every PromQL target
// with Grafana's variables replaced, and the series names an expression selects.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const GRAFANA = fileURLToPath(new URL('../../../grafana/', import.meta.url));

export interface Datasource {
  type?: string;
  uid?: string;
}

export interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: Datasource;
  targets?: { expr: string; refId: string; datasource?: Datasource }[];
  panels?: Panel[];
}

export interface Variable {
  name: string;
  type: string;
  query?: string | { query: string };
  definition?: string;
  datasource?: Datasource;
  multi?: boolean;
  includeAll?: boolean;
  allValue?: string;
}

export interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

export function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(`${GRAFANA}celeriac-dashboard.json`, 'utf8')) as Dashboard;
}

/** Every panel, those inside collapsed rows included. */
export function allPanels(panels: Panel[] = loadDashboard().panels): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

export interface PanelExpr {
  panel: string;
  expr: string;
}

/**
 * Every target of every panel with Grafana's variables (`$name` or `${name}`) replaced by `values`, as
 * Grafana does before it sends a query. A variable without a value is an error, not a silent `$x`.
 */
export function dashboardExprs(values: Record<string, string>): PanelExpr[] {
  return allPanels().flatMap((p) =>
    (p.targets ?? []).map((t) => {
      const expr = t.expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced?: string, bare?: string) => {
        const name = (braced ?? bare) as string;
        const value = values[name];
        if (value === undefined) throw new Error(`panel "${p.title}" uses $${name}, which the test gives no value: ${whole}`);
        return value;
      });
      return { panel: p.title, expr };
    }),
  );
}

const PROMQL_WORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan']);

/** Series names a PromQL expression selects: the identifiers that are not functions, keywords or labels. */
export function seriesIn(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = [...bare.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()/g)].map((m) => m[1] as string);
  return [...new Set(names.filter((n) => !PROMQL_WORDS.has(n.toLowerCase())))];
}
