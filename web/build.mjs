// Builds src/ into dist/ (app.js, app.css, index.html), which the `labeling` binary embeds.
// Deterministic: the same sources give the same bytes, so infra/test.sh can rebuild and compare
// with the committed dist/.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

const out = process.env.WEB_OUT ?? "dist";
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: "src/main.ts" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020"],
  outdir: out,
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
});
copyFileSync("src/index.html", `${out}/index.html`);
