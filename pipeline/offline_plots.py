"""An offline HTML template for `dvc plots show/diff`: Vega, Vega-Lite and Vega-Embed inlined.

DVC's default page loads the three libraries from a CDN, so the plots stay blank without internet.
This fetches pinned releases from the npm registry (checking npm's sha512 integrity), inlines
their browser builds into .dvc/plots/offline.html and points DVC at it for this clone only:

    python -m pipeline.offline_plots          # then: dvc plots show / dvc plots diff <rev>

The page is generated, not committed (.dvc/plots/.gitignore); `dvc config --local` keeps the
setting out of git, so a clone without the file still renders with DVC's default page.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

REGISTRY = "https://registry.npmjs.org"
# Versions that render DVC's Vega-Lite v5 specs; each with the path of its browser build.
PACKAGES = (("vega", "5.30.0", "build/vega.min.js"),
            ("vega-lite", "5.21.0", "build/vega-lite.min.js"),
            ("vega-embed", "6.26.0", "build/vega-embed.min.js"))
TEMPLATE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>ticketsplit plots</title>
    <!-- vega {vega}, vega-lite {vega_lite}, vega-embed {vega_embed}: inlined by
         `python -m pipeline.offline_plots` from the npm registry, so no network is needed -->
{libraries}
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def fetch(name: str, version: str, member: str, timeout: float = 60) -> str:
    """The text of one file of an npm package, after checking the tarball's sha512 integrity."""
    with urllib.request.urlopen(f"{REGISTRY}/{name}/{version}", timeout=timeout) as r:
        dist = json.load(r)["dist"]
    with urllib.request.urlopen(dist["tarball"], timeout=timeout) as r:
        blob = r.read()
    algo, _, expected = dist["integrity"].partition("-")
    if algo != "sha512" or base64.b64encode(hashlib.sha512(blob).digest()).decode() != expected:
        raise RuntimeError(f"{name}@{version}: the tarball does not match npm's integrity hash")
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        return tar.extractfile(f"package/{member}").read().decode("utf-8")


def build_page(sources: dict[str, str]) -> str:
    libs = "\n".join(f'    <script type="text/javascript">\n{src}\n    </script>'
                     for src in sources.values())
    # `{scripts}` is deliberately absent: DVC would fill it with the CDN <script> tags.
    page = TEMPLATE.replace("{{", "{").replace("}}", "}")
    for name, version, _ in PACKAGES:
        page = page.replace("{" + name.replace("-", "_") + "}", version)
    return page.replace("{libraries}", libs)


def main(argv: list[str]) -> int:
    from pipeline import cli

    parser = cli.parser("python -m pipeline.offline_plots", __doc__.split("\n\n")[0])
    parser.add_argument("--output", default=".dvc/plots/offline.html")
    parser.add_argument("--no-config", action="store_true",
                        help="only write the page; do not run `dvc config --local`")
    args = parser.parse_args(argv)
    try:
        sources = {name: fetch(name, version, member) for name, version, member in PACKAGES}
    except (OSError, RuntimeError, KeyError) as exc:
        print(f"error: cannot fetch the Vega libraries from {REGISTRY}: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_page(sources), encoding="utf-8")
    if not args.no_config:
        # DVC resolves a relative plots.html_template against the .dvc folder
        setting = os.path.relpath(out.resolve(), Path(".dvc").resolve())
        subprocess.run([sys.executable, "-m", "dvc", "config", "--local", "plots.html_template",
                        setting], check=True)
    print(f"offline plots: wrote {out} ({out.stat().st_size // 1024} KiB)"
          + ("" if args.no_config else "; dvc plots show/diff now use it"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
