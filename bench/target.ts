// A figure beside its target, with a verdict no reader can misread. Every
// bench prints one `TARGET` line per goal; `npm run bench` repeats them in its
// summary. A figure that could not be measured (NaN) is MISSED, never MET.
export type Goal = {
  /** What was measured, e.g. "POST /v1/events → acked". */
  what: string;
  value: number;
  unit: string;
  /** `min`: the figure must be at least `goal`; `max`: at most. */
  bound: 'min' | 'max';
  goal: number;
};

const num = (n: number): string =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: n < 10 ? 2 : n < 100 ? 1 : 0 }) : String(n);

export const met = (g: Goal): boolean => (g.bound === 'min' ? g.value >= g.goal : g.value <= g.goal);

/** `TARGET <what>: <value> <unit> (target ≥|≤ <goal> <unit>) MET|MISSED` */
export const targetLine = (g: Goal): string =>
  `TARGET ${g.what}: ${num(g.value)} ${g.unit} (target ${g.bound === 'min' ? '≥' : '≤'} ${num(g.goal)} ${g.unit}) ${met(g) ? 'MET' : 'MISSED'}`;

export const printTargets = (goals: readonly Goal[], print: (line: string) => void = (l) => console.log(l)): void => {
  for (const g of goals) print(targetLine(g));
};
