/**
 * What a scenario is and what it reports.
 */
export type Size = "smoke" | "quick" | "full"

/** A scenario's settings at each size, looked up by the size it runs at: `const plan = bySize({ smoke, quick, full })`. */
export const bySize =
  <A>(settings: { readonly smoke: A; readonly quick: A; readonly full: A }) =>
  (size: Size): A =>
    settings[size]

export interface Goal {
  readonly goal: string
  readonly value: number
  readonly target: number
  /** `>=`: value must be at least target; `<=`: at most. */
  readonly direction: ">=" | "<="
  readonly unit: string
}

export interface Table {
  readonly title: string
  readonly columns: ReadonlyArray<string>
  readonly rows: ReadonlyArray<ReadonlyArray<string | number>>
}

export interface Chart {
  readonly file: string
  /** A Vega-Lite spec. */
  readonly spec: Record<string, unknown>
}

export interface Report {
  readonly name: string
  readonly title: string
  readonly notes: ReadonlyArray<string>
  readonly tables: ReadonlyArray<Table>
  readonly goals: ReadonlyArray<Goal>
  readonly charts: ReadonlyArray<Chart>
  /** Raw figures, for the JSON file. */
  readonly data: unknown
}

export interface Scenario {
  readonly name: string
  readonly title: string
  readonly run: (size: Size, progress: (line: string) => void) => Promise<Report>
}

export const met = (goal: Goal): boolean =>
  goal.direction === ">=" ? goal.value >= goal.target : goal.value <= goal.target

/** A bar chart of one value per label, grouped by series. */
export const barChart = (
  file: string,
  title: string,
  unit: string,
  values: ReadonlyArray<{ readonly label: string; readonly series?: string; readonly value: number }>
): Chart => ({
  file,
  spec: {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title,
    width: 480,
    height: { step: 22 },
    data: { values },
    mark: { type: "bar", tooltip: true },
    encoding: {
      y: { field: "label", type: "nominal", sort: null, title: null },
      x: { field: "value", type: "quantitative", title: unit },
      ...(values.some((value) => value.series !== undefined)
        ? { color: { field: "series", type: "nominal", title: null }, yOffset: { field: "series" } }
        : {})
    }
  }
})
