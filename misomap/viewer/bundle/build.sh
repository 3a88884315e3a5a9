#!/usr/bin/env bash
# Rebuild the viewer's vendored JavaScript (misomap/viewer/static/vendor/) from the npm registry.
# Run only to upgrade the libraries; the built file and licences are committed, nothing is fetched at
# run time. Versions are pinned in package.json / package-lock.json.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
vendor="$here/../static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$here/entry.js" "$work/"
cd "$work"
npm ci --no-audit --no-fund --ignore-scripts
node node_modules/esbuild/bin/esbuild entry.js --bundle --minify --format=iife --target=es2020 \
  --legal-comments=none --metafile=meta.json --outfile="$vendor/misomap-ol.js"
cp node_modules/ol/ol.css "$vendor/ol.css"
mkdir -p "$vendor/licenses"
rm -f "$vendor/licenses/"*
# one licence file per package in the bundle (from esbuild's metafile)
node -e '
const fs = require("fs");
const inputs = Object.keys(JSON.parse(fs.readFileSync("meta.json")).inputs);
const pkgs = new Set(inputs.filter(p => p.startsWith("node_modules/"))
  .map(p => { const s = p.split("/"); return s[1].startsWith("@") ? s.slice(1, 3).join("/") : s[1]; }));
const out = process.argv[1];
const lines = [];
for (const name of [...pkgs].sort()) {
  const dir = "node_modules/" + name;
  const meta = JSON.parse(fs.readFileSync(dir + "/package.json"));
  const lic = fs.readdirSync(dir).find(f => /^(licen[cs]e|copying)/i.test(f));
  const dest = out + "/" + name.replace("/", "__");
  if (lic) {
    fs.copyFileSync(dir + "/" + lic, dest + "." + lic);
  } else {  // e.g. lerc ships its licence only as a README section: keep that section
    const readme = fs.readFileSync(dir + "/README.md", "utf8");
    const m = readme.match(/^#+ *Licen[cs]ing?[^\n]*\n[\s\S]*?(?=^#+ |(?![\s\S]))/m);
    if (!m) throw new Error("no licence file or README licence section in " + name);
    fs.writeFileSync(dest + ".LICENSE-from-README.md", m[0]);
  }
  lines.push(`${name}\t${meta.version}\t${meta.license}`);
}
fs.writeFileSync(out + "/PACKAGES.tsv", "package\tversion\tlicense\n" + lines.join("\n") + "\n");
' "$vendor/licenses"
ls -l "$vendor" "$vendor/licenses"
