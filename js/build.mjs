// Bundles the two front-end entries into monitorch_widget/static/:
//   widget.js       js/widget.ts: the anywidget module (ESM, default export: a factory of {initialize, render})
//   export_page.js  js/export/page.ts: the offline export page's loader (views/html_export.py inlines it)
//   node js/build.mjs          minified production build
//   node js/build.mjs --watch  sourcemaps + rebuild on change (use with ANYWIDGET_HMR=1 in the kernel)
import * as esbuild from "esbuild";

const watch = process.argv.includes("--watch");
const options = {
  entryPoints: { widget: "js/widget.ts", export_page: "js/export/page.ts" },
  outdir: "monitorch_widget/static",
  bundle: true,
  format: "esm",
  target: ["es2020"],
  minify: !watch,
  sourcemap: watch ? "inline" : false,
  loader: { ".css": "text" },
  legalComments: "none",
  logLevel: "info",
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
