// Builds src/ into dist/ (app.js, app.css, index.html), which the `labeling` binary embeds.
// Deterministic: the same sources give the same bytes, so infra/test.sh can rebuild and compare
// with the committed dist/.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: { app: "src/main.ts" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020"],
  outdir: "dist",
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
});
copyFileSync("src/index.html", "dist/index.html");
