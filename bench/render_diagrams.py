"""Render BPMN files to PNG pictures for the docs, with the vendored bpmn-js viewer in Debian's chromium.

    .venv/bin/python bench/render_diagrams.py            # docs/images/*.bpmn and examples/*.bpmn -> PNG beside them
    .venv/bin/python bench/render_diagrams.py FILE.bpmn  # one file

No server is needed: the page is built in memory from the vendored script and styles and the file's XML.
Chinese names need a CJK font on the machine (Debian: `apt-get install fonts-wqy-microhei`).
"""
import glob
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENDOR = os.path.join(ROOT, "static", "vendor", "bpmn-js")
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"

PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>{css}
html, body {{ margin: 0; background: #fff; }} #canvas {{ width: 1200px; height: 600px; }}</style></head>
<body><div id="canvas"></div><script>{script}</script><script>
const viewer = new BpmnJS({{ container: '#canvas' }});
viewer.importXML({xml}).then(() => {{
  const canvas = viewer.get('canvas');
  canvas.zoom('fit-viewport');
  document.body.dataset.ready = '1';
}}).catch((error) => {{ document.body.dataset.error = String(error); }});
</script></body></html>"""


def _read(name):
    with open(os.path.join(VENDOR, name), encoding="utf-8") as fh:
        return fh.read()


def render(page, path):
    with open(path, encoding="utf-8") as fh:
        xml = fh.read()
    html = PAGE.format(css=_read("diagram-js.css") + _read("bpmn-js.css"),
                       script=_read("bpmn-navigated-viewer.production.min.js"), xml=json.dumps(xml).replace("<", "\\u003c"))
    page.set_content(html)
    page.wait_for_selector("body[data-ready], body[data-error]", state="attached")
    error = page.evaluate("document.body.dataset.error")
    if error:
        raise SystemExit(f"{path}: {error}")
    # The fitted drawing sits in the middle of the canvas: clip to it with a margin.
    box = page.evaluate("(() => { const r = document.querySelector('.djs-container svg .viewport')"
                        ".getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()")
    margin = 16
    clip = {"x": max(box[0] - margin, 0), "y": max(box[1] - margin, 0),
            "width": box[2] + 2 * margin, "height": box[3] + 2 * margin}
    target = os.path.splitext(path)[0] + ".png"
    page.screenshot(path=target, clip=clip)
    print(f"{target} ({int(clip['width'])}x{int(clip['height'])} px)")


def main(paths):
    from playwright.sync_api import sync_playwright
    paths = paths or sorted(glob.glob(os.path.join(ROOT, "docs", "images", "*.bpmn"))
                            + glob.glob(os.path.join(ROOT, "examples", "*.bpmn")))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        for path in paths:
            page = browser.new_page(viewport={"width": 1200, "height": 600})
            render(page, path)
            page.close()
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1:])
