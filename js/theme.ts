// Colours for canvas drawing. CSS (styles.css) defines --mw-* custom properties that follow JupyterLab's
// --jp-* variables, then VS Code's --vscode-* ones, then plain defaults; the canvas cannot use var(), so we
// read the resolved values from the view's root element.

export interface Theme {
  fg: string;
  muted: string;
  grid: string;
  bg: string;
  palette: string[];
}

// Colour-blind-friendly palette (Okabe-Ito order, then Tableau-like extras), readable on light and dark.
const PALETTE = [
  "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#7F7F7F", "#8C564B", "#17BECF",
];

export function readTheme(el: Element): Theme {
  let cs: CSSStyleDeclaration | null = null;
  try {
    cs = getComputedStyle(el);
  } catch {
    cs = null;
  }
  const v = (name: string, fallback: string): string => {
    const got = cs?.getPropertyValue(name).trim();
    return got ? got : fallback;
  };
  return {
    fg: v("--mw-fg", "#333"),
    muted: v("--mw-muted", "#777"),
    grid: v("--mw-grid", "rgba(128,128,128,0.25)"),
    bg: v("--mw-bg", "#fff"),
    palette: PALETTE,
  };
}

/** `color` (#rrggbb) with alpha `a` as rgba(). */
export function withAlpha(color: string, a: number): string {
  const m = /^#([0-9a-f]{6})$/i.exec(color);
  if (!m) return color;
  const n = parseInt(m[1], 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
}

export function themeKey(t: Theme): string {
  return [t.fg, t.muted, t.grid, t.bg].join("|");
}
