// Wire types of docs/protocol.md (v1). Everything the kernel sends is described here, so the rest of the
// front-end can rely on these shapes instead of poking at `any`.

export type PanelKind = "numerical" | "probability" | "relations";
export type ColumnRole = "line" | "lo" | "hi";
/** "stopped": the training cell ended by raising (`stopped_by` names the exception: KeyboardInterrupt for an interrupt). */
export type RunState = "idle" | "training" | "done" | "stopped";

export interface Panel {
  tag: string;
  kind: PanelKind;
  big: boolean;
  logy: boolean;
  lens: string;
  /** Fixed y range [lo, hi] (e.g. correlations in [-1, 1]); absent or null: automatic. */
  ylim?: [number, number] | null;
  /** monitorch's TagAttributes.annotate as the lens declared it (a player replays it); absent or null: unknown. */
  annotate?: boolean | null;
}

export interface Column {
  index: number;
  panel: string;
  group: string;
  key: string;
  role: ColumnRole;
  band_of: string | null;
  module_type: string | null;
}

/** A report's kind: "warning" a problem (MonitorWarning: NaN/Inf, a hook failure, a likely typo), "notice"
 * information (MonitorNotice: a frozen parameter named, a module no lens watches). */
export type ProblemKind = "warning" | "notice";

export interface Problem {
  lens: string;
  message: string;
  count: number;
  /** Absent from older kernels and saved histories (every report was a problem then): read as "warning". */
  kind?: ProblemKind;
}

export interface Status {
  run: number | null;
  epoch: number | null;
  sec_per_epoch: number | null;
  state: RunState;
  /** The current run's distinct reports of kind "warning" (one each, however often reported). */
  problems: number;
  /** ... and of kind "notice" (absent from older kernels: 0). */
  notices?: number;
  stopped_by?: string | null;
}

/** Something that holds raw bytes: what ipywidgets hands us for a `bytes` value (DataView) or a plain buffer. */
export type Bytes = DataView | ArrayBuffer | ArrayBufferView;

export interface SnapshotRun {
  id: number;
  label: string;
  provisional: boolean;
  panels: Panel[];
  columns: Column[];
  problems: Problem[];
  n_rows: number;
  n_cols: number;
  epochs: Bytes;
  times: Bytes;
  /** Optimizer steps of the run when each row was written (absent from older kernels: NaN). */
  steps?: Bytes;
  data: Bytes;
  /** Groups whose measurement was stopped on purpose (absent: none); see UnrecordedSpan. */
  unrecorded?: { group: string; spans: UnrecordedSpan[] }[];
}

/** [first epoch, last epoch (inclusive) or null while still stopped]: "not recorded", not a failure. */
export type UnrecordedSpan = [number, number | null];

/**
 * A health-check result (issue 16). A snapshot carries the whole current list; a delta (protocol v2) only the
 * findings raised, changed or resolved since the previous message (upserts by `id`, a held one as its changed
 * fields) and `findings_removed` (store.ts mergeFindings). `until` is null while the condition holds and the
 * epoch it ended once resolved.
 */
export interface Finding {
  /** Stable across ticks: the same check on the same layer of the same run keeps its id. */
  id: string;
  run: number;
  check: string;
  severity: "critical" | "warning" | "info";
  /** The module or parameter the finding is about, or null for the whole run (loss, overfitting). */
  layer: string | null;
  /** Tag of the panel the finding is about (the chart or heatmap row to link to), or null. */
  tag: string | null;
  since: number;
  until: number | null;
  value: number | null;
  /** What is wrong, one sentence. */
  message: string;
  /** What to try, one sentence. */
  advice: string;
}

/** A delta's finding: a whole Finding, or the id of one the view holds and the fields that changed. */
export type FindingUpsert = Partial<Finding> & { id: string };

export interface History {
  version: number;
  seq: number;
  runs: SnapshotRun[];
  status: Status | null;
  findings?: Finding[];
}

export interface RowInfo {
  run: number;
  row: number;
  epoch: number;
  time: number;
  step?: number;
  provisional: boolean;
}

export interface DeltaMessage {
  type: "delta";
  seq: number;
  new_runs?: { id: number; label: string }[];
  new_panels?: (Panel & { run: number })[];
  new_columns?: (Column & { run: number })[];
  rows?: RowInfo[];
  cells?: { count: number };
  problems?: (Problem & { run: number })[];
  status?: Status | null;
  /** Findings raised, changed or resolved since the previous delta (upserts by id; absent: none): whole, or
   * for a finding the view holds, its id and the fields that changed. */
  findings?: FindingUpsert[];
  /** Finding ids to drop before the upserts apply (a reopened finding moves last of its run; absent: none). */
  findings_removed?: string[];
  /** A group's whole span list, replacing the one the run had. */
  unrecorded?: { run: number; group: string; spans: UnrecordedSpan[] }[];
}

export interface Filters {
  hidden_modules: string[];
  hidden_types: string[];
  hidden_panels: string[];
  hidden_runs: number[];
  logy: Record<string, boolean>;
}

/** The synced traits of the Python MonitorWidget. */
export interface WidgetModelTraits {
  history: History | null;
  filters: Partial<Filters>;
  [key: string]: unknown;
}
