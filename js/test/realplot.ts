// Lets the real uPlot run under happy-dom, which has no 2D canvas: a context that accepts every call and
// measures text as 6 px per character, and a no-op Path2D. Nothing is drawn; scales, axes and splits are
// computed exactly as in a browser.

export function stubCanvas(): void {
  const ctx: any = new Proxy(
    {},
    {
      get: (t: any, k) => (k in t ? t[k] : k === "measureText" ? (s: string) => ({ width: 6 * String(s).length }) : () => undefined),
      set: (t: any, k, v) => {
        t[k] = v;
        return true;
      },
    },
  );
  (HTMLCanvasElement.prototype as any).getContext = () => ctx;
  (globalThis as any).Path2D ??= class {
    moveTo() {}
    lineTo() {}
    rect() {}
    arc() {}
    closePath() {}
    bezierCurveTo() {}
    quadraticCurveTo() {}
    addPath() {}
  };
}
