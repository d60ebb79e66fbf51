"""The HTML leaderboard in a real headless browser (Chromium): the page loads without a network,
a click on a column header sorts the rows, the gallery's images decode and the score-against-
speed plots are drawn. Skips, saying why, where no Chromium is installed (``.ci/run`` installs
Debian's ``chromium`` when it can)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from saliency_bench import report as lb

from test_leaderboard import LONG, SCORES, fake_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _browser() -> str:
    for name in (os.environ.get("SALIENCY_BENCH_CHROMIUM"), *BROWSERS):
        path = name and shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium to load the HTML leaderboard in (apt-get install -y chromium, or set "
                "SALIENCY_BENCH_CHROMIUM to a Chrome/Chromium binary)")


# Run after the page's own script: click the "Pointing all (%)" header once (ascending) and
# twice (descending), read the method column each time, look at the images and the plots, and
# write it all into the DOM, which --dump-dom prints.
PROBE = """<script>
window.addEventListener('load', () => {
  const table = document.querySelector('table.lb');
  // the method's name (a baseline's cell also says "(baseline)")
  const order = () => [...table.tBodies[0].rows].map(r => r.cells[0].textContent.replace(/ \(baseline\)$/, ''));
  const th = [...table.tHead.rows[0].cells].find(c => c.textContent === 'Pointing all (%)');
  const out = {before: order()};
  th.dispatchEvent(new MouseEvent('click', {bubbles: true}));
  out.asc = order();
  th.click();
  out.desc = order();
  out.images = [...document.querySelectorAll('table.gallery img')].map(i => [i.alt, i.complete, i.naturalWidth]);
  out.svgs = [...document.querySelectorAll('svg.speed')].map(s => [s.querySelectorAll('circle').length,
                                                                   s.getBoundingClientRect().width]);
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _gallery(run_dir: Path) -> None:
    folder = run_dir / "gallery" / "toy_net" / "toy"
    folder.mkdir(parents=True)
    for i, method in enumerate(["center", "gradient", LONG]):
        Image.new("RGB", (40 + i, 30), (40 * i, 90, 200)).save(folder / f"toy001__{method}.jpg", quality=80)


def _load(browser: str, page: Path, tmp: Path) -> dict:
    cmd = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000",
           "--dump-dom", page.as_uri()]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("headless Chromium did not finish loading the page in 120 s")
    m = re.search(r"<pre id=\"probe\">(.*?)</pre>", res.stdout, re.S)
    assert m, f"the probe did not run (exit {res.returncode}): {res.stderr[-2000:]}"
    return json.loads(m.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
                      .replace("&quot;", '"'))


def test_the_html_leaderboard_sorts_and_shows_its_gallery_in_chromium(tmp_path):
    browser = _browser()
    run_dir = fake_run(tmp_path)
    _gallery(run_dir)
    lb.write_leaderboard(run_dir, formats=["html"])
    html = (run_dir / "leaderboard.html").read_text()
    assert "<script src" not in html and "<link" not in html  # self-contained: nothing to fetch
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"))
    out = _load(browser, page, tmp_path)

    by_score = sorted(SCORES, key=lambda m: SCORES[m][0])  # pointing all, ascending
    assert out["before"] != by_score
    assert out["asc"] == by_score + ["always_raises"]  # a method with no score sorts last
    assert out["desc"] == by_score[::-1] + ["always_raises"]
    assert sorted(a for a, _, _ in out["images"]) == sorted(["center", "gradient", LONG])
    assert all(complete and width >= 40 for _, complete, width in out["images"]), out["images"]
    assert len(out["svgs"]) == 6 and all(n == 3 and w > 100 for n, w in out["svgs"]), out["svgs"]
