// Builds the console into ../dist (or the folder given as the first argument): one script
// and one style sheet with content-hashed names under assets/, and index.html naming them.
// The same sources and package-lock.json give the same bytes, which `make check-generated`
// relies on.
import * as esbuild from "esbuild";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "..", "dist"));

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: ["src/main.tsx"],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2020",
  jsx: "automatic",
  jsxImportSource: "preact",
  entryNames: "assets/[name]-[hash]",
  assetNames: "assets/[name]-[hash]",
  outdir: out,
  legalComments: "linked",
  charset: "utf8",
  metafile: true,
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((p) => resolve(here, p));
const pick = (ext) => {
  const f = outputs.find((p) => p.endsWith(ext) && !p.endsWith(".LEGAL.txt"));
  if (!f) throw new Error(`no ${ext} output`);
  return "assets/" + basename(f);
};

// Relative asset paths under <base href="/console/">: the page works at any /console/ path.
const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<base href="/console/">
<title>Parley console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${pick(".css")}">
<script type="module" src="${pick(".js")}"></script>
</head>
<body>
<noscript>The Parley console needs JavaScript.</noscript>
<div id="app"></div>
</body>
</html>
`;
writeFileSync(join(out, "index.html"), html);
