// Light or dark, as the host page says. JupyterLab / Notebook 7 (--jp-* variables) and VS Code (--vscode-*)
// hand us their colours directly (styles.css); Colab (`<html theme="dark">`) and marimo (`.dark` /
// `.dark-theme` class, `data-theme="dark"`) only say which mode they are in, so the view's container gets
// `data-mw-theme="dark" | "light"` and styles.css picks matching defaults.

export type HostTheme = "dark" | "light" | null;

function darkIn(el: Element | null): HostTheme {
  if (!el) return null;
  const cls = el.classList;
  const attr = (name: string): string | null => el.getAttribute(name);
  if (attr("data-jp-theme-light") === "false") return "dark";
  if (attr("data-jp-theme-light") === "true") return "light";
  if (cls.contains("vscode-dark") || cls.contains("vscode-high-contrast")) return "dark";
  if (cls.contains("vscode-light")) return "light";
  if (attr("theme") === "dark" || attr("data-theme") === "dark") return "dark"; // Colab, marimo
  if (attr("theme") === "light" || attr("data-theme") === "light") return "light";
  if (cls.contains("dark") || cls.contains("dark-theme") || cls.contains("dark-mode")) return "dark"; // marimo
  return null;
}

/** The host's mode, read from <body>, then <html>; null when the host does not say. */
export function hostTheme(doc: Document = document): HostTheme {
  return darkIn(doc.body) ?? darkIn(doc.documentElement);
}

/** Mark `el` with the host's mode now and whenever <html> / <body> attributes change; returns the unwatch. */
export function followHostTheme(el: HTMLElement, doc: Document = document): () => void {
  const apply = (): void => {
    const t = hostTheme(doc);
    if (t === null) delete el.dataset.mwTheme;
    else if (el.dataset.mwTheme !== t) el.dataset.mwTheme = t;
  };
  apply();
  if (typeof MutationObserver !== "function") return () => {};
  const obs = new MutationObserver(apply);
  const opts = { attributes: true, attributeFilter: ["class", "theme", "data-theme", "data-jp-theme-light"] };
  if (doc.documentElement) obs.observe(doc.documentElement, opts);
  if (doc.body) obs.observe(doc.body, opts);
  return () => obs.disconnect();
}
