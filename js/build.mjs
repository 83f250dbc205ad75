// Bundles js/widget.ts into monitorch_widget/static/widget.js (ESM, default export {initialize, render}).
//   node js/build.mjs          minified production build
//   node js/build.mjs --watch  sourcemaps + rebuild on change (use with ANYWIDGET_HMR=1 in the kernel)
import * as esbuild from "esbuild";

const watch = process.argv.includes("--watch");
const options = {
  entryPoints: ["js/widget.ts"],
  outfile: "monitorch_widget/static/widget.js",
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
